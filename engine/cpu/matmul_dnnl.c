/* The oneDNN paths of cpu_matmul (larger n_tokens): dnnl_sgemm on f32 weights in place,
 * and for F16/BF16 weights panels of rows converted to f32 in a per-thread buffer and
 * multiplied by dnnl_sgemm on that thread (oneDNN 2.6 has no f16/bf16 matmul for AVX2-only
 * CPUs). The conversion costs O(rows x cols) against O(n_tokens x rows x cols) for the
 * product, so it vanishes at prefill sizes. */
#include <errno.h>
#include <stdlib.h>

#include <dnnl.h>
#include <omp.h>

#include "vec.h"

/* Rows per converted panel: 128 rows x 1024 cols x 4 bytes = 512 KiB, about one L2. */
enum { PANEL_BYTES = 512 * 1024, PANEL_MIN_ROWS = 16 };

static int status_errno(dnnl_status_t st)
{
	switch (st) {
	case dnnl_success: return 0;
	case dnnl_out_of_memory: return -ENOMEM;
	case dnnl_invalid_arguments: return -EINVAL;
	default: return -ENOTSUP;
	}
}

/* Rows per thread at least this many for the split below (else one oneDNN call). */
enum { SPLIT_MIN_ROWS = 64 };

int cpu_matmul_sgemm(const struct cpu_weight *w, const float *x, int64_t ldx,
                     int64_t n_tokens, float *y, int64_t ldy, int nt)
{
	/* Y (n x rows) = X (n x cols) . W^T, W row-major rows x cols with stride row_bytes/4.
	 * With several threads, each thread multiplies its own range of rows by a
	 * single-threaded dnnl_sgemm (oneDNN runs on one thread inside a parallel region):
	 * measured faster than oneDNN's own split on 2 cores at prefill sizes (bench_matmul).
	 * The matrix-vector product (n_tokens == 1) keeps oneDNN's own threading. */
	const dnnl_dim_t ldb = (dnnl_dim_t)(w->row_bytes / sizeof(float));
	const float *wf = w->data;
	if (nt > 1 && n_tokens > 1 && w->rows >= (int64_t)nt * SPLIT_MIN_ROWS) {
		int64_t per = ((w->rows + nt - 1) / nt + 15) & ~(int64_t)15;
		int err = 0;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
		for (int i = 0; i < nt; i++) {
			int64_t r0 = per * i, r1 = r0 + per < w->rows ? r0 + per : w->rows;
			if (r0 >= r1)
				continue;
			int my = status_errno(dnnl_sgemm('N', 'T', n_tokens, r1 - r0, w->cols, 1.0f, x,
			                                 ldx, wf + r0 * ldb, ldb, 0.0f, y + r0, ldy));
			if (my < 0) {
#pragma omp critical(cpu_matmul_err)
				err = my;
			}
		}
		return err;
	}
	int prev = omp_get_max_threads();
	omp_set_num_threads(nt);
	dnnl_status_t st = dnnl_sgemm('N', 'T', n_tokens, w->rows, w->cols, 1.0f, x, ldx, wf, ldb,
	                              0.0f, y, ldy);
	omp_set_num_threads(prev);
	return status_errno(st);
}

int cpu_matmul_half_gemm(const struct cpu_weight *w, const float *x, int64_t ldx,
                         int64_t n_tokens, float *y, int64_t ldy, int nt)
{
	int64_t pr = PANEL_BYTES / ((int64_t)sizeof(float) * w->cols);
	if (pr < PANEL_MIN_ROWS)
		pr = PANEL_MIN_ROWS;
	if (pr > w->rows)
		pr = w->rows;
	const int64_t n_panels = (w->rows + pr - 1) / pr;
	int err = 0;
#pragma omp parallel num_threads(nt)
	{
		float *panel = malloc((size_t)pr * (size_t)w->cols * sizeof(float));
		int my = panel == NULL ? -ENOMEM : 0;
#pragma omp for schedule(static)
		for (int64_t p = 0; p < n_panels; p++) {
			if (my < 0)
				continue;
			int64_t r0 = p * pr, n = w->rows - r0 < pr ? w->rows - r0 : pr;
			vec_rows_to_f32(w, r0, n, panel);
			/* inside the parallel region oneDNN runs on this thread alone */
			my = status_errno(dnnl_sgemm('N', 'T', n_tokens, n, w->cols, 1.0f, x, ldx,
			                             panel, w->cols, 0.0f, y + r0, ldy));
		}
		free(panel);
		if (my < 0) {
#pragma omp critical(cpu_matmul_err)
			err = my;
		}
	}
	return err;
}
