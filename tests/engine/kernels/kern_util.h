/* Helpers shared by the kernel tests and benchmarks: deterministic random weights of
 * every supported type and activations. */
#ifndef INFERD_TEST_KERN_UTIL_H
#define INFERD_TEST_KERN_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "matmul.h"

static inline uint64_t ku_next(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static inline float ku_uniform(uint64_t *s)
{
	return (float)((double)(ku_next(s) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static inline void ku_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* Fills rows x cols weights of `type` (row stride row_bytes) with deterministic values.
 * Plain types hold uniform values in [-1, 1); block types random quants (all bit patterns,
 * Q8_0's -128 included) with scales of about 1/64 so that the values stay near [-1, 1]. */
static inline void ku_fill_weights(enum dtype type, uint8_t *dst, int64_t rows, int64_t cols,
                                   size_t row_bytes, uint64_t seed)
{
	uint64_t s = seed;
	for (int64_t r = 0; r < rows; r++) {
		uint8_t *row = dst + (size_t)r * row_bytes;
		for (size_t i = 0; i < row_bytes; i++)
			row[i] = (uint8_t)ku_next(&s);
		int64_t nb;
		switch (type) {
		case DTYPE_F32:
			for (int64_t c = 0; c < cols; c++) {
				float f = ku_uniform(&s);
				memcpy(row + 4 * c, &f, 4);
			}
			break;
		case DTYPE_F16:
			for (int64_t c = 0; c < cols; c++)
				ku_put16(row + 2 * c, dtype_f32_to_f16(ku_uniform(&s)));
			break;
		case DTYPE_BF16:
			for (int64_t c = 0; c < cols; c++)
				ku_put16(row + 2 * c, dtype_f32_to_bf16(ku_uniform(&s)));
			break;
		case DTYPE_Q8_0:
			for (nb = 0; nb < cols / 32; nb++)
				ku_put16(row + 34 * nb, dtype_f32_to_f16(ku_uniform(&s) / 128.0f));
			break;
		case DTYPE_Q4_0:
			for (nb = 0; nb < cols / 32; nb++)
				ku_put16(row + 18 * nb, dtype_f32_to_f16(ku_uniform(&s) / 8.0f));
			break;
		case DTYPE_Q4_K:
			for (nb = 0; nb < cols / 256; nb++) {
				ku_put16(row + 144 * nb, dtype_f32_to_f16(fabsf(ku_uniform(&s)) / 512.0f));
				ku_put16(row + 144 * nb + 2, dtype_f32_to_f16(fabsf(ku_uniform(&s)) / 64.0f));
			}
			break;
		case DTYPE_Q6_K:
			for (nb = 0; nb < cols / 256; nb++)
				ku_put16(row + 210 * nb + 208, dtype_f32_to_f16(ku_uniform(&s) / 2048.0f));
			break;
		default:
			break;
		}
	}
}

/* n_tokens x ld activations, uniform in [-1, 1) times a per-32-block magnitude between
 * 1/16 and 1 (so the blocks' quantization scales differ), padding columns NaN. */
static inline void ku_fill_acts(float *x, int64_t n_tokens, int64_t cols, int64_t ld,
                                uint64_t seed)
{
	uint64_t s = seed;
	for (int64_t t = 0; t < n_tokens; t++) {
		float mag = 1.0f;
		for (int64_t c = 0; c < ld; c++) {
			if (c % 32 == 0)
				mag = 1.0f / (float)(1 + (ku_next(&s) % 16));
			x[t * ld + c] = c < cols ? mag * ku_uniform(&s) : NAN;
		}
	}
}

#endif
