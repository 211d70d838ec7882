/* cpu_matmul against a double-precision reference, for every weight type.
 *
 * Reference: the weights dequantized with dtype_dequant_row() (exact values of the stored
 * weights), times the *unquantized* f32 activations, summed in double.
 *
 * Tolerance, per output y[t][r]:
 *   float weights (F32/F16/BF16): f32 summation only, 1e-5 * sum_c |x_c w_c| + 1e-30;
 *   quantized weights: the activations are quantized per block b with d_b = max_b|x| / 127
 *   and round-to-nearest, so each x_c moves by at most d_b / 2; the product moves by at
 *   most E = sum_c |w_c| * d_b(c) / 2. Tolerance E + 1e-5 * sum_c |x_c w_c| (the f32 rounding
 *   of the block scales and sums). This bound is strict, not statistical.
 * The quantized path is also checked against quant_dot_scalar() on the same quantized
 * activations (same integer sums; only the order of the f32 additions may differ), at
 * 1e-6 relative to sum_c |x_c w_c|.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern_util.h"
#include "matmul.h"
#include "quant.h"
#include "vec.h"

static const enum dtype all_types[] = {
	DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_Q8_0, DTYPE_Q4_0, DTYPE_Q4_K, DTYPE_Q6_K,
};
static const int64_t token_counts[] = { 1, 2, 3, 7, 33, 64 };
static const int64_t row_counts[] = { 1, 7, 37 };

static bool is_quant(enum dtype t)
{
	return t == DTYPE_Q8_0 || t == DTYPE_Q4_0 || t == DTYPE_Q4_K || t == DTYPE_Q6_K;
}

/* Column counts to try: odd ones for the plain types (tails), whole blocks otherwise. */
static int64_t cols_for(enum dtype t, int i)
{
	if (t == DTYPE_Q4_K || t == DTYPE_Q6_K)
		return i == 0 ? 256 : 768;
	if (is_quant(t))
		return i == 0 ? 96 : 800;
	return i == 0 ? 67 : 776;
}

struct wbuf {
	struct cpu_weight w;
	uint8_t *data;
	float *deq; /* rows x cols, dequantized */
};

static void wbuf_make(struct wbuf *b, enum dtype t, int64_t rows, int64_t cols, uint64_t seed)
{
	uint64_t rb;
	cr_assert_eq(dtype_row_size(t, cols, &rb), 0);
	b->data = malloc(rb * (size_t)rows + 1);
	b->deq = malloc(sizeof(float) * (size_t)(rows * cols));
	cr_assert(b->data != NULL && b->deq != NULL);
	/* +1: an odd address, weights are used in place at any alignment */
	ku_fill_weights(t, b->data + 1, rows, cols, rb, seed);
	cr_assert_eq(cpu_weight_init(&b->w, t, b->data + 1, cols, rows), 0);
	cr_assert_eq(b->w.row_bytes, (size_t)rb);
	for (int64_t r = 0; r < rows; r++)
		cr_assert_eq(dtype_dequant_row(t, b->data + 1 + r * rb, b->deq + r * cols, cols), 0);
}

static void wbuf_free(struct wbuf *b)
{
	free(b->data);
	free(b->deq);
}

/* Runs cpu_matmul with padded strides and checks every output against the reference. */
static void check_case(enum dtype t, int64_t rows, int64_t cols, int64_t n, int n_threads)
{
	struct wbuf b;
	wbuf_make(&b, t, rows, cols, 1000 + (uint64_t)(rows * 131 + cols * 7 + n));
	const int64_t ldx = cols + 3, ldy = rows + 2;
	const int64_t blk = t == DTYPE_Q4_K || t == DTYPE_Q6_K ? 256 : 32;
	float *x = malloc(sizeof(float) * (size_t)(n * ldx));
	float *y = malloc(sizeof(float) * (size_t)(n * ldy));
	cr_assert(x != NULL && y != NULL);
	ku_fill_acts(x, n, cols, ldx, 7 + (uint64_t)n);
	for (int64_t i = 0; i < n * ldy; i++)
		y[i] = -12345.0f;
	int rc = cpu_matmul(&b.w, x, ldx, n, y, ldy, n_threads);
	cr_assert_eq(rc, 0, "%s rows %lld cols %lld n %lld: rc %d", dtype_name(t),
	             (long long)rows, (long long)cols, (long long)n, rc);
	for (int64_t k = 0; k < n; k++) {
		const float *xt = x + k * ldx;
		for (int64_t r = 0; r < rows; r++) {
			const float *wr = b.deq + r * cols;
			double ref = 0.0, mag = 0.0, qerr = 0.0;
			for (int64_t c0 = 0; c0 < cols; c0 += blk) {
				double amax = 0.0;
				for (int64_t c = c0; c < c0 + blk && c < cols; c++)
					amax = fmax(amax, fabs(xt[c]));
				for (int64_t c = c0; c < c0 + blk && c < cols; c++) {
					ref += (double)xt[c] * wr[c];
					mag += fabs((double)xt[c] * wr[c]);
					qerr += fabs(wr[c]) * amax / 127.0 / 2.0;
				}
			}
			double tol = 1e-5 * mag + 1e-30 + (is_quant(t) ? qerr : 0.0);
			double got = y[k * ldy + r];
			cr_assert(fabs(got - ref) <= tol,
			          "%s rows %lld cols %lld n %lld: y[%lld][%lld] = %.9g, reference %.9g, tol %.3g",
			          dtype_name(t), (long long)rows, (long long)cols, (long long)n,
			          (long long)k, (long long)r, got, ref, tol);
		}
		for (int64_t r = rows; r < ldy; r++)
			cr_assert_eq(y[k * ldy + r], -12345.0f, "padding of y written");
	}
	free(x);
	free(y);
	wbuf_free(&b);
}

