/* cpu_matmul: argument checks, dispatch to the kernels by weight type and shape,
 * and the portable scalar path (dequantize a weight row, dot it with every token).
 * See matmul.h for the contract. */
#include "matmul.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "vec.h"

/* ---- weights ---------------------------------------------------------------- */

bool cpu_matmul_type_supported(enum dtype type)
{
	switch (type) {
	case DTYPE_F32: case DTYPE_F16: case DTYPE_BF16:
	case DTYPE_Q8_0: case DTYPE_Q4_0: case DTYPE_Q4_K: case DTYPE_Q6_K:
		return true;
	default:
		return false;
	}
}

int cpu_weight_init(struct cpu_weight *w, enum dtype type, const void *data, int64_t cols,
                    int64_t rows)
{
	uint64_t rb;
	if (w == NULL || data == NULL || cols <= 0 || rows <= 0)
		return -EINVAL;
	if (!dtype_valid((uint32_t)type))
		return -EINVAL;
	int rc = dtype_row_size((uint32_t)type, cols, &rb);
	if (rc < 0)
		return rc == -EOVERFLOW ? -EINVAL : rc;
	if (rb > SIZE_MAX / (uint64_t)rows)
		return -EINVAL;
	w->type = type;
	w->data = data;
	w->rows = rows;
	w->cols = cols;
	w->row_bytes = (size_t)rb;
	return 0;
}

/* ---- scalar path ------------------------------------------------------------ */

/* Rows [r0, r1) for every token: dequantize one weight row into wrow (cols floats),
 * then one dot product per token. Portable and exact up to f32 rounding of the sums
 * (accumulated in double so that the reference tests can be tight). */
int cpu_matmul_rows_scalar(const struct cpu_weight *w, const float *x, int64_t ldx,
                           int64_t n_tokens, float *y, int64_t ldy, int64_t r0, int64_t r1,
                           float *wrow)
{
	const uint8_t *base = w->data;
	for (int64_t r = r0; r < r1; r++) {
		int rc = dtype_dequant_row((uint32_t)w->type, base + (size_t)r * w->row_bytes, wrow,
		                           w->cols);
		if (rc < 0)
			return rc;
		for (int64_t t = 0; t < n_tokens; t++) {
			const float *xt = x + t * ldx;
			double s = 0.0;
			for (int64_t c = 0; c < w->cols; c++)
				s += (double)xt[c] * (double)wrow[c];
			y[t * ldy + r] = (float)s;
		}
	}
	return 0;
}

/* ---- entry point ------------------------------------------------------------ */

int cpu_matmul_check(const struct cpu_weight *w, const float *x, int64_t ldx, int64_t n_tokens,
                     const float *y, int64_t ldy)
{
	uint64_t rb;
	if (w == NULL || x == NULL || y == NULL || w->data == NULL)
		return -EINVAL;
	if (n_tokens < 0 || w->rows <= 0 || w->cols <= 0)
		return -EINVAL;
	if (!dtype_valid((uint32_t)w->type))
		return -EINVAL;
	if (dtype_row_size((uint32_t)w->type, w->cols, &rb) < 0 || w->row_bytes < rb)
		return -EINVAL;
	if (n_tokens > 1 && (ldx < w->cols || ldy < w->rows))
		return -EINVAL;
	if (n_tokens == 1 && (ldx < 0 || ldy < 0))
		return -EINVAL;
	if (!cpu_matmul_type_supported(w->type))
		return -ENOTSUP;
	return 0;
}

int cpu_matmul(const struct cpu_weight *w, const float *x, int64_t ldx, int64_t n_tokens,
               float *y, int64_t ldy, int n_threads)
{
	int rc = cpu_matmul_check(w, x, ldx, n_tokens, y, ldy);
	if (rc < 0 || n_tokens == 0)
		return rc;
	int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
	if (nt < 1)
		nt = 1;
	if ((int64_t)nt > w->rows)
		nt = (int)w->rows;
	return cpu_matmul_scalar(w, x, ldx, n_tokens, y, ldy, nt);
}

int cpu_matmul_scalar(const struct cpu_weight *w, const float *x, int64_t ldx,
                      int64_t n_tokens, float *y, int64_t ldy, int nt)
{
	int err = 0;
#pragma omp parallel num_threads(nt)
	{
		float *wrow = malloc((size_t)w->cols * sizeof(float));
		int nth = omp_get_num_threads(), ith = omp_get_thread_num();
		int64_t per = (w->rows + nth - 1) / nth;
		int64_t r0 = per * ith, r1 = r0 + per < w->rows ? r0 + per : w->rows;
		int my = 0;
		if (wrow == NULL)
			my = -ENOMEM;
		else if (r0 < r1)
			my = cpu_matmul_rows_scalar(w, x, ldx, n_tokens, y, ldy, r0, r1, wrow);
		free(wrow);
		if (my < 0) {
#pragma omp critical(cpu_matmul_err)
			err = my;
		}
	}
	return err;
}
