/* Element-wise diffusion operators (see diffusion_ops.h): SiLU, GELU, GEGLU, nearest 2x
 * upsampling, adds, softmax rows, timestep embedding. Scalar and AVX2 versions. */
#include "diffusion_ops.h"

#include <errno.h>
#include <math.h>

#include "diffusion_ops_simd.h"
#include "ops.h"

/* Chunk of floats one loop iteration of the element-wise ops handles. */
#define CHUNK 4096

/* ---- SiLU / GELU --------------------------------------------------------------------------- */

static inline float silu1(float x)
{
	return x / (1.0f + expf(-x));
}

static inline float gelu_erf1(float x)
{
	return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

static inline float gelu_tanh1(float x)
{
	return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

enum act { ACT_SILU, ACT_GELU_ERF, ACT_GELU_TANH };

DOPS_AVX2 static void act_avx2(const float *x, float *y, int64_t n, enum act a)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		v = a == ACT_SILU ? dops_silu8(v) : a == ACT_GELU_ERF ? dops_gelu_erf8(v)
		                                                    : dops_gelu_tanh8(v);
		_mm256_storeu_ps(y + i, v);
	}
	for (; i < n; i++)
		y[i] = a == ACT_SILU ? silu1(x[i]) : a == ACT_GELU_ERF ? gelu_erf1(x[i])
		                                                     : gelu_tanh1(x[i]);
}

static void act_scalar(const float *x, float *y, int64_t n, enum act a)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = a == ACT_SILU ? silu1(x[i]) : a == ACT_GELU_ERF ? gelu_erf1(x[i])
		                                                     : gelu_tanh1(x[i]);
}

static int act_run(const float *x, float *y, int64_t count, enum act a, int n_threads)
{
	if (x == NULL || y == NULL || count < 0)
		return -EINVAL;
	bool simd = cpu_ops_use_simd();
	int nt = dops_threads(count, n_threads);
	int64_t n_chunks = (count + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t ch = 0; ch < n_chunks; ch++) {
		int64_t i0 = ch * CHUNK, n = count - i0 < CHUNK ? count - i0 : CHUNK;
		if (simd)
			act_avx2(x + i0, y + i0, n, a);
		else
			act_scalar(x + i0, y + i0, n, a);
	}
	return 0;
}

int dops_silu(const float *x, float *y, int64_t count, int n_threads)
{
	return act_run(x, y, count, ACT_SILU, n_threads);
}

int dops_gelu(const float *x, float *y, int64_t count, enum dops_gelu_kind kind, int n_threads)
{
	if (kind != DOPS_GELU_ERF && kind != DOPS_GELU_TANH)
		return -EINVAL;
	return act_run(x, y, count, kind == DOPS_GELU_ERF ? ACT_GELU_ERF : ACT_GELU_TANH,
	               n_threads);
}

/* ---- GEGLU ----------------------------------------------------------------------------------- */

DOPS_AVX2 static void geglu_avx2(const float *x, float *y, int64_t len)
{
	int64_t i = 0;
	for (; i + 8 <= len; i += 8)
		_mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i),
		                                      dops_gelu_erf8(_mm256_loadu_ps(x + len + i))));
	for (; i < len; i++)
		y[i] = x[i] * gelu_erf1(x[len + i]);
}

int dops_geglu(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows, int64_t len,
               int n_threads)
{
	if (x == NULL || y == NULL || rows < 0 || len <= 0 || ldx < 2 * len || ldy < len)
		return -EINVAL;
	bool simd = cpu_ops_use_simd();
	int nt = dops_threads(rows * len, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		const float *xr = x + r * ldx;
		float *yr = y + r * ldy;
		if (simd)
			geglu_avx2(xr, yr, len);
		else
			for (int64_t i = 0; i < len; i++)
				yr[i] = xr[i] * gelu_erf1(xr[len + i]);
	}
	return 0;
}

/* ---- upsampling ------------------------------------------------------------------------------ */

DOPS_AVX2 static void up_row_avx2(const float *x, float *y0, float *y1, int64_t w)
{
	const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
	int64_t j = 0;
	for (; j + 4 <= w; j += 4) {
		__m256 v = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(x + j)), dup);
		_mm256_storeu_ps(y0 + 2 * j, v);
		_mm256_storeu_ps(y1 + 2 * j, v);
	}
	for (; j < w; j++)
		y0[2 * j] = y0[2 * j + 1] = y1[2 * j] = y1[2 * j + 1] = x[j];
}

