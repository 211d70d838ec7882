/* Private to engine/cpu/matmul*.c, quant*.c, vec*.c: the pieces of cpu_matmul that the
 * kernel files share (not installed, not for other components). */
#ifndef INFERD_ENGINE_CPU_VEC_H
#define INFERD_ENGINE_CPU_VEC_H

#include <stdbool.h>
#include <stdint.h>

#include "matmul.h"

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