static void check_type(enum dtype t)
{
	for (size_t ni = 0; ni < sizeof(token_counts) / sizeof(token_counts[0]); ni++)
		for (size_t ri = 0; ri < sizeof(row_counts) / sizeof(row_counts[0]); ri++)
			for (int ci = 0; ci < 2; ci++)
				check_case(t, row_counts[ri], cols_for(t, ci), token_counts[ni], 0);
}

Test(kernels_matmul, f32_matches_reference) { check_type(DTYPE_F32); }
Test(kernels_matmul, f16_matches_reference) { check_type(DTYPE_F16); }
Test(kernels_matmul, bf16_matches_reference) { check_type(DTYPE_BF16); }
Test(kernels_matmul, q8_0_matches_reference) { check_type(DTYPE_Q8_0); }
Test(kernels_matmul, q4_0_matches_reference) { check_type(DTYPE_Q4_0); }
Test(kernels_matmul, q4_k_matches_reference) { check_type(DTYPE_Q4_K); }
Test(kernels_matmul, q6_k_matches_reference) { check_type(DTYPE_Q6_K); }

/* Enough rows for the paths that split rows over threads (f32 oneDNN per-thread ranges,
 * f16/bf16 panels, quantized row ranges), on 2 and 3 threads. */
Test(kernels_matmul, row_split_over_threads_matches_reference)
{
	for (size_t i = 0; i < sizeof(all_types) / sizeof(all_types[0]); i++) {
		check_case(all_types[i], 301, cols_for(all_types[i], 0) * 2, 64, 2);
		check_case(all_types[i], 259, cols_for(all_types[i], 1), 17, 3);
	}
}

/* F32 rows at a stride that is not a whole number of floats (oneDNN cannot take it): the
 * own kernels for every n_tokens. */
Test(kernels_matmul, f32_odd_row_stride)
{
	const int64_t rows = 37, cols = 45, n_max = 20;
	const size_t rb = (size_t)cols * 4 + 2;
	uint8_t *wd = malloc(rb * rows);
	float x[20 * 45], y[20 * 37];
	cr_assert(wd != NULL);
	ku_fill_weights(DTYPE_F32, wd, rows, cols, rb, 8);
	ku_fill_acts(x, n_max, cols, cols, 9);
	struct cpu_weight w = { DTYPE_F32, wd, rows, cols, rb };
	for (int64_t n = 1; n <= n_max; n += 3) {
		cr_assert_eq(cpu_matmul(&w, x, cols, n, y, rows, 0), 0);
		for (int64_t k = 0; k < n; k++)
			for (int64_t r = 0; r < rows; r++) {
				double ref = 0.0, mag = 0.0;
				for (int64_t c = 0; c < cols; c++) {
					float wv;
					memcpy(&wv, wd + r * rb + 4 * c, 4);
					ref += (double)x[k * cols + c] * wv;
					mag += fabs((double)x[k * cols + c] * wv);
				}
				cr_assert(fabs(y[k * rows + r] - ref) <= 1e-5 * mag, "n %lld y[%lld][%lld]",
				          (long long)n, (long long)k, (long long)r);
			}
	}
	free(wd);
}

/* The portable path (what a CPU without AVX2 runs): forced by the environment before the
 * first call in this test's process (criterion runs each test in its own process). */
