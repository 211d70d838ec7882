/* cpu_matmul: argument checks, dispatch to the kernels by weight type and shape,
 * and the portable scalar path (dequantize a weight row, dot it with every token).
 * See matmul.h for the contract. */
#include "matmul.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "quant.h"
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

/* n_tokens from which F32 weights go through dnnl_sgemm and F16/BF16 weights through
 * converted panels and dnnl_sgemm; below, the own kernels (measured by bench_matmul).
 * F32 with n_tokens == 1 also goes to oneDNN: on the development machines its M=1 product
 * streamed 17-44 GB/s against 16-37 GB/s for the own row kernel (bench_matmul, three quiet
 * runs, 1 and 2 threads), so DESIGN.md's 13 GB/s for it did not reproduce. */
enum { SGEMM_MIN_TOKENS = 16, HALF_GEMM_MIN_TOKENS = 64 };

/* Below this many multiply-adds one thread does the product: a parallel region costs a
 * few microseconds. */
#define SERIAL_MACS (1 << 16)

/* Rows are handed out in chunks of about 1/16 of a thread's share (a multiple of 4 rows,
 * the float tiles' height), dynamically: a thread slowed by something else on its core
 * does not hold up the call (measured: static halves lost ~15% of decode bandwidth on 2
 * threads). */
static int64_t chunk_rows(const struct cpu_weight *w, int nt)
{
	int64_t c = (w->rows / ((int64_t)nt * 16) + 3) & ~(int64_t)3;
	return c < 4 ? 4 : c;
}

static void run_rows(vec_rows_fn fn, const struct cpu_weight *w, const void *xa, size_t xs,
                     int64_t n_tokens, float *y, int64_t ldy, int nt)
{
	if (nt <= 1) {
		fn(w, xa, xs, n_tokens, y, ldy, 0, w->rows);
		return;
	}
	const int64_t ch = chunk_rows(w, nt), n_chunks = (w->rows + ch - 1) / ch;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
	for (int64_t i = 0; i < n_chunks; i++) {
		int64_t r0 = ch * i, r1 = r0 + ch < w->rows ? r0 + ch : w->rows;
		fn(w, xa, xs, n_tokens, y, ldy, r0, r1);
	}
}

/* Quantized weights: activations to Q8_0 / Q8_K blocks once per call (the scratch is one
 * allocation per call, n_tokens x cols/32 x 40 bytes at most), then the row kernels. */
static int matmul_quant(const struct cpu_weight *w, const float *x, int64_t ldx,
                        int64_t n_tokens, float *y, int64_t ldy, int nt)
{
	enum dtype act;
	int64_t be;
	size_t bb;
	if (!quant_act_format(w->type, &act, &be, &bb))
		return -ENOTSUP;
	const size_t xs = (size_t)(w->cols / be) * bb; /* bytes per token */
	uint8_t *xq = malloc(xs * (size_t)n_tokens);
	if (xq == NULL)
		return -ENOMEM;
	const bool simd = vec_have_avx2();
	vec_rows_fn fn = simd ? vec_rows_avx2(w->type) : vec_rows_quant_scalar;
	const int64_t ch = chunk_rows(w, nt), n_chunks = (w->rows + ch - 1) / ch;
#pragma omp parallel num_threads(nt)
	{
#pragma omp for schedule(static)
		for (int64_t t = 0; t < n_tokens; t++) {
			if (act == DTYPE_Q8_0)
				quant_row_q8_0a(x + t * ldx, (struct q8_0a *)(void *)(xq + t * xs), w->cols);
			else
				quant_row_q8_k(x + t * ldx, (struct q8_k *)(void *)(xq + t * xs), w->cols);
		}
#pragma omp for schedule(dynamic, 1)
		for (int64_t i = 0; i < n_chunks; i++) {
			int64_t r0 = ch * i, r1 = r0 + ch < w->rows ? r0 + ch : w->rows;
			fn(w, xq, xs, n_tokens, y, ldy, r0, r1);
		}
	}
	free(xq);
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
	if ((double)n_tokens * (double)w->rows * (double)w->cols < (double)SERIAL_MACS)
		nt = 1;
	const bool simd = vec_have_avx2();
	switch (w->type) {
	case DTYPE_F32:
		if ((n_tokens >= SGEMM_MIN_TOKENS || n_tokens == 1 || !simd) &&
		    w->row_bytes % sizeof(float) == 0)
			return cpu_matmul_sgemm(w, x, ldx, n_tokens, y, ldy, nt);
		break;
	case DTYPE_F16:
	case DTYPE_BF16:
		if (n_tokens >= HALF_GEMM_MIN_TOKENS)
			return cpu_matmul_half_gemm(w, x, ldx, n_tokens, y, ldy, nt);
		break;
	default:
		return matmul_quant(w, x, ldx, n_tokens, y, ldy, nt);
	}
	if (!simd)
		return cpu_matmul_scalar(w, x, ldx, n_tokens, y, ldy, nt);
	run_rows(vec_rows_avx2(w->type), w, x, (size_t)ldx * sizeof(float), n_tokens, y, ldy, nt);
	return 0;
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
