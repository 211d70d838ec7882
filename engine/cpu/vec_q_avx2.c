/* AVX2 row kernels of the quantized weight types against quantized activations:
 *   Q8_0, Q4_0 x struct q8_0a   (blocks of 32)
 *   Q4_K, Q6_K x struct q8_k    (super-blocks of 256)
 * Integer products with _mm256_maddubs_epi16 (u8 x s8 -> pairs summed into s16) and
 * _mm256_madd_epi16 (s16 x s16 -> pairs summed into s32), one f32 FMA per block and token.
 * Same integer arithmetic as quant_dot_scalar(); only the order of the f32 additions
 * differs.
 *
 * Shape of the work: a tile of one weight row times T <= 4 tokens; the weight block is
 * loaded and unpacked once for the T tokens. Tokens go in chunks of TOKEN_CHUNK so that the
 * chunk's quantized activations stay in L2 while the thread's rows stream past. */
#include <string.h>

#include <immintrin.h>

#include "quant.h"
#include "vec.h"

#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

enum { TOKEN_CHUNK = 64 };

AVX2_FN INLINE float hsum8(__m256 v)
{
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	h = _mm_add_ps(h, _mm_movehl_ps(h, h));
	h = _mm_add_ss(h, _mm_movehdup_ps(h));
	return _mm_cvtss_f32(h);
}

AVX2_FN INLINE float f16(const uint8_t *p)
{
	return _cvtsh_ss(quant_ld16(p));
}

/* ---- Q8_0 and Q4_0 -------------------------------------------------------------- */

/* Q8_0: signed weights times signed activations; maddubs needs one unsigned operand, so
 * it multiplies |w| by y with the sign of w moved onto y.
 * Q4_0: the unsigned quants u = q + 8 go straight into maddubs; 8 * dw * ds per block
 * (ds = d * sum of the activation quants) comes off at the end. */
AVX2_FN INLINE void q8_tile(enum dtype t, int T, const uint8_t *wrow, int64_t nb,
                            const uint8_t *xa, size_t xs, float *y, int64_t ldy)
{
	const size_t bb = t == DTYPE_Q4_0 ? DTYPE_Q4_0_BYTES : DTYPE_Q8_0_BYTES;
	const __m256i ones = _mm256_set1_epi16(1);
	__m256 acc[4];
	__m128 corr[4];
#pragma GCC unroll 4
	for (int j = 0; j < T; j++) {
		acc[j] = _mm256_setzero_ps();
		corr[j] = _mm_setzero_ps();
	}
	for (int64_t b = 0; b < nb; b++) {
		const uint8_t *blk = wrow + (size_t)b * bb;
		const __m128 dw1 = _mm_set_ss(f16(blk));
		const __m256 dw = _mm256_broadcastss_ps(dw1);
		if (t == DTYPE_Q4_0) {
			__m128i p = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));
			__m256i u = _mm256_set_m128i(_mm_srli_epi16(p, 4), p);
			u = _mm256_and_si256(u, _mm256_set1_epi8(0x0f));
#pragma GCC unroll 4
			for (int j = 0; j < T; j++) {
				const struct q8_0a *a = (const struct q8_0a *)(const void *)(xa + j * xs) + b;
				__m256i yv = _mm256_loadu_si256((const __m256i *)(const void *)a->qs);
				__m256i p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(u, yv), ones);
				acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(&a->d)),
				                         _mm256_cvtepi32_ps(p32), acc[j]);
				corr[j] = _mm_fmadd_ss(dw1, _mm_load_ss(&a->ds), corr[j]);
			}
			continue;
		}
		const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));
		const __m256i aq = _mm256_abs_epi8(q);
#pragma GCC unroll 4
		for (int j = 0; j < T; j++) {
			const struct q8_0a *a = (const struct q8_0a *)(const void *)(xa + j * xs) + b;
			__m256i s = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(const void *)a->qs), q);
			__m256i p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, s), ones);
			acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(&a->d)),
			                         _mm256_cvtepi32_ps(p32), acc[j]);
		}
	}
#pragma GCC unroll 4
	for (int j = 0; j < T; j++)
		y[j * ldy] = hsum8(acc[j]) - 8.0f * _mm_cvtss_f32(corr[j]);
}

/* ---- Q4_K --------------------------------------------------------------------- */

/* Unsigned 4-bit quants times signed activations go straight into maddubs; the sub-block
 * scales multiply in madd; the mins term uses the activation sums (bsums). */
