/* Activation quantization (Q8_0 with an f32 scale, Q8_K) and the scalar integer dot
 * products of the quantized weight types. See quant.h. */
#include "quant.h"

#include <math.h>
#include <string.h>

#include <immintrin.h>

#include "vec.h"

bool quant_act_format(enum dtype wtype, enum dtype *act, int64_t *block_elems,
                      size_t *block_bytes)
{
	switch (wtype) {
	case DTYPE_Q8_0:
	case DTYPE_Q4_0:
		*act = DTYPE_Q8_0;
		*block_elems = 32;
		*block_bytes = sizeof(struct q8_0a);
		return true;
	case DTYPE_Q4_K:
	case DTYPE_Q6_K:
		*act = DTYPE_Q8_K;
		*block_elems = 256;
		*block_bytes = sizeof(struct q8_k);
		return true;
	default:
		return false;
	}
}

/* ---- scalar quantization ------------------------------------------------------ */

/* d = amax / 127, q = round-half-even(x * (1/d)); the AVX2 versions below compute the
 * same expressions in the same order, so they produce the same bytes. */
static float q8_scale(float amax, float *id)
{
	float d = amax / 127.0f;
	*id = d != 0.0f ? 1.0f / d : 0.0f;
	return d;
}

static int8_t q8_round(float v)
{
	v = nearbyintf(v); /* default rounding mode: to nearest, ties to even */
	v = fminf(127.0f, fmaxf(-127.0f, v));
	return (int8_t)v;
}

void quant_row_q8_0a_scalar(const float *x, struct q8_0a *dst, int64_t n)
{
	for (int64_t b = 0; b < n / 32; b++, x += 32) {
		float amax = 0.0f, id;
		for (int j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(x[j]));
		dst[b].d = q8_scale(amax, &id);
		int sum = 0;
		for (int j = 0; j < 32; j++) {
			dst[b].qs[j] = q8_round(x[j] * id);
			sum += dst[b].qs[j];
		}
		dst[b].ds = dst[b].d * (float)sum;
	}
}

void quant_row_q8_k_scalar(const float *x, struct q8_k *dst, int64_t n)
{
	for (int64_t b = 0; b < n / 256; b++, x += 256) {
		float amax = 0.0f, id;
		for (int j = 0; j < 256; j++)
			amax = fmaxf(amax, fabsf(x[j]));
		dst[b].d = q8_scale(amax, &id);
		for (int j = 0; j < 256; j++)
			dst[b].qs[j] = q8_round(x[j] * id);
		for (int g = 0; g < 16; g++) {
			int s = 0;
			for (int j = 0; j < 16; j++)
				s += dst[b].qs[16 * g + j];
			dst[b].bsums[g] = (int16_t)s;
		}
	}
}

/* ---- AVX2 quantization ------------------------------------------------------ */

#define AVX2_FN __attribute__((target("avx2,fma,f16c")))

AVX2_FN static float hmax_abs8(const float *x, int n8)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256 m = _mm256_setzero_ps();
	for (int i = 0; i < n8; i++)
		m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i)));
	__m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
	h = _mm_max_ps(h, _mm_movehl_ps(h, h));
	h = _mm_max_ss(h, _mm_movehdup_ps(h));
	return _mm_cvtss_f32(h);
}

/* 32 floats -> 32 int8 at q (round to nearest even, clamp +-127). */
AVX2_FN static void q8_pack32(const float *x, __m256 vid, int8_t *q)
{
	const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
	__m256i v[4];
	for (int k = 0; k < 4; k++) {
		__m256 f = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid);
		f = _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		f = _mm256_min_ps(hi, _mm256_max_ps(lo, f));
		v[k] = _mm256_cvtps_epi32(f);
	}
	/* packs work per 128-bit lane: restore the element order afterwards */
	__m256i a = _mm256_packs_epi32(v[0], v[1]);
	__m256i b = _mm256_packs_epi32(v[2], v[3]);
	__m256i c = _mm256_packs_epi16(a, b);
	c = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
	_mm256_storeu_si256((__m256i *)q, c);
}

AVX2_FN static void quant_row_q8_0a_avx2(const float *x, struct q8_0a *dst, int64_t n)
{
	const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
	for (int64_t b = 0; b < n / 32; b++, x += 32) {
		float id, d = q8_scale(hmax_abs8(x, 4), &id);
		dst[b].d = d;
		q8_pack32(x, _mm256_set1_ps(id), dst[b].qs);
		__m256i q = _mm256_loadu_si256((const __m256i *)(const void *)dst[b].qs);
		__m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
		__m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
		h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
		h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
		dst[b].ds = d * (float)_mm_cvtsi128_si32(h);
	}
}

AVX2_FN static void quant_row_q8_k_avx2(const float *x, struct q8_k *dst, int64_t n)
{
	const __m256i ones = _mm256_set1_epi8(1);
	for (int64_t b = 0; b < n / 256; b++, x += 256) {
		float id, d = q8_scale(hmax_abs8(x, 32), &id);
		__m256 vid = _mm256_set1_ps(id);
		dst[b].d = d;
		for (int k = 0; k < 8; k++) {
			q8_pack32(x + 32 * k, vid, dst[b].qs + 32 * k);
			/* sums of 16: maddubs by ones gives pair sums (int16), madd-free add */
			__m256i q = _mm256_loadu_si256((const __m256i *)(dst[b].qs + 32 * k));
			__m256i p = _mm256_maddubs_epi16(ones, q); /* 16 x int16 pair sums */
			int16_t t[16];
			_mm256_storeu_si256((__m256i *)t, p);
			int s0 = 0, s1 = 0;
			for (int j = 0; j < 8; j++) {
				s0 += t[j];
				s1 += t[8 + j];
			}
			dst[b].bsums[2 * k] = (int16_t)s0;
			dst[b].bsums[2 * k + 1] = (int16_t)s1;
		}
	}
}

