/* Group norm and layer norm of the diffusion models (see diffusion_ops.h). Statistics
 * in two passes (mean, then the mean squared deviation): a group of an SD UNet holds up to
 * 10 channels x 4096 pixels = 160 KiB, which stays in L2 for the second pass and the
 * normalisation, so the op reads memory about once. */
#include "diffusion_ops.h"

#include <errno.h>
#include <math.h>

#include "diffusion_ops_simd.h"
#include "ops.h"

/* ---- statistics ------------------------------------------------------------------------------ */

static void stats_scalar(const float *x, int64_t n, float *mean, float *rstd, float eps)
{
	double s = 0.0, ss = 0.0;
	for (int64_t i = 0; i < n; i++)
		s += x[i];
	double m = s / (double)n;
	for (int64_t i = 0; i < n; i++) {
		double d = x[i] - m;
		ss += d * d;
	}
	*mean = (float)m;
	*rstd = (float)(1.0 / sqrt(ss / (double)n + eps));
}

DOPS_AVX2 static void stats_avx2(const float *x, int64_t n, float *mean, float *rstd, float eps)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
		s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
	double s = dops_hsum(_mm256_add_ps(s0, s1));
	for (; i < n; i++)
		s += x[i];
	const float m = (float)(s / (double)n);
	const __m256 vm = _mm256_set1_ps(m);
	s0 = s1 = _mm256_setzero_ps();
	for (i = 0; i + 16 <= n; i += 16) {
		__m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
		__m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm);
		s0 = _mm256_fmadd_ps(d0, d0, s0);
		s1 = _mm256_fmadd_ps(d1, d1, s1);
	}
	for (; i + 8 <= n; i += 8) {
		__m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
		s0 = _mm256_fmadd_ps(d0, d0, s0);
	}
	double ss = dops_hsum(_mm256_add_ps(s0, s1));
	for (; i < n; i++)
		ss += (double)(x[i] - m) * (x[i] - m);
	*mean = m;
	*rstd = (float)(1.0 / sqrt(ss / (double)n + eps));
}

/* y = x * a + b (then silu) over n floats */
DOPS_AVX2 static void affine_avx2(const float *x, float *y, int64_t n, float a, float b, bool silu)
{
	const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, vb);
		_mm256_storeu_ps(y + i, silu ? dops_silu8(v) : v);
	}
	for (; i < n; i++) {
		float v = x[i] * a + b;
		y[i] = silu ? v / (1.0f + expf(-v)) : v;
	}
}

static void affine_scalar(const float *x, float *y, int64_t n, float a, float b, bool silu)
{
	for (int64_t i = 0; i < n; i++) {
		float v = x[i] * a + b;
		y[i] = silu ? v / (1.0f + expf(-v)) : v;
	}
}

/* ---- group norm ------------------------------------------------------------------------------ */

int dops_group_norm(const float *x, float *y, int64_t n, int64_t c, int64_t hw, int groups,
                    const float *weight, const float *bias, float eps, bool silu, int n_threads)
{
	if (x == NULL || y == NULL || n <= 0 || c <= 0 || hw <= 0 || groups <= 0 || c % groups != 0 ||
	    !(eps >= 0.0f))
		return -EINVAL;
	const bool simd = cpu_ops_use_simd();
	const int64_t cg = c / groups, glen = cg * hw, n_items = n * groups;
	int nt = dops_threads(n * c * hw, n_threads);
	if (nt > n_items)
		nt = (int)n_items;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t it = 0; it < n_items; it++) {
		const int64_t ch0 = (it % groups) * cg, off = it * glen; /* groups are contiguous */
		float mean, rstd;
		if (simd)
			stats_avx2(x + off, glen, &mean, &rstd, eps);
		else
			stats_scalar(x + off, glen, &mean, &rstd, eps);
		for (int64_t k = 0; k < cg; k++) {
			float a = rstd * (weight != NULL ? weight[ch0 + k] : 1.0f);
			float b = (bias != NULL ? bias[ch0 + k] : 0.0f) - mean * a;
			const float *xp = x + off + k * hw;
			float *yp = y + off + k * hw;
			if (simd)
				affine_avx2(xp, yp, hw, a, b, silu);
			else
				affine_scalar(xp, yp, hw, a, b, silu);
		}
	}
	return 0;
}

/* ---- layer norm ------------------------------------------------------------------------------ */

DOPS_AVX2 static void ln_apply_avx2(const float *x, float *y, int64_t n, float mean, float rstd,
                                    const float *w, const float *b)
{
	const __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
		if (w != NULL)
			v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
		if (b != NULL)
			v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
		_mm256_storeu_ps(y + i, v);
	}
	for (; i < n; i++)
		y[i] = (x[i] - mean) * rstd * (w != NULL ? w[i] : 1.0f) + (b != NULL ? b[i] : 0.0f);
}

int dops_layer_norm(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows,
                    int64_t len, const float *w, const float *b, float eps, int n_threads)
{
	if (x == NULL || y == NULL || rows < 0 || len <= 0 || ldx < len || ldy < len ||
	    !(eps >= 0.0f))
		return -EINVAL;
	const bool simd = cpu_ops_use_simd();
	int nt = dops_threads(rows * len, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		const float *xr = x + r * ldx;
		float *yr = y + r * ldy;
		float mean, rstd;
		if (simd) {
			stats_avx2(xr, len, &mean, &rstd, eps);
			ln_apply_avx2(xr, yr, len, mean, rstd, w, b);
			continue;
		}
		stats_scalar(xr, len, &mean, &rstd, eps);
		for (int64_t i = 0; i < len; i++)
			yr[i] = (xr[i] - mean) * rstd * (w != NULL ? w[i] : 1.0f) +
			        (b != NULL ? b[i] : 0.0f);
	}
	return 0;
}