AVX2_FN INLINE void q4k_tile(int T, const uint8_t *wrow, int64_t nb, const uint8_t *xa,
                             size_t xs, float *y, int64_t ldy)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	__m256 acc[4];
	#pragma GCC unroll 4
	for (int j = 0; j < T; j++)
		acc[j] = _mm256_setzero_ps();
	/* int16 element k of a register, broadcast to all lanes: bytes 2k, 2k+1 */
	__m256i pick[8];
	#pragma GCC unroll 8
	for (int k = 0; k < 8; k++)
		pick[k] = _mm256_set1_epi16((short)(0x0100 + 0x0202 * k));
	for (int64_t b = 0; b < nb; b++) {
		const uint8_t *blk = wrow + (size_t)b * DTYPE_Q4_K_BYTES;
		const float d = f16(blk), dmin = f16(blk + 2);
		/* the 12 packed bytes as three words: 8 scales and 8 mins of 6 bits (see
		 * quant_q4_k_scale_min), unpacked four at a time */
		uint32_t u[3];
		memcpy(u, blk + 4, 12);
		const uint64_t sc8 = (uint64_t)(u[0] & 0x3f3f3f3fu) |
		                     (uint64_t)((u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u)) << 32;
		const uint64_t m8 = (uint64_t)(u[1] & 0x3f3f3f3fu) |
		                    (uint64_t)(((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u)) << 32;
		const __m256i scv = _mm256_broadcastsi128_si256(
			_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
		const __m128i mb = _mm_cvtsi64_si128((long long)m8);
		const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mb, mb)); /* m0 m0 m1 m1 .. */
		__m256i sumi[4];
		#pragma GCC unroll 4
		for (int j = 0; j < T; j++)
			sumi[j] = _mm256_setzero_si256();
		#pragma GCC unroll 8
		for (int k = 0; k < 4; k++) {
			__m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 16 + 32 * k));
			__m256i lo = _mm256_and_si256(raw, m4);
			__m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
			__m256i s0 = _mm256_shuffle_epi8(scv, pick[2 * k]);
			__m256i s1 = _mm256_shuffle_epi8(scv, pick[2 * k + 1]);
			#pragma GCC unroll 4
			for (int j = 0; j < T; j++) {
				const struct q8_k *a = (const struct q8_k *)(const void *)(xa + j * xs) + b;
				__m256i y0 = _mm256_loadu_si256((const __m256i *)(const void *)(a->qs + 64 * k));
				__m256i y1 = _mm256_loadu_si256((const __m256i *)(const void *)(a->qs + 64 * k + 32));
				__m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), s0);
				__m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), s1);
				sumi[j] = _mm256_add_epi32(sumi[j], _mm256_add_epi32(p0, p1));
			}
		}
		#pragma GCC unroll 4
		for (int j = 0; j < T; j++) {
			const struct q8_k *a = (const struct q8_k *)(const void *)(xa + j * xs) + b;
			__m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)a->bsums);
			__m256i mm = _mm256_madd_epi16(mins, bs);
			acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
			acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(-dmin * a->d), _mm256_cvtepi32_ps(mm), acc[j]);
		}
	}
	#pragma GCC unroll 4
	for (int j = 0; j < T; j++)
		y[j * ldy] = hsum8(acc[j]);
}

/* ---- Q6_K --------------------------------------------------------------------- */

/* 6-bit quants u in 0..63 (q = u - 32) rebuilt from ql (low 4 bits) and qh (high 2 bits);
 * maddubs on u, then 32 * sum(sc * bsums) subtracted once per super-block. */
