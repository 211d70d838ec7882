/* Private to engine/cpu/diffusion_ops*.c: AVX2 helpers (exp, erfc-based GELU, horizontal
 * sums) and the threading rule shared by the diffusion operators. */
#ifndef INFERD_ENGINE_CPU_DIFFUSION_OPS_SIMD_H
#define INFERD_ENGINE_CPU_DIFFUSION_OPS_SIMD_H

#include <stdint.h>

#include <immintrin.h>
#include <omp.h>

#define DOPS_AVX2 __attribute__((target("avx2,fma,f16c")))

/* Below this many floats of work an op runs on the calling thread (an OpenMP fork costs
 * a few microseconds). */
#define DOPS_PAR_MIN 32768

static inline int dops_threads(int64_t work, int n_threads)
{
	if (work < DOPS_PAR_MIN)
		return 1;
	return n_threads > 0 ? n_threads : omp_get_max_threads();
}

DOPS_AVX2 static inline float dops_hsum(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

DOPS_AVX2 static inline float dops_hmax(__m256 v)
{
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* exp(x) for 8 floats: Cephes polynomial after reduction by ln 2, relative error ~2e-7;
 * x < -87.3 gives ~0, x > 88 is clamped (large but finite). */
DOPS_AVX2 static inline __m256 dops_exp(__m256 x)
{
	x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3365447504f)),
	                  _mm256_set1_ps(88.0f));
	__m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f),
	                                            _mm256_set1_ps(0.5f)));
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
	__m256 y = _mm256_set1_ps(1.9875691500E-4f);
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
	y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx),
	                                               _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* 1 / d: the approximate reciprocal and one Newton step (relative error ~1e-7, faster than
 * a division, which does not pipeline on these cores). d > 2^126 may give 0. */
DOPS_AVX2 static inline __m256 dops_recip(__m256 d)
{
	__m256 r = _mm256_rcp_ps(d);
	return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}

/* x / (1 + exp(-x)) */
DOPS_AVX2 static inline __m256 dops_silu8(__m256 x)
{
	__m256 e = dops_exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
	return _mm256_mul_ps(x, dops_recip(_mm256_add_ps(_mm256_set1_ps(1.0f), e)));
}

/* gelu_erf(x) = 0.5 x (1 + erf(z)), z = x / sqrt 2. With erfc(|z|) = q(t) exp(-z^2),
 * t = 1 / (1 + p|z|) (Abramowitz-Stegun 7.1.26, absolute error 1.5e-7), 1 + erf(z) is
 * 2 - erfc(z) for z >= 0 and erfc(-z) for z < 0: no cancellation on the negative side. */
DOPS_AVX2 static inline __m256 dops_gelu_erf8(__m256 x)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
	__m256 az = _mm256_andnot_ps(sign, z);
	__m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
	                         _mm256_fmadd_ps(az, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
	__m256 q = _mm256_set1_ps(1.061405429f);
	q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-1.453152027f));
	q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(1.421413741f));
	q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-0.284496736f));
	q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0.254829592f));
	q = _mm256_mul_ps(q, t);
	__m256 ec = _mm256_mul_ps(q, dops_exp(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), az), az)));
	__m256 pos = _mm256_sub_ps(_mm256_set1_ps(2.0f), ec);
	__m256 onep = _mm256_blendv_ps(pos, ec, z); /* sign bit of z picks erfc(-z) */
	return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), onep);
}

/* gelu_tanh(x) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3). */
DOPS_AVX2 static inline __m256 dops_gelu_tanh8(__m256 x)
{
	__m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
	__m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
	                         _mm256_fmadd_ps(x3, _mm256_set1_ps(0.044715f), x));
	__m256 e = dops_exp(_mm256_mul_ps(u, _mm256_set1_ps(-2.0f)));
	return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

#endif