Test(kernels_matmul, scalar_path_matches_reference)
{
	setenv("INFERD_CPU_NOSIMD", "1", 1);
	cr_assert(!vec_have_avx2());
	for (size_t i = 0; i < sizeof(all_types) / sizeof(all_types[0]); i++)
		for (size_t ni = 0; ni < 3; ni++)
			check_case(all_types[i], 7, cols_for(all_types[i], 1), token_counts[ni * 2 + 1], 0);
}

/* ---- quantized path: exact integer arithmetic ------------------------------------ */

/* The AVX2 activation quantizers give the scalar quantizers' bytes; cpu_matmul gives
 * quant_dot_scalar() of the same quantized activations. */
static void check_exact(enum dtype t, int64_t rows, int64_t cols, int64_t n, int n_threads)
{
	struct wbuf b;
	wbuf_make(&b, t, rows, cols, 77 + (uint64_t)rows);
	enum dtype act;
	int64_t be;
	size_t bb;
	cr_assert(quant_act_format(t, &act, &be, &bb));
	const size_t xs = (size_t)(cols / be) * bb;
	float *x = malloc(sizeof(float) * (size_t)(n * cols));
	float *y = malloc(sizeof(float) * (size_t)(n * rows));
	uint8_t *q1 = malloc(xs), *q2 = malloc(xs);
	cr_assert(x != NULL && y != NULL && q1 != NULL && q2 != NULL);
	ku_fill_acts(x, n, cols, cols, 99);
	memset(x, 0, 32 * sizeof(float)); /* an all-zero block: scale 0 */
	x[40] = 1e-30f;                   /* a block with a tiny scale */
	cr_assert_eq(cpu_matmul(&b.w, x, cols, n, y, rows, n_threads), 0);
	for (int64_t k = 0; k < n; k++) {
		memset(q1, 0, xs);
		memset(q2, 0, xs);
		if (act == DTYPE_Q8_0) {
			quant_row_q8_0a(x + k * cols, (struct q8_0a *)(void *)q1, cols);
			quant_row_q8_0a_scalar(x + k * cols, (struct q8_0a *)(void *)q2, cols);
		} else {
			quant_row_q8_k(x + k * cols, (struct q8_k *)(void *)q1, cols);
			quant_row_q8_k_scalar(x + k * cols, (struct q8_k *)(void *)q2, cols);
		}
		cr_assert(memcmp(q1, q2, xs) == 0, "%s: SIMD and scalar quantization differ",
		          dtype_name(act));
		for (int64_t r = 0; r < rows; r++) {
			const uint8_t *wr = (const uint8_t *)b.w.data + r * b.w.row_bytes;
			double ref = quant_dot_scalar(t, wr, q2, cols), mag = 0.0;
			for (int64_t c = 0; c < cols; c++)
				mag += fabs((double)x[k * cols + c] * b.deq[r * cols + c]);
			double got = y[k * rows + r];
			cr_assert(fabs(got - ref) <= 1e-6 * mag + 1e-30,
			          "%s n %lld: y[%lld][%lld] = %.9g, integer reference %.9g",
			          dtype_name(t), (long long)n, (long long)k, (long long)r, got, ref);
		}
	}
	free(x);
	free(y);
	free(q1);
	free(q2);
	wbuf_free(&b);
}

Test(kernels_matmul, quantized_path_is_exact_integer_arithmetic)
{
	static const enum dtype qt[] = { DTYPE_Q8_0, DTYPE_Q4_0, DTYPE_Q4_K, DTYPE_Q6_K };
	for (size_t i = 0; i < 4; i++)
		for (size_t ni = 0; ni < sizeof(token_counts) / sizeof(token_counts[0]); ni++)
			check_exact(qt[i], 37, qt[i] == DTYPE_Q4_K || qt[i] == DTYPE_Q6_K ? 512 : 256,
			            token_counts[ni], 0);
}

Test(kernels_matmul, scalar_quantized_path_is_exact_integer_arithmetic)
{
	setenv("INFERD_CPU_NOSIMD", "1", 1);
	check_exact(DTYPE_Q4_0, 5, 64, 3, 1);
	check_exact(DTYPE_Q6_K, 5, 256, 2, 1);
}

/* Activations of +-127 * d in every position: the largest integer sums the kernels meet
 * (saturation of maddubs would show here). */
