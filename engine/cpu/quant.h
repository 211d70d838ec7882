/* Private to the CPU kernels (engine/cpu/matmul*.c, quant*.c, vec*.c) and their tests:
 * activations quantized on the fly, and the scalar integer dot products that define what
 * the SIMD kernels compute.
 *
 * Activation formats (in memory only, never stored in files):
 *   struct q8_0a: 32 int8 quants with an f32 scale and the scaled sum of the quants. GGML's
 *                 Q8_0 keeps an f16 scale; the f32 scale here avoids a rounding step and a
 *                 conversion in the inner loop.
 *   struct q8_k:  GGML's Q8_K: f32 d; int8 qs[256]; int16 bsums[16] (sums of 16 quants),
 *                 the partner of the K-quants (Q4_K, Q6_K).
 * Both quantize with d = max|x| / 127 and q = round-half-even(x / d), so |q| <= 127 and the
 * error of an element is at most d/2 = max|x| / 254 per block.
 *
 * Dot products (scalar references): the sum over the blocks of one weight row and one
 * quantized activation row; within a block the products are summed exactly in integers,
 * then scaled in f32 exactly as the AVX2 kernels do (the SIMD kernels may only differ in the
 * order of the f32 additions across blocks).
 */
#ifndef INFERD_ENGINE_CPU_QUANT_H
#define INFERD_ENGINE_CPU_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

struct q8_0a {
	float d;          /* scale */
	float ds;         /* d * (sum of qs): Q4_0 kernels work on unsigned quants u = q + 8 and
	                     take 8 * dw * ds off */
	int8_t qs[32];    /* x[i] ~= d * qs[i] */
};

struct q8_k {
	float d;              /* scale */
	int8_t qs[256];       /* x[i] ~= d * qs[i] */
	int16_t bsums[16];    /* bsums[j] = sum of qs[16j .. 16j+15] */
};

/* The activation format a weight type multiplies against (DTYPE_Q8_0 for Q8_0/Q4_0,
 * DTYPE_Q8_K for Q4_K/Q6_K) and its block size; false for other types. */
bool quant_act_format(enum dtype wtype, enum dtype *act, int64_t *block_elems,
                      size_t *block_bytes);

/* Quantizes n floats (a whole number of blocks) of x to dst. Picks the AVX2 version when
 * the CPU has it; both give identical bytes. */
void quant_row_q8_0a(const float *x, struct q8_0a *dst, int64_t n);
void quant_row_q8_k(const float *x, struct q8_k *dst, int64_t n);

/* Scalar versions (portable reference). */
void quant_row_q8_0a_scalar(const float *x, struct q8_0a *dst, int64_t n);
void quant_row_q8_k_scalar(const float *x, struct q8_k *dst, int64_t n);

/* Scalar dot product of one weight row (n elements, GGUF layout of wtype) with one
 * quantized activation row (struct q8_0a or q8_k blocks as quant_act_format says).
 * wtype: Q8_0, Q4_0, Q4_K or Q6_K; returns 0 for another type. */
float quant_dot_scalar(enum dtype wtype, const void *wrow, const void *act, int64_t n);

/* ---- shared helpers ------------------------------------------------------------- */

static inline uint16_t quant_ld16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

/* Q4_K: scale and min of sub-block j (0..7) from the 12 packed bytes (see dtype.c). */
static inline void quant_q4_k_scale_min(int j, const uint8_t *s, int *sc, int *m)
{
	if (j < 4) {
		*sc = s[j] & 63;
		*m = s[j + 4] & 63;
	} else {
		*sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
		*m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
	}
}

#endif
