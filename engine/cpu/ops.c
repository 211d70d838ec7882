/* Row operators of the CPU backend (see ops.h): scalar reference versions, AVX2/FMA
 * versions compiled with target attributes, and the run-time choice between them. */
#include "ops.h"

#include <cpuid.h>
#include <math.h>
#include <stddef.h>

#include <immintrin.h>
#include <omp.h>

/* Below this many floats of work an op runs on the calling thread: an OpenMP
 * fork costs a few microseconds, more than a decode-sized row takes. */
#define OPS_PAR_MIN 32768

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* ---- run-time choice --------------------------------------------------------------- */

static int simd_state = -1; /* -1 unknown, 0 scalar, 1 avx2 */
static bool simd_forced_off;

bool cpu_ops_use_simd(void)
{
	if (simd_forced_off)
		return false;
	if (simd_state < 0) {
		__builtin_cpu_init();
		/* F16C through cpuid: clang's __builtin_cpu_supports does not know "f16c". */
		unsigned eax, ebx, ecx = 0, edx;
		bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
		simd_state = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
	}
	return simd_state == 1;
}

void cpu_ops_force_scalar(bool scalar)
{
	simd_forced_off = scalar;
}

static int threads_for(int64_t work, int n_threads)
{
	if (work < OPS_PAR_MIN)
		return 1;
	return n_threads > 0 ? n_threads : omp_get_max_threads();
}

/* ---- AVX2 helpers ---------------------------------------------------------------------- */