int dops_upsample_nearest2x(const float *x, float *y, int64_t nc, int64_t h, int64_t w,
                            int n_threads)
{
	if (x == NULL || y == NULL || nc <= 0 || h <= 0 || w <= 0)
		return -EINVAL;
	bool simd = cpu_ops_use_simd();
	int nt = dops_threads(nc * h * w * 4, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t r = 0; r < nc * h; r++) {
		const float *xr = x + r * w;
		float *y0 = y + r * 4 * w, *y1 = y0 + 2 * w; /* rows 2i and 2i+1 of the plane */
		if (simd) {
			up_row_avx2(xr, y0, y1, w);
			continue;
		}
		for (int64_t j = 0; j < w; j++)
			y0[2 * j] = y0[2 * j + 1] = y1[2 * j] = y1[2 * j + 1] = xr[j];
	}
	return 0;
}

/* ---- adds ------------------------------------------------------------------------------------ */

DOPS_AVX2 static void add_avx2(float *y, const float *x, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
	for (; i < n; i++)
		y[i] += x[i];
}

DOPS_AVX2 static void add_scalar_avx2(float *y, float b, int64_t n)
{
	__m256 vb = _mm256_set1_ps(b);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), vb));
	for (; i < n; i++)
		y[i] += b;
}

int dops_add(float *y, const float *x, int64_t count, int n_threads)
{
	if (y == NULL || x == NULL || count < 0)
		return -EINVAL;
	bool simd = cpu_ops_use_simd();
	int nt = dops_threads(count, n_threads);
	int64_t n_chunks = (count + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t ch = 0; ch < n_chunks; ch++) {
		int64_t i0 = ch * CHUNK, n = count - i0 < CHUNK ? count - i0 : CHUNK;
		if (simd) {
			add_avx2(y + i0, x + i0, n);
			continue;
		}
		for (int64_t i = i0; i < i0 + n; i++)
			y[i] += x[i];
	}
	return 0;
}

int dops_add_channel(float *y, const float *b, int64_t ldb, int64_t n, int64_t c, int64_t hw,
                     int n_threads)
{
	if (y == NULL || b == NULL || n <= 0 || c <= 0 || hw <= 0 || ldb < 0 || (ldb > 0 && ldb < c))
		return -EINVAL;
	bool simd = cpu_ops_use_simd();
	int nt = dops_threads(n * c * hw, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t p = 0; p < n * c; p++) {
		float v = b[(p / c) * ldb + p % c], *yp = y + p * hw;
		if (simd) {
			add_scalar_avx2(yp, v, hw);
			continue;
		}
		for (int64_t i = 0; i < hw; i++)
			yp[i] += v;
	}
	return 0;
}

/* ---- softmax rows ---------------------------------------------------------------------------- */

int dops_softmax_rows(float *x, int64_t ldx, int64_t rows, int64_t len, int n_threads)
{
	if (x == NULL || rows < 0 || len <= 0 || ldx < len)
		return -EINVAL;
	cpu_softmax(x, ldx, rows, len, n_threads); /* the backend's row softmax (ops.c) */
	return 0;
}

/* ---- timestep embedding --------------------------------------------------------------------- */

int dops_timestep_embedding(const float *t, int64_t n, const struct dops_timestep_params *p,
                            float *out)
{
	if (t == NULL || p == NULL || out == NULL || n <= 0 || p->dim < 2 || !(p->max_period > 0))
		return -EINVAL;
	const int half = p->dim / 2;
	const float den = (float)half - p->downscale_freq_shift;
	if (den == 0.0f)
		return -EINVAL;
	/* PyTorch: exponent = -log(max_period) * arange(half, f32) / den; exp; t[:, None] *
	 * freq[None]; * scale; sin and cos, all in f32. */
	const float lmp = -logf(p->max_period);
	for (int64_t b = 0; b < n; b++) {
		float *o = out + b * p->dim;
		float *first = o, *second = o + half;
		if (p->flip_sin_to_cos) {
			first = o + half;
			second = o;
		}
		for (int i = 0; i < half; i++) {
			float freq = expf(lmp * (float)i / den);
			float a = p->scale * (t[b] * freq);
			first[i] = sinf(a);
			second[i] = cosf(a);
		}
		if (p->dim % 2)
			o[p->dim - 1] = 0.0f;
	}
	return 0;
}
