/* Matrix products of the CPU backend: activations (f32) times weights (any supported dtype).
 *
 *   Y[t][r] = sum_c X[t][c] * W[r][c]      t < n_tokens, r < rows, c < cols
 *
 * W is stored the GGUF way: `rows` rows of `cols` elements each, a row being ne[0] = cols
 * contiguous elements (for quantized types: cols / block_elems blocks), row stride
 * `row_bytes` (= dtype_row_size(type, cols) for a tensor used in place from the file).
 *
 * Weight types: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K. Quantized weights multiply against the
 * activations quantized on the fly to the matching 8-bit block format (Q8_0 for Q8_0/Q4_0,
 * Q8_K for the K-quants) with integer dot products, as the GGUF reference runtime does.
 * F32 (and F16/BF16 at larger n_tokens) may go through oneDNN; n_tokens == 1 (decode) goes
 * through own bandwidth-bound matrix-vector kernels.
 *
 * Threads: the work is split over the calling thread's OpenMP team (omp_get_max_threads()
 * unless n_threads > 0). Two threads may call at the same time, each with its own team.
 *
 * Errors: 0, -EINVAL (shapes: cols not a whole number of blocks, NULL pointers), -ENOTSUP
 * (weight type without a kernel), -ENOMEM (scratch). Never aborts.
 */
#ifndef INFERD_ENGINE_CPU_MATMUL_H
#define INFERD_ENGINE_CPU_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

struct cpu_weight {
	enum dtype type;
	const void *data;     /* rows * row_bytes bytes, used in place (mmap) */
	int64_t rows;         /* output features */
	int64_t cols;         /* input features (ne[0]) */
	size_t row_bytes;     /* stride between rows in bytes */
};

/* Y (n_tokens x rows, row stride ldy floats) = X (n_tokens x cols, row stride ldx floats) x W^T.
 * n_threads: 0 = the calling thread's OpenMP default. */
int cpu_matmul(const struct cpu_weight *w, const float *x, int64_t ldx, int64_t n_tokens,
               float *y, int64_t ldy, int n_threads);

/* Fills a cpu_weight for a tensor of `type` with ne = {cols, rows} at data.
 * @return 0, or -EINVAL when cols is not a whole number of blocks of the type. */
int cpu_weight_init(struct cpu_weight *w, enum dtype type, const void *data, int64_t cols,
                    int64_t rows);

#endif