void quant_row_q8_0a(const float *x, struct q8_0a *dst, int64_t n)
{
	if (vec_have_avx2())
		quant_row_q8_0a_avx2(x, dst, n);
	else
		quant_row_q8_0a_scalar(x, dst, n);
}

void quant_row_q8_k(const float *x, struct q8_k *dst, int64_t n)
{
	if (vec_have_avx2())
		quant_row_q8_k_avx2(x, dst, n);
	else
		quant_row_q8_k_scalar(x, dst, n);
}

/* ---- scalar dot products ------------------------------------------------------ */

static float dot_q8_0(const uint8_t *w, const struct q8_0a *a, int64_t nb)
{
	float s = 0.0f;
	for (int64_t b = 0; b < nb; b++, w += DTYPE_Q8_0_BYTES) {
		int isum = 0;
		for (int j = 0; j < 32; j++)
			isum += (int8_t)w[2 + j] * a[b].qs[j];
		s += dtype_f16_to_f32(quant_ld16(w)) * a[b].d * (float)isum;
	}
	return s;
}

/* Q4_0: sum over u = q + 8 (0..15) in integers, minus 8 * dw * ds per block. */
static float dot_q4_0(const uint8_t *w, const struct q8_0a *a, int64_t nb)
{
	float s = 0.0f, corr = 0.0f;
	for (int64_t b = 0; b < nb; b++, w += DTYPE_Q4_0_BYTES) {
		int isum = 0;
		for (int j = 0; j < 16; j++) {
			isum += (w[2 + j] & 0x0f) * a[b].qs[j];
			isum += (w[2 + j] >> 4) * a[b].qs[j + 16];
		}
		float dw = dtype_f16_to_f32(quant_ld16(w));
		s += dw * a[b].d * (float)isum;
		corr += dw * a[b].ds;
	}
	return s - 8.0f * corr;
}

static float dot_q4_k(const uint8_t *w, const struct q8_k *a, int64_t nb)
{
	float s = 0.0f;
	for (int64_t b = 0; b < nb; b++, w += DTYPE_Q4_K_BYTES) {
		const uint8_t *qs = w + 16;
		int sumi = 0, summ = 0;
		for (int k = 0; k < 4; k++, qs += 32) {
			int sc0, m0, sc1, m1, i0 = 0, i1 = 0;
			quant_q4_k_scale_min(2 * k, w + 4, &sc0, &m0);
			quant_q4_k_scale_min(2 * k + 1, w + 4, &sc1, &m1);
			for (int l = 0; l < 32; l++) {
				i0 += (qs[l] & 0x0f) * a[b].qs[64 * k + l];
				i1 += (qs[l] >> 4) * a[b].qs[64 * k + 32 + l];
			}
			sumi += sc0 * i0 + sc1 * i1;
			summ += m0 * (a[b].bsums[4 * k] + a[b].bsums[4 * k + 1]);
			summ += m1 * (a[b].bsums[4 * k + 2] + a[b].bsums[4 * k + 3]);
		}
		float d = dtype_f16_to_f32(quant_ld16(w)) * a[b].d;
		float dmin = dtype_f16_to_f32(quant_ld16(w + 2)) * a[b].d;
		s += d * (float)sumi - dmin * (float)summ;
	}
	return s;
}

static float dot_q6_k(const uint8_t *w, const struct q8_k *a, int64_t nb)
{
	float s = 0.0f;
	for (int64_t b = 0; b < nb; b++, w += DTYPE_Q6_K_BYTES) {
		const uint8_t *ql = w, *qh = w + 128;
		const int8_t *sc = (const int8_t *)(w + 192);
		const int8_t *q8 = a[b].qs;
		int sumi = 0;
		for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, q8 += 128) {
			int is[8] = {0};
			for (int l = 0; l < 32; l++) {
				int g = l / 16;
				is[g + 0] += ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) * q8[l];
				is[g + 2] += ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) * q8[l + 32];
				is[g + 4] += ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) * q8[l + 64];
				is[g + 6] += ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) * q8[l + 96];
			}
			/* q = u - 32: subtract 32 * (sum of the 16 activations) per sub-block */
			for (int j = 0; j < 8; j++)
				sumi += sc[j] * (is[j] - 32 * a[b].bsums[8 * half + j]);
		}
		s += dtype_f16_to_f32(quant_ld16(w + 208)) * a[b].d * (float)sumi;
	}
	return s;
}

float quant_dot_scalar(enum dtype wtype, const void *wrow, const void *act, int64_t n)
{
	switch (wtype) {
	case DTYPE_Q8_0: return dot_q8_0(wrow, act, n / 32);
	case DTYPE_Q4_0: return dot_q4_0(wrow, act, n / 32);
	case DTYPE_Q4_K: return dot_q4_k(wrow, act, n / 256);
	case DTYPE_Q6_K: return dot_q6_k(wrow, act, n / 256);
	default: return 0.0f;
	}
}

/* ---- scalar rows ---------------------------------------------------------------- */

void vec_rows_quant_scalar(const struct cpu_weight *w, const void *xa, size_t xa_stride,
                           int64_t n_tokens, float *y, int64_t ldy, int64_t r0, int64_t r1)
{
	const uint8_t *base = w->data, *x = xa;
	for (int64_t r = r0; r < r1; r++)
		for (int64_t t = 0; t < n_tokens; t++)
			y[t * ldy + r] = quant_dot_scalar(w->type, base + (size_t)r * w->row_bytes,
			                                  x + (size_t)t * xa_stride, w->cols);
}
