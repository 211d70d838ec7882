/* Layout operators of the diffusion models (see diffusion_ops.h): the transpose between
 * NCHW images and token rows (B, h*w, C) around the UNet's transformer blocks, and the
 * channel concatenation of the skip connections. */
#include "diffusion_ops.h"

#include <errno.h>
#include <string.h>

#include "diffusion_ops_simd.h"
#include "ops.h"

/* Square blocks moved at once: 32 x 32 floats = 4 KiB in, 4 KiB out, both in L1. */
#define TB 32

/* ---- transpose -------------------------------------------------------------------------------- */

/* y (cols x rows, stride ldy) = x (rows x cols, stride ldx)^T for one 8x8 block. */
DOPS_AVX2 static inline void t8x8(const float *x, int64_t ldx, float *y, int64_t ldy)
{
	__m256 r0 = _mm256_loadu_ps(x), r1 = _mm256_loadu_ps(x + ldx);
	__m256 r2 = _mm256_loadu_ps(x + 2 * ldx), r3 = _mm256_loadu_ps(x + 3 * ldx);
	__m256 r4 = _mm256_loadu_ps(x + 4 * ldx), r5 = _mm256_loadu_ps(x + 5 * ldx);
	__m256 r6 = _mm256_loadu_ps(x + 6 * ldx), r7 = _mm256_loadu_ps(x + 7 * ldx);
	__m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
	__m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
	__m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
	__m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
	__m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
	_mm256_storeu_ps(y, _mm256_permute2f128_ps(u0, u4, 0x20));
	_mm256_storeu_ps(y + ldy, _mm256_permute2f128_ps(u1, u5, 0x20));
	_mm256_storeu_ps(y + 2 * ldy, _mm256_permute2f128_ps(u2, u6, 0x20));
	_mm256_storeu_ps(y + 3 * ldy, _mm256_permute2f128_ps(u3, u7, 0x20));
	_mm256_storeu_ps(y + 4 * ldy, _mm256_permute2f128_ps(u0, u4, 0x31));
	_mm256_storeu_ps(y + 5 * ldy, _mm256_permute2f128_ps(u1, u5, 0x31));
	_mm256_storeu_ps(y + 6 * ldy, _mm256_permute2f128_ps(u2, u6, 0x31));
	_mm256_storeu_ps(y + 7 * ldy, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* One block: rows [i0, i1) x cols [j0, j1) of x (rows x cols) into y (cols x rows). */
static void block_scalar(const float *x, float *y, int64_t rows, int64_t cols, int64_t i0,
                         int64_t i1, int64_t j0, int64_t j1)
{
	for (int64_t i = i0; i < i1; i++)
		for (int64_t j = j0; j < j1; j++)
			y[j * rows + i] = x[i * cols + j];
}

DOPS_AVX2 static void block_avx2(const float *x, float *y, int64_t rows, int64_t cols,
                                 int64_t i0, int64_t i1, int64_t j0, int64_t j1)
{
	int64_t i8 = i0 + (i1 - i0) / 8 * 8, j8 = j0 + (j1 - j0) / 8 * 8;
	for (int64_t i = i0; i < i8; i += 8)
		for (int64_t j = j0; j < j8; j += 8)
			t8x8(x + i * cols + j, cols, y + j * rows + i, rows);
	block_scalar(x, y, rows, cols, i0, i8, j8, j1); /* right edge */
	block_scalar(x, y, rows, cols, i8, i1, j0, j1); /* bottom edge */
}

int dops_transpose(const float *x, float *y, int64_t n, int64_t rows, int64_t cols,
                   int n_threads)
{
	if (x == NULL || y == NULL || n <= 0 || rows <= 0 || cols <= 0)
		return -EINVAL;
	const bool simd = cpu_ops_use_simd();
	const int64_t rb = (rows + TB - 1) / TB, cb = (cols + TB - 1) / TB;
	int nt = dops_threads(n * rows * cols, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t t = 0; t < n * rb * cb; t++) {
		const int64_t b = t / (rb * cb), i0 = (t / cb) % rb * TB, j0 = t % cb * TB;
		const int64_t i1 = i0 + TB < rows ? i0 + TB : rows, j1 = j0 + TB < cols ? j0 + TB : cols;
		const float *xb = x + b * rows * cols;
		float *yb = y + b * rows * cols;
		if (simd)
			block_avx2(xb, yb, rows, cols, i0, i1, j0, j1);
		else
			block_scalar(xb, yb, rows, cols, i0, i1, j0, j1);
	}
	return 0;
}

/* ---- channel concatenation ------------------------------------------------------------------- */

int dops_concat_channels(const float *a, int64_t ca, const float *b, int64_t cb, int64_t n,
                         int64_t hw, float *y)
{
	if (a == NULL || b == NULL || y == NULL || ca <= 0 || cb <= 0 || n <= 0 || hw <= 0)
		return -EINVAL;
	for (int64_t i = 0; i < n; i++) {
		float *yi = y + i * (ca + cb) * hw;
		memcpy(yi, a + i * ca * hw, (size_t)(ca * hw) * sizeof(float));
		memcpy(yi + ca * hw, b + i * cb * hw, (size_t)(cb * hw) * sizeof(float));
	}
	return 0;
}