AVX2_FN INLINE void q6k_tile(int T, const uint8_t *wrow, int64_t nb, const uint8_t *xa,
                             size_t xs, float *y, int64_t ldy)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(0x30);
	__m256 acc[4];
	#pragma GCC unroll 4
	for (int j = 0; j < T; j++)
		acc[j] = _mm256_setzero_ps();
	for (int64_t b = 0; b < nb; b++) {
		const uint8_t *blk = wrow + (size_t)b * DTYPE_Q6_K_BYTES;
		const int8_t *sc = (const int8_t *)(blk + 192);
		const __m256 d = _mm256_set1_ps(f16(blk + 208));
		__m256i sumi[4];
		#pragma GCC unroll 4
		for (int j = 0; j < T; j++)
			sumi[j] = _mm256_setzero_si256();
		#pragma GCC unroll 2
		for (int half = 0; half < 2; half++) {
			const uint8_t *ql = blk + 64 * half, *qh = blk + 128 + 32 * half;
			__m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)ql);
			__m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 32));
			__m256i h = _mm256_loadu_si256((const __m256i *)(const void *)qh);
			__m256i q[4];
			q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m3));
			q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m3));
			q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m3));
			q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
			                       _mm256_and_si256(_mm256_srli_epi16(h, 2), m3));
			#pragma GCC unroll 8
			for (int k = 0; k < 4; k++) {
				const int8_t *s = sc + 8 * half + 2 * k;
				__m256i sv = _mm256_set_m128i(_mm_set1_epi16(s[1]), _mm_set1_epi16(s[0]));
				#pragma GCC unroll 4
				for (int j = 0; j < T; j++) {
					const struct q8_k *a = (const struct q8_k *)(const void *)(xa + j * xs) + b;
					__m256i yv = _mm256_loadu_si256(
						(const __m256i *)(const void *)(a->qs + 128 * half + 32 * k));
					__m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], yv), sv);
					sumi[j] = _mm256_add_epi32(sumi[j], p);
				}
			}
		}
		const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)sc));
		#pragma GCC unroll 4
		for (int j = 0; j < T; j++) {
			const struct q8_k *a = (const struct q8_k *)(const void *)(xa + j * xs) + b;
			__m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)a->bsums);
			__m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5);
			__m256i si = _mm256_sub_epi32(sumi[j], corr);
			acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_broadcast_ss(&a->d)), _mm256_cvtepi32_ps(si), acc[j]);
		}
	}
	#pragma GCC unroll 4
	for (int j = 0; j < T; j++)
		y[j * ldy] = hsum8(acc[j]);
}

/* ---- rows --------------------------------------------------------------------- */

AVX2_FN INLINE void tile(enum dtype t, int T, const uint8_t *wrow, int64_t nb,
                         const uint8_t *xa, size_t xs, float *y, int64_t ldy)
{
	if (t == DTYPE_Q4_K)
		q4k_tile(T, wrow, nb, xa, xs, y, ldy);
	else if (t == DTYPE_Q6_K)
		q6k_tile(T, wrow, nb, xa, xs, y, ldy);
	else
		q8_tile(t, T, wrow, nb, xa, xs, y, ldy);
}

AVX2_FN INLINE void quant_rows(enum dtype t, const struct cpu_weight *w, const void *xa,
                               size_t xs, int64_t n_tokens, float *y, int64_t ldy,
                               int64_t r0, int64_t r1)
{
	const int64_t nb = w->cols / (t == DTYPE_Q4_K || t == DTYPE_Q6_K ? 256 : 32);
	const uint8_t *x = xa;
	for (int64_t k0 = 0; k0 < n_tokens; k0 += TOKEN_CHUNK) {
		int64_t kn = n_tokens - k0 < TOKEN_CHUNK ? n_tokens - k0 : TOKEN_CHUNK;
		for (int64_t r = r0; r < r1; r++) {
			const uint8_t *wrow = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
			int64_t k = k0;
			for (; k + 4 <= k0 + kn; k += 4)
				tile(t, 4, wrow, nb, x + k * xs, xs, y + k * ldy + r, ldy);
			switch (k0 + kn - k) {
			case 3: tile(t, 3, wrow, nb, x + k * xs, xs, y + k * ldy + r, ldy); break;
			case 2: tile(t, 2, wrow, nb, x + k * xs, xs, y + k * ldy + r, ldy); break;
			case 1: tile(t, 1, wrow, nb, x + k * xs, xs, y + k * ldy + r, ldy); break;
			default: break;
			}
		}
	}
}

#define ROWS_FN(name, type)                                                                 \
	AVX2_FN static void name(const struct cpu_weight *w, const void *xa, size_t xs,     \
	                         int64_t n_tokens, float *y, int64_t ldy, int64_t r0,       \
	                         int64_t r1)                                                \
	{                                                                                   \
		quant_rows(type, w, xa, xs, n_tokens, y, ldy, r0, r1);                      \
	}

ROWS_FN(rows_q8_0, DTYPE_Q8_0)
ROWS_FN(rows_q4_0, DTYPE_Q4_0)
ROWS_FN(rows_q4_k, DTYPE_Q4_K)
ROWS_FN(rows_q6_k, DTYPE_Q6_K)

vec_rows_fn vec_rows_avx2_quant(enum dtype type)
{
	switch (type) {
	case DTYPE_Q8_0: return rows_q8_0;
	case DTYPE_Q4_0: return rows_q4_0;
	case DTYPE_Q4_K: return rows_q4_k;
	case DTYPE_Q6_K: return rows_q6_k;
	default: return NULL;
	}
}