Test(kernels_matmul, extreme_quants_do_not_saturate)
{
	static const enum dtype qt[] = { DTYPE_Q8_0, DTYPE_Q4_0, DTYPE_Q4_K, DTYPE_Q6_K };
	for (size_t i = 0; i < 4; i++) {
		const int64_t cols = 256, rows = 3;
		uint64_t rb;
		cr_assert_eq(dtype_row_size(qt[i], cols, &rb), 0);
		uint8_t *w = malloc(rb * rows);
		float *deq = malloc(sizeof(float) * cols * rows), x[256], y[3];
		cr_assert(w != NULL && deq != NULL);
		memset(w, 0xff, rb * rows); /* all quants at the top of their range */
		for (int64_t r = 0; r < rows; r++) {
			uint8_t *row = w + r * rb;
			if (qt[i] == DTYPE_Q8_0)
				for (int b = 0; b < 8; b++) {
					ku_put16(row + 34 * b, dtype_f32_to_f16(0.01f));
					memset(row + 34 * b + 2, r == 0 ? 0x80 : 0x81, 32); /* -128, -127 */
				}
			else if (qt[i] == DTYPE_Q4_0)
				for (int b = 0; b < 8; b++)
					ku_put16(row + 18 * b, dtype_f32_to_f16(0.01f));
			else if (qt[i] == DTYPE_Q4_K) {
				ku_put16(row, dtype_f32_to_f16(0.01f));
				ku_put16(row + 2, dtype_f32_to_f16(0.001f));
			} else {
				memset(row + 192, r == 0 ? 0x80 : 0x7f, 16); /* scales -128 / 127 */
				ku_put16(row + 208, dtype_f32_to_f16(0.001f));
			}
			cr_assert_eq(dtype_dequant_row(qt[i], row, deq + r * cols, cols), 0);
		}
		for (int c = 0; c < 256; c++)
			x[c] = (c & 1) ? -1.0f : 1.0f;
		if (qt[i] != DTYPE_Q8_0)
			for (int c = 0; c < 256; c++)
				x[c] = 1.0f;
		struct cpu_weight cw;
		cr_assert_eq(cpu_weight_init(&cw, qt[i], w, cols, rows), 0);
		cr_assert_eq(cpu_matmul(&cw, x, cols, 1, y, rows, 1), 0);
		for (int64_t r = 0; r < rows; r++) {
			double ref = 0.0, mag = 0.0;
			for (int c = 0; c < cols; c++) {
				ref += (double)x[c] * deq[r * cols + c];
				mag += fabs((double)x[c] * deq[r * cols + c]);
			}
			cr_assert(fabs(y[r] - ref) <= 1e-5 * mag, "%s row %lld: %.9g vs %.9g",
			          dtype_name(qt[i]), (long long)r, y[r], ref);
		}
		free(w);
		free(deq);
	}
}

/* ---- shapes and errors ---------------------------------------------------------- */

Test(kernels_matmul, bad_shapes_are_einval)
{
	static float buf[4096];
	struct cpu_weight w;
	cr_assert_eq(cpu_weight_init(&w, DTYPE_Q4_0, buf, 33, 4), -EINVAL);
	cr_assert_eq(cpu_weight_init(&w, DTYPE_Q4_K, buf, 128, 4), -EINVAL);
	cr_assert_eq(cpu_weight_init(&w, DTYPE_F32, buf, 0, 4), -EINVAL);
	cr_assert_eq(cpu_weight_init(&w, DTYPE_F32, buf, 8, -1), -EINVAL);
	cr_assert_eq(cpu_weight_init(&w, DTYPE_F32, NULL, 8, 4), -EINVAL);
	cr_assert_eq(cpu_weight_init(&w, (enum dtype)4, buf, 32, 4), -EINVAL);
	cr_assert_eq(cpu_weight_init(NULL, DTYPE_F32, buf, 8, 4), -EINVAL);
	cr_assert_eq(cpu_weight_init(&w, DTYPE_F32, buf, 16, 8), 0);
	float x[64] = { 0 }, y[64];
	cr_assert_eq(cpu_matmul(NULL, x, 16, 1, y, 8, 0), -EINVAL);
	cr_assert_eq(cpu_matmul(&w, NULL, 16, 1, y, 8, 0), -EINVAL);
	cr_assert_eq(cpu_matmul(&w, x, 16, 1, NULL, 8, 0), -EINVAL);
	cr_assert_eq(cpu_matmul(&w, x, 16, -1, y, 8, 0), -EINVAL);
	cr_assert_eq(cpu_matmul(&w, x, 15, 2, y, 8, 0), -EINVAL);  /* ldx < cols */
	cr_assert_eq(cpu_matmul(&w, x, 16, 2, y, 7, 0), -EINVAL);  /* ldy < rows */
	cr_assert_eq(cpu_matmul(&w, x, 16, 0, y, 8, 0), 0);        /* nothing to do */
	struct cpu_weight bad = w;
	bad.row_bytes = 60; /* shorter than a row */
	cr_assert_eq(cpu_matmul(&bad, x, 16, 1, y, 8, 0), -EINVAL);
	bad = w;
	bad.cols = 12;
	bad.type = DTYPE_Q8_0; /* not whole blocks */
	cr_assert_eq(cpu_matmul(&bad, x, 16, 1, y, 8, 0), -EINVAL);
	bad = w;
	bad.type = DTYPE_Q5_0; /* a valid type without a kernel */
	bad.cols = 32;
	bad.row_bytes = 22;
	cr_assert_eq(cpu_matmul(&bad, x, 32, 1, y, 8, 0), -ENOTSUP);
	bad = w;
	bad.type = (enum dtype)99;
	cr_assert_eq(cpu_matmul(&bad, x, 16, 1, y, 8, 0), -EINVAL);
}