AVX2 static inline float hsum256(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

AVX2 static inline float hmax256(__m256 v)
{
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* exp(x) for 8 floats, relative error ~2e-7 over the float range (Cephes
 * polynomial after reduction by ln 2); x < -87.3 gives 0. */
AVX2 static inline __m256 exp256(__m256 x)
{
	const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447504f);
	x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
	__m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
	fx = _mm256_floor_ps(fx);
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
	__m256 y = _mm256_set1_ps(1.9875691500E-4f);
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
	__m256 x2 = _mm256_mul_ps(x, x);
	y = _mm256_fmadd_ps(y, x2, _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* ---- dot / axpy (attention) ---------------------------------------------------------------- */

AVX2 static float dot_avx2(const float *a, const float *b, int64_t n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
	float s = hsum256(_mm256_add_ps(s0, s1));
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

float cpu_dot_f32(const float *a, const float *b, int64_t n)
{
	if (cpu_ops_use_simd())
		return dot_avx2(a, b, n);
	float s = 0.0f;
	for (int64_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

AVX2 static void axpy_avx2(float *y, float a, const float *x, int64_t n)
{
	__m256 va = _mm256_set1_ps(a);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
	for (; i < n; i++)
		y[i] += a * x[i];
}

void cpu_axpy_f32(float *y, float a, const float *x, int64_t n)
{
	if (cpu_ops_use_simd()) {
		axpy_avx2(y, a, x, n);
		return;
	}
	for (int64_t i = 0; i < n; i++)
		y[i] += a * x[i];
}

void cpu_scale_f32(float *y, float a, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] *= a;
}

AVX2 static void f16_to_f32_avx2(const uint16_t *x, float *y, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
	for (; i < n; i++)
		y[i] = dtype_f16_to_f32(x[i]);
}

void cpu_f16_to_f32(const uint16_t *x, float *y, int64_t n)
{
	if (cpu_ops_use_simd()) {
		f16_to_f32_avx2(x, y, n);
		return;
	}
	for (int64_t i = 0; i < n; i++)
		y[i] = dtype_f16_to_f32(x[i]);
}

/* ---- RMSNorm ------------------------------------------------------------------------------ */

static void rms_row_scalar(const float *x, const float *w, float *y, int64_t n, float eps)
{
	double ss = 0.0;
	for (int64_t i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	float r = (float)(1.0 / sqrt(ss / (double)n + eps));
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] * r * w[i];
}

AVX2 static void rms_row_avx2(const float *x, const float *w, float *y, int64_t n, float eps)
{
	__m256 s = _mm256_setzero_ps();
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		s = _mm256_fmadd_ps(v, v, s);
	}
	float ss = hsum256(s);
	for (; i < n; i++)
		ss += x[i] * x[i];
	float r = (float)(1.0 / sqrt((double)ss / (double)n + eps));
	__m256 vr = _mm256_set1_ps(r);
	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vr),
		                                      _mm256_loadu_ps(w + i)));
	for (; i < n; i++)
		y[i] = x[i] * r * w[i];
}

void cpu_rms_norm(const float *x, int64_t ldx, const float *w, float *y, int64_t ldy,
                  int64_t n_rows, int64_t n, float eps, int n_threads)
{
	bool simd = cpu_ops_use_simd();
	int nt = threads_for(n_rows * n, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t r = 0; r < n_rows; r++) {
		if (simd)
			rms_row_avx2(x + r * ldx, w, y + r * ldy, n, eps);
		else
			rms_row_scalar(x + r * ldx, w, y + r * ldy, n, eps);
	}
}

/* ---- RoPE ---------------------------------------------------------------------------------
 * Per row: cs[i] = cos(theta_i), sn[i] = sin(theta_i) for the n_rot/2 pairs, computed in
 * double (theta reaches 1e5 radians at long contexts), then applied to every head. */

#define ROPE_MAX_ROT 1024

static void rope_angles(int32_t pos, const struct rope_params *p, float *cs, float *sn)
{
	int half = p->n_rot / 2;
	for (int i = 0; i < half; i++) {
		double inv = pow((double)p->freq_base, -2.0 * i / p->n_rot);
		double th = (double)pos * p->freq_scale * inv;
		if (p->freq_factors)
			th /= p->freq_factors[i];
		cs[i] = (float)cos(th);
		sn[i] = (float)sin(th);
	}
}

static void rope_head_scalar(float *h, const struct rope_params *p, const float *cs, const float *sn)
{
	int half = p->n_rot / 2;
	for (int i = 0; i < half; i++) {
		int a = p->style == ROPE_STYLE_NEOX ? i : 2 * i;
		int b = p->style == ROPE_STYLE_NEOX ? i + half : 2 * i + 1;
		float x0 = h[a], x1 = h[b];
		h[a] = x0 * cs[i] - x1 * sn[i];
		h[b] = x0 * sn[i] + x1 * cs[i];
	}
}

/* Normal style: cd = (c0 c0 c1 c1 ...), sd = (-s0 s0 -s1 s1 ...): y = x*cd + swap(x)*sd. */
AVX2 static void rope_head_avx2(float *h, const struct rope_params *p, const float *cs,
                                const float *sn, const float *cd, const float *sd)
{
	int half = p->n_rot / 2, i = 0;
	if (p->style == ROPE_STYLE_NEOX) {
		for (; i + 8 <= half; i += 8) {
			__m256 x0 = _mm256_loadu_ps(h + i), x1 = _mm256_loadu_ps(h + i + half);
			__m256 c = _mm256_loadu_ps(cs + i), s = _mm256_loadu_ps(sn + i);
			_mm256_storeu_ps(h + i, _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
			_mm256_storeu_ps(h + i + half, _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c)));
		}
		for (; i < half; i++) {
			float x0 = h[i], x1 = h[i + half];
			h[i] = x0 * cs[i] - x1 * sn[i];
			h[i + half] = x0 * sn[i] + x1 * cs[i];
		}
		return;
	}
	int n = p->n_rot, j = 0;
	for (; j + 8 <= n; j += 8) {
		__m256 x = _mm256_loadu_ps(h + j);
		__m256 xs = _mm256_permute_ps(x, 0xB1); /* swap adjacent pairs */
		_mm256_storeu_ps(h + j, _mm256_fmadd_ps(x, _mm256_loadu_ps(cd + j),
		                                        _mm256_mul_ps(xs, _mm256_loadu_ps(sd + j))));
	}
	for (; j < n; j += 2) {
		float x0 = h[j], x1 = h[j + 1];
		h[j] = x0 * cs[j / 2] - x1 * sn[j / 2];
		h[j + 1] = x0 * sn[j / 2] + x1 * cs[j / 2];
	}
}

