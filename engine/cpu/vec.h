/* Private to engine/cpu/matmul*.c, quant*.c, vec*.c: the pieces of cpu_matmul that the
 * kernel files share (not installed, not for other components). */
#ifndef INFERD_ENGINE_CPU_VEC_H
#define INFERD_ENGINE_CPU_VEC_H

#include <stdbool.h>
#include <stdint.h>

#include "matmul.h"

/* ---- CPU features ------------------------------------------------------------- */

/* true when the CPU and the OS support AVX2, FMA and F16C (checked once). Setting the
 * environment variable INFERD_CPU_NOSIMD=1 before the first call forces the portable
 * paths (tests use it to cover them). */
bool vec_have_avx2(void);

/* ---- row kernels ---------------------------------------------------------------- */

/* One kernel computes Y[t][r] for rows [r0, r1) and tokens [0, n_tokens):
 *   xa:        activations; f32 rows for F32/F16/BF16 weights, quantized rows (struct
 *              q8_0a / q8_k blocks, see quant.h) for the quantized types
 *   xa_stride: bytes between the activation rows of consecutive tokens
 * The caller has checked the shapes. */
typedef void (*vec_rows_fn)(const struct cpu_weight *w, const void *xa, size_t xa_stride,
                            int64_t n_tokens, float *y, int64_t ldy, int64_t r0, int64_t r1);

/* AVX2 kernels (call only when vec_have_avx2()); NULL for a type without one. */
vec_rows_fn vec_rows_avx2(enum dtype type);
vec_rows_fn vec_rows_avx2_quant(enum dtype type); /* the quantized types (vec_q_avx2.c) */

/* Converts rows [r0, r0+n) of an F32/F16/BF16 (or any dequantizable) weight to f32 at dst
 * (n x cols, packed); AVX2 when the CPU has it. */
void vec_rows_to_f32(const struct cpu_weight *w, int64_t r0, int64_t n, float *dst);

/* oneDNN paths (matmul_dnnl.c): F32 weights through dnnl_sgemm on nt threads; F16/BF16
 * through per-thread panels converted to f32. 0 or a negative errno. */
int cpu_matmul_sgemm(const struct cpu_weight *w, const float *x, int64_t ldx,
                     int64_t n_tokens, float *y, int64_t ldy, int nt);
int cpu_matmul_half_gemm(const struct cpu_weight *w, const float *x, int64_t ldx,
                         int64_t n_tokens, float *y, int64_t ldy, int nt);

/* Scalar kernels of the quantized types over quantized activations (any CPU). */
void vec_rows_quant_scalar(const struct cpu_weight *w, const void *xa, size_t xa_stride,
                           int64_t n_tokens, float *y, int64_t ldy, int64_t r0, int64_t r1);

bool cpu_matmul_type_supported(enum dtype type);

/* Argument checks of cpu_matmul: 0, -EINVAL or -ENOTSUP. */
int cpu_matmul_check(const struct cpu_weight *w, const float *x, int64_t ldx, int64_t n_tokens,
                     const float *y, int64_t ldy);

/* Scalar path over rows [r0, r1); wrow: scratch of w->cols floats. */
int cpu_matmul_rows_scalar(const struct cpu_weight *w, const float *x, int64_t ldx,
                           int64_t n_tokens, float *y, int64_t ldy, int64_t r0, int64_t r1,
                           float *wrow);

/* Whole product through the scalar path on nt threads. */
int cpu_matmul_scalar(const struct cpu_weight *w, const float *x, int64_t ldx,
                      int64_t n_tokens, float *y, int64_t ldy, int nt);

#endif
