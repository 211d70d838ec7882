/* Tensor element types: the GGML type table, row sizes, and scalar reference
 * conversions between the stored formats and f32.
 *
 * Type ids are the GGML ids stored in GGUF tensor infos (see the GGUF spec);
 * ids that GGML retired (4, 5, 31-33, 36-38) are not valid.
 *
 * Errors: functions that can fail return 0 or a negative errno-style code
 * (-EINVAL for an unknown type or a length that is not a whole number of blocks,
 * -EOVERFLOW when a size does not fit, -ENOTSUP for a type without a
 * conversion). Nothing here allocates or aborts.
 */
#ifndef INFERD_ENGINE_DTYPE_H
#define INFERD_ENGINE_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dtype {
	DTYPE_F32 = 0,
	DTYPE_F16 = 1,
	DTYPE_Q4_0 = 2,
	DTYPE_Q4_1 = 3,
	DTYPE_Q5_0 = 6,
	DTYPE_Q5_1 = 7,
	DTYPE_Q8_0 = 8,
	DTYPE_Q8_1 = 9,
	DTYPE_Q2_K = 10,
	DTYPE_Q3_K = 11,
	DTYPE_Q4_K = 12,
	DTYPE_Q5_K = 13,
	DTYPE_Q6_K = 14,
	DTYPE_Q8_K = 15,
	DTYPE_IQ2_XXS = 16,
	DTYPE_IQ2_XS = 17,
	DTYPE_IQ3_XXS = 18,
	DTYPE_IQ1_S = 19,
	DTYPE_IQ4_NL = 20,
	DTYPE_IQ3_S = 21,
	DTYPE_IQ2_S = 22,
	DTYPE_IQ4_XS = 23,
	DTYPE_I8 = 24,
	DTYPE_I16 = 25,
	DTYPE_I32 = 26,
	DTYPE_I64 = 27,
	DTYPE_F64 = 28,
	DTYPE_IQ1_M = 29,
	DTYPE_BF16 = 30,
	DTYPE_TQ1_0 = 34,
	DTYPE_TQ2_0 = 35,
	DTYPE_MXFP4 = 39,
	DTYPE_COUNT = 40, /* one past the largest id; not every id below is valid */
};

/* Elements per quantization block (QK). */
#define DTYPE_QK4_0 32
#define DTYPE_QK8_0 32
#define DTYPE_QK_K 256

/* Block sizes in bytes of the formats this module converts. */
#define DTYPE_Q4_0_BYTES 18  /* f16 d; u8 qs[16] */
#define DTYPE_Q8_0_BYTES 34  /* f16 d; i8 qs[32] */
#define DTYPE_Q4_K_BYTES 144 /* f16 d, dmin; u8 scales[12]; u8 qs[128] */
#define DTYPE_Q6_K_BYTES 210 /* u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d */

/* true when id names a type of the table (a type GGUF files may contain). */
bool dtype_valid(uint32_t id);

/* Upper-case GGML name ("F32", "Q4_K"...), or NULL for an invalid id. */
const char *dtype_name(uint32_t id);

/* Type for a name, case-insensitive ("q8_0", "F16"); -EINVAL when unknown. */
int dtype_from_name(const char *name, enum dtype *out);

/* Elements per block (1 for plain types); 0 for an invalid id. */
int64_t dtype_block_elems(uint32_t id);

/* Bytes per block; 0 for an invalid id. */
size_t dtype_block_bytes(uint32_t id);

/* Bytes of a row of n elements. -EINVAL when the type is invalid, n < 0 or n is
 * not a multiple of the block size; -EOVERFLOW when the size overflows. */
int dtype_row_size(uint32_t id, int64_t n, uint64_t *out);

/* true when dtype_dequant_row supports the type. */
bool dtype_can_dequant(uint32_t id);

/* true when dtype_quant_row supports the type. */
bool dtype_can_quant(uint32_t id);

/* Converts n elements (a whole number of blocks) stored as type id at src
 * (any alignment) to f32. @return 0, -EINVAL, -ENOTSUP. */
int dtype_dequant_row(uint32_t id, const void *src, float *dst, int64_t n);

/* Converts n f32 elements (a whole number of blocks) to type id at dst (any
 * alignment). Supports F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K (reference
 * quantizers without an importance matrix; the K-quants fit each sub-block's
 * scale, and Q4_K's min, before quantizing the scales to the stored bits).
 * @return 0, -EINVAL, -ENOTSUP. */
int dtype_quant_row(uint32_t id, const float *src, void *dst, int64_t n);

/* IEEE binary16 <-> f32, round-to-nearest-even, subnormals, inf and NaN kept
 * (a NaN stays a NaN, quieted). */
float dtype_f16_to_f32(uint16_t h);
uint16_t dtype_f32_to_f16(float f);

/* bfloat16 <-> f32, round-to-nearest-even; NaN stays NaN. */
float dtype_bf16_to_f32(uint16_t h);
uint16_t dtype_f32_to_bf16(float f);

#endif
