/* Element-wise and row operators of the CPU backend: RMSNorm, RoPE, SiLU-mul,
 * residual add, softmax. Activations are f32 row-major with row strides in
 * floats (ld*). Each op has an AVX2/FMA/F16C version and a portable scalar one,
 * chosen once at run time from the CPU's features (cpu_ops_use_simd()). Rows
 * are split over OpenMP threads when the work is large enough to pay for it.
 *
 * Callers check shapes: these functions do not fail. n_threads 0 = OpenMP
 * default.
 */
#ifndef INFERD_ENGINE_CPU_OPS_H
#define INFERD_ENGINE_CPU_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

/* true when the AVX2 kernels are in use. */
bool cpu_ops_use_simd(void);
/* Forces the scalar kernels (true) or restores the run-time choice (false); for tests. */
void cpu_ops_force_scalar(bool scalar);

/* y[r] = x[r] * w / sqrt(mean(x[r]^2) + eps); y may equal x. */
void cpu_rms_norm(const float *x, int64_t ldx, const float *w, float *y, int64_t ldy,
                  int64_t n_rows, int64_t n, float eps, int n_threads);

/* Rotates the first p->n_rot dims of each of n_heads heads (head_dim floats
 * each, contiguous in a row) by the angle of position pos[r]. */
void cpu_rope(float *x, int64_t ldx, int64_t n_rows, int n_heads, int head_dim,
              const int32_t *pos, const struct rope_params *p, int n_threads);

/* gate = silu(gate) * up, silu(g) = g / (1 + exp(-g)). */
void cpu_silu_mul(float *gate, int64_t ldg, const float *up, int64_t ldu, int64_t n_rows,
                  int64_t n, int n_threads);

/* y += x; ldx == 0 adds the same row x to every row of y. */
void cpu_add(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n_rows, int64_t n,
             int n_threads);

/* x[r] = softmax(x[r]). */
void cpu_softmax(float *x, int64_t ldx, int64_t n_rows, int64_t n, int n_threads);

/* Internal to engine/cpu (attention.c): single-row kernels. */
float cpu_dot_f32(const float *a, const float *b, int64_t n);
void cpu_axpy_f32(float *y, float a, const float *x, int64_t n); /* y += a*x */
void cpu_scale_f32(float *y, float a, int64_t n);                /* y *= a */
void cpu_f16_to_f32(const uint16_t *x, float *y, int64_t n);    /* F16C when available */

#endif
