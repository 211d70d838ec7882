/* AVX2/FMA/F16C row kernels of the float weight types (F32, F16, BF16) and the CPU
 * feature check. Compiled with per-function target attributes, so the library still runs
 * (through the scalar paths) on CPUs without AVX2; the caller checks vec_have_avx2().
 *
 * Shape of the work: a tile of R = 4 weight rows times T <= 2 tokens. Each weight vector is
 * loaded (and for F16/BF16 converted) once and used for T tokens; each activation vector
 * once for R rows. For n_tokens == 1 this is the decode matrix-vector product: four weight
 * rows stream from memory at the same time, which keeps the loads ahead of the FMAs. */
#include <stdlib.h>
#include <string.h>

#include <cpuid.h>
#include <immintrin.h>

#include "vec.h"

#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* ---- CPU features ------------------------------------------------------------- */

static bool detect_avx2(void)
{
	const char *env = getenv("INFERD_CPU_NOSIMD");
	if (env != NULL && env[0] != '\0' && strcmp(env, "0") != 0)
		return false;
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
		return false;
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 29)) || !(c & (1u << 27)))
		return false; /* F16C, OSXSAVE */
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (lo & 6u) == 6u; /* the OS saves the YMM state */
}

bool vec_have_avx2(void)
{
	static int cached = -1; /* racing first calls compute the same value */
	int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	if (v < 0) {
		v = detect_avx2();
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	}
	return v;
}

/* ---- loads -------------------------------------------------------------------- */

/* 8 weights of a row of type t starting at element c, as f32. */
AVX2_FN INLINE __m256 ld8(enum dtype t, const uint8_t *row, int64_t c)
{
	if (t == DTYPE_F32)
		return _mm256_loadu_ps((const float *)(const void *)row + c);
	__m128i h = _mm_loadu_si128((const __m128i *)(const void *)(row + 2 * c));
	if (t == DTYPE_F16)
		return _mm256_cvtph_ps(h);
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); /* BF16 */
}

/* One weight of a row, for the column tail. */
INLINE float ld1(enum dtype t, const uint8_t *row, int64_t c)
{
	float f;
	if (t == DTYPE_F32) {
		memcpy(&f, row + 4 * c, 4);
		return f;
	}
	uint16_t h = (uint16_t)(row[2 * c] | (row[2 * c + 1] << 8));
	return t == DTYPE_F16 ? dtype_f16_to_f32(h) : dtype_bf16_to_f32(h);
}

AVX2_FN INLINE float hsum8(__m256 v)
{
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	h = _mm_add_ps(h, _mm_movehl_ps(h, h));
	h = _mm_add_ss(h, _mm_movehdup_ps(h));
	return _mm_cvtss_f32(h);
}

/* ---- tiles -------------------------------------------------------------------- */

/* Rows r .. r+R-1 times tokens 0 .. T-1 (R <= 4, T <= 2; constants after inlining).
 * x: first token's activations, xs: floats between tokens. */
AVX2_FN INLINE void float_tile(enum dtype t, int R, int T, const struct cpu_weight *w,
                               const float *x, size_t xs, float *y, int64_t ldy, int64_t r)
{
	const uint8_t *p[4];
	__m256 acc[4][2];
	#pragma GCC unroll 4
	for (int i = 0; i < R; i++) {
		p[i] = (const uint8_t *)w->data + (size_t)(r + i) * w->row_bytes;
		#pragma GCC unroll 4
		for (int j = 0; j < T; j++)
			acc[i][j] = _mm256_setzero_ps();
	}
	const int64_t n8 = w->cols & ~(int64_t)7;
	for (int64_t c = 0; c < n8; c += 8) {
		__m256 xv[2];
		#pragma GCC unroll 4
		for (int j = 0; j < T; j++)
			xv[j] = _mm256_loadu_ps(x + j * xs + c);
		#pragma GCC unroll 4
		for (int i = 0; i < R; i++) {
			__m256 wv = ld8(t, p[i], c);
			#pragma GCC unroll 4
			for (int j = 0; j < T; j++)
				acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
		}
	}
	#pragma GCC unroll 4
	for (int i = 0; i < R; i++) {
		#pragma GCC unroll 4
		for (int j = 0; j < T; j++) {
			float s = hsum8(acc[i][j]);
			for (int64_t c = n8; c < w->cols; c++)
				s += ld1(t, p[i], c) * x[j * xs + c];
			y[j * ldy + r + i] = s;
		}
	}
}

/* One row times one token (decode): a single weight stream per thread, four independent
 * accumulators over 32 elements per step. Measured faster than four rows at a time
 * (bench_matmul): four concurrent streams per core fetch less well. */