void cpu_rope(float *x, int64_t ldx, int64_t n_rows, int n_heads, int head_dim,
              const int32_t *pos, const struct rope_params *p, int n_threads)
{
	bool simd = cpu_ops_use_simd();
	int nt = threads_for(n_rows * n_heads * head_dim * 4, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t r = 0; r < n_rows; r++) {
		float cs[ROPE_MAX_ROT / 2], sn[ROPE_MAX_ROT / 2], cd[ROPE_MAX_ROT], sd[ROPE_MAX_ROT];
		rope_angles(pos[r], p, cs, sn);
		if (simd && p->style == ROPE_STYLE_NORMAL) {
			for (int i = 0; i < p->n_rot / 2; i++) {
				cd[2 * i] = cd[2 * i + 1] = cs[i];
				sd[2 * i] = -sn[i];
				sd[2 * i + 1] = sn[i];
			}
		}
		float *row = x + r * ldx;
		for (int h = 0; h < n_heads; h++) {
			if (simd)
				rope_head_avx2(row + (int64_t)h * head_dim, p, cs, sn, cd, sd);
			else
				rope_head_scalar(row + (int64_t)h * head_dim, p, cs, sn);
		}
	}
}

/* ---- SiLU * up ------------------------------------------------------------------------------ */

AVX2 static void silu_mul_row_avx2(float *g, const float *u, int64_t n)
{
	const __m256 one = _mm256_set1_ps(1.0f);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(g + i);
		__m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), v));
		__m256 s = _mm256_div_ps(v, _mm256_add_ps(one, e));
		_mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
	}
	for (; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void cpu_silu_mul(float *gate, int64_t ldg, const float *up, int64_t ldu, int64_t n_rows,
                  int64_t n, int n_threads)
{
	bool simd = cpu_ops_use_simd();
	int nt = threads_for(n_rows * n * 8, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t r = 0; r < n_rows; r++) {
		float *g = gate + r * ldg;
		const float *u = up + r * ldu;
		if (simd) {
			silu_mul_row_avx2(g, u, n);
		} else {
			for (int64_t i = 0; i < n; i++)
				g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
		}
	}
}

/* ---- add ------------------------------------------------------------------------------------- */

AVX2 static void add_row_avx2(float *y, const float *x, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
	for (; i < n; i++)
		y[i] += x[i];
}

void cpu_add(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n_rows, int64_t n,
             int n_threads)
{
	bool simd = cpu_ops_use_simd();
	int nt = threads_for(n_rows * n, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t r = 0; r < n_rows; r++) {
		float *yr = y + r * ldy;
		const float *xr = x + r * ldx;
		if (simd) {
			add_row_avx2(yr, xr, n);
		} else {
			for (int64_t i = 0; i < n; i++)
				yr[i] += xr[i];
		}
	}
}

/* ---- softmax --------------------------------------------------------------------------------- */

AVX2 static void softmax_row_avx2(float *x, int64_t n)
{
	__m256 vm = _mm256_set1_ps(-INFINITY);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
	float m = hmax256(vm);
	for (; i < n; i++)
		m = x[i] > m ? x[i] : m;
	__m256 s = _mm256_setzero_ps(), bm = _mm256_set1_ps(m);
	for (i = 0; i + 8 <= n; i += 8) {
		__m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), bm));
		_mm256_storeu_ps(x + i, e);
		s = _mm256_add_ps(s, e);
	}
	float sum = hsum256(s);
	for (; i < n; i++) {
		x[i] = expf(x[i] - m);
		sum += x[i];
	}
	__m256 inv = _mm256_set1_ps(1.0f / sum);
	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
	for (; i < n; i++)
		x[i] *= 1.0f / sum;
}

static void softmax_row_scalar(float *x, int64_t n)
{
	float m = -INFINITY, sum = 0.0f;
	for (int64_t i = 0; i < n; i++)
		m = x[i] > m ? x[i] : m;
	for (int64_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - m);
		sum += x[i];
	}
	for (int64_t i = 0; i < n; i++)
		x[i] /= sum;
}

void cpu_softmax(float *x, int64_t ldx, int64_t n_rows, int64_t n, int n_threads)
{
	bool simd = cpu_ops_use_simd();
	int nt = threads_for(n_rows * n * 4, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
	for (int64_t r = 0; r < n_rows; r++) {
		if (simd)
			softmax_row_avx2(x + r * ldx, n);
		else
			softmax_row_scalar(x + r * ldx, n);
	}
}