/* ---- threads -------------------------------------------------------------------- */

struct job {
	const struct cpu_weight *w;
	const float *x;
	int64_t n;
	int n_threads;
	float *y;
	int rc;
};

static void *run_job(void *arg)
{
	struct job *j = arg;
	for (int rep = 0; rep < 3 && j->rc == 0; rep++)
		j->rc = cpu_matmul(j->w, j->x, j->w->cols, j->n, j->y, j->w->rows, j->n_threads);
	return NULL;
}

/* Two pthreads calling at the same time (own kernels and oneDNN, 1 and 2 threads each)
 * get the results of the same calls made one at a time. */
Test(kernels_matmul, concurrent_calls_agree)
{
	static const enum dtype ct[] = { DTYPE_F32, DTYPE_F16, DTYPE_Q4_K, DTYPE_Q8_0 };
	static const int64_t cn[] = { 33, 1, 7, 64 };
	struct wbuf b[4];
	float *x[4], *y[4], *solo[4];
	struct job jobs[4];
	for (int i = 0; i < 4; i++) {
		int64_t rows = 67, cols = 512;
		wbuf_make(&b[i], ct[i], rows, cols, 5 + (uint64_t)i);
		x[i] = malloc(sizeof(float) * (size_t)(cn[i] * cols));
		y[i] = malloc(sizeof(float) * (size_t)(cn[i] * rows));
		solo[i] = malloc(sizeof(float) * (size_t)(cn[i] * rows));
		cr_assert(x[i] != NULL && y[i] != NULL && solo[i] != NULL);
		ku_fill_acts(x[i], cn[i], cols, cols, 11 + (uint64_t)i);
		jobs[i] = (struct job){ &b[i].w, x[i], cn[i], 1 + i % 2, y[i], 0 };
		cr_assert_eq(cpu_matmul(&b[i].w, x[i], cols, cn[i], solo[i], rows, jobs[i].n_threads), 0);
	}
	for (int pass = 0; pass < 2; pass++) {
		pthread_t th[2];
		for (int k = 0; k < 2; k++)
			cr_assert_eq(pthread_create(&th[k], NULL, run_job, &jobs[2 * pass + k]), 0);
		for (int k = 0; k < 2; k++)
			pthread_join(th[k], NULL);
	}
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(jobs[i].rc, 0);
		cr_assert(memcmp(y[i], solo[i], sizeof(float) * (size_t)(cn[i] * 67)) == 0,
		          "%s: concurrent result differs", dtype_name(ct[i]));
		free(x[i]);
		free(y[i]);
		free(solo[i]);
		wbuf_free(&b[i]);
	}
}

/* The own kernels split rows between threads: any thread count gives the same bits. */
Test(kernels_matmul, thread_count_does_not_change_results)
{
	for (size_t i = 0; i < sizeof(all_types) / sizeof(all_types[0]); i++) {
		struct wbuf b;
		const int64_t rows = 301, cols = 512, n = 3;
		wbuf_make(&b, all_types[i], rows, cols, 3);
		float x[3 * 512], y1[3 * 301], y3[3 * 301];
		ku_fill_acts(x, n, cols, cols, 4);
		cr_assert_eq(cpu_matmul(&b.w, x, cols, n, y1, rows, 1), 0);
		cr_assert_eq(cpu_matmul(&b.w, x, cols, n, y3, rows, 3), 0);
		cr_assert(memcmp(y1, y3, sizeof(y1)) == 0, "%s", dtype_name(all_types[i]));
		wbuf_free(&b);
	}
}