AVX2_FN INLINE float float_row1(enum dtype t, const uint8_t *p, const float *x, int64_t cols)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	int64_t c = 0;
	for (; c + 32 <= cols; c += 32) {
		a0 = _mm256_fmadd_ps(ld8(t, p, c), _mm256_loadu_ps(x + c), a0);
		a1 = _mm256_fmadd_ps(ld8(t, p, c + 8), _mm256_loadu_ps(x + c + 8), a1);
		a2 = _mm256_fmadd_ps(ld8(t, p, c + 16), _mm256_loadu_ps(x + c + 16), a2);
		a3 = _mm256_fmadd_ps(ld8(t, p, c + 24), _mm256_loadu_ps(x + c + 24), a3);
	}
	for (; c + 8 <= cols; c += 8)
		a0 = _mm256_fmadd_ps(ld8(t, p, c), _mm256_loadu_ps(x + c), a0);
	float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
	for (; c < cols; c++)
		s += ld1(t, p, c) * x[c];
	return s;
}

/* All rows [r0, r1) x all tokens: groups of 4 rows, pairs of tokens inside a group (the
 * group's rows stay in L1/L2 while the token pairs pass). */
AVX2_FN INLINE void float_rows(enum dtype t, const struct cpu_weight *w, const void *xa,
                               size_t xa_stride, int64_t n_tokens, float *y, int64_t ldy,
                               int64_t r0, int64_t r1)
{
	const float *x = xa;
	const size_t xs = xa_stride / sizeof(float);
	if (n_tokens == 1) {
		for (int64_t r = r0; r < r1; r++)
			y[r] = float_row1(t, (const uint8_t *)w->data + (size_t)r * w->row_bytes, x,
			                  w->cols);
		return;
	}
	int64_t r = r0;
	for (; r + 4 <= r1; r += 4) {
		int64_t k = 0;
		for (; k + 2 <= n_tokens; k += 2)
			float_tile(t, 4, 2, w, x + k * xs, xs, y + k * ldy, ldy, r);
		if (k < n_tokens)
			float_tile(t, 4, 1, w, x + k * xs, xs, y + k * ldy, ldy, r);
	}
	for (; r < r1; r++) {
		int64_t k = 0;
		for (; k + 2 <= n_tokens; k += 2)
			float_tile(t, 1, 2, w, x + k * xs, xs, y + k * ldy, ldy, r);
		if (k < n_tokens)
			float_tile(t, 1, 1, w, x + k * xs, xs, y + k * ldy, ldy, r);
	}
}

AVX2_FN static void rows_f32(const struct cpu_weight *w, const void *xa, size_t xa_stride,
                             int64_t n_tokens, float *y, int64_t ldy, int64_t r0, int64_t r1)
{
	float_rows(DTYPE_F32, w, xa, xa_stride, n_tokens, y, ldy, r0, r1);
}

AVX2_FN static void rows_f16(const struct cpu_weight *w, const void *xa, size_t xa_stride,
                             int64_t n_tokens, float *y, int64_t ldy, int64_t r0, int64_t r1)
{
	float_rows(DTYPE_F16, w, xa, xa_stride, n_tokens, y, ldy, r0, r1);
}

AVX2_FN static void rows_bf16(const struct cpu_weight *w, const void *xa, size_t xa_stride,
                              int64_t n_tokens, float *y, int64_t ldy, int64_t r0, int64_t r1)
{
	float_rows(DTYPE_BF16, w, xa, xa_stride, n_tokens, y, ldy, r0, r1);
}

/* ---- table -------------------------------------------------------------------- */

vec_rows_fn vec_rows_avx2(enum dtype type)
{
	switch (type) {
	case DTYPE_F32: return rows_f32;
	case DTYPE_F16: return rows_f16;
	case DTYPE_BF16: return rows_bf16;
	default: return vec_rows_avx2_quant(type);
	}
}

/* ---- conversion ----------------------------------------------------------------- */

AVX2_FN static void half_to_f32_avx2(enum dtype t, const uint8_t *src, float *dst, int64_t n)
{
	int64_t c = 0;
	if (t == DTYPE_F16)
		for (; c + 8 <= n; c += 8)
			_mm256_storeu_ps(dst + c, ld8(DTYPE_F16, src, c));
	else
		for (; c + 8 <= n; c += 8)
			_mm256_storeu_ps(dst + c, ld8(DTYPE_BF16, src, c));
	for (; c < n; c++)
		dst[c] = ld1(t, src, c);
}

void vec_rows_to_f32(const struct cpu_weight *w, int64_t r0, int64_t n, float *dst)
{
	const uint8_t *base = w->data;
	for (int64_t i = 0; i < n; i++) {
		const uint8_t *src = base + (size_t)(r0 + i) * w->row_bytes;
		float *out = dst + i * w->cols;
		if ((w->type == DTYPE_F16 || w->type == DTYPE_BF16) && vec_have_avx2())
			half_to_f32_avx2(w->type, src, out, w->cols);
		else
			(void)dtype_dequant_row((uint32_t)w->type, src, out, w->cols);
	}
}
