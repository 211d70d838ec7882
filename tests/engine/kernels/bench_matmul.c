/* Benchmarks of cpu_matmul, each against a baseline measured in the same run (prints
 * ratios, asserts nothing):
 *   prefill: Y (512 x 2816) = X (512 x 1024) . W^T for every weight type, GFLOP/s, against
 *            dnnl_sgemm on the same f32 shapes;
 *   decode:  n_tokens = 1 on a weight matrix of about 128 MB (well past the L3) for every
 *            type, weight bytes read per second, against a large memcpy (bytes copied per
 *            second) and against an AVX2 streaming-read sum loop (bytes read per second,
 *            the fairer bound: a matrix-vector product only reads).
 * Each figure on 1 and on 2 threads; the best of several repetitions.
 *
 * Usage: bench_matmul [--quick] [prefill|decode] [THREADS]
 *   --quick: smaller decode matrices, fewer repetitions; prefill/decode: one part only;
 *   THREADS: one thread count instead of 1 and 2.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dnnl.h>
#include <immintrin.h>
#include <omp.h>

#include "kern_util.h"
#include "matmul.h"

static const enum dtype types[] = {
	DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_Q8_0, DTYPE_Q4_0, DTYPE_Q4_K, DTYPE_Q6_K,
};
#define N_TYPES (sizeof(types) / sizeof(types[0]))

static int reps = 5;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Weights of `type`, rows x cols: a few distinct rows generated, then repeated (the
 * values do not matter for speed, the bytes read do). @return NULL on failure. */
static uint8_t *make_weights(enum dtype type, int64_t rows, int64_t cols, struct cpu_weight *w)
{
	uint64_t rb;
	if (dtype_row_size(type, cols, &rb) < 0)
		return NULL;
	uint8_t *p = aligned_alloc(64, ((size_t)rb * (size_t)rows + 63) & ~(size_t)63);
	if (p == NULL)
		return NULL;
	int64_t seed_rows = rows < 64 ? rows : 64;
	ku_fill_weights(type, p, seed_rows, cols, rb, 42);
	for (int64_t r = seed_rows; r < rows; r++)
		memcpy(p + (size_t)r * rb, p + (size_t)(r % seed_rows) * rb, rb);
	if (cpu_weight_init(w, type, p, cols, rows) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

/* ---- baselines ---------------------------------------------------------------- */

__attribute__((target("avx2"))) static double read_sum(const float *p, size_t n)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
		a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
		a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
		a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
	}
	float t[8];
	_mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
	return (double)t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

/* Best GB/s of: a memcpy of `bytes` (bytes copied), a streaming read of `bytes`. */
static void memory_baselines(size_t bytes, int nt, double *copy_gbs, double *read_gbs)
{
	float *src = aligned_alloc(64, bytes), *dst = aligned_alloc(64, bytes);
	if (src == NULL || dst == NULL) {
		free(src);
		free(dst);
		*copy_gbs = *read_gbs = 0.0;
		return;
	}
	memset(src, 1, bytes);
	memset(dst, 2, bytes);
	size_t n = bytes / sizeof(float), per = (n / (size_t)nt) & ~(size_t)31;
	double best_c = 1e9, best_r = 1e9;
	volatile double sink = 0.0;
	for (int rep = 0; rep < reps; rep++) {
		double t0 = now();
#pragma omp parallel for num_threads(nt)
		for (int i = 0; i < nt; i++)
			memcpy(dst + per * (size_t)i, src + per * (size_t)i, per * sizeof(float));
		double t1 = now();
		double s = 0.0;
#pragma omp parallel for num_threads(nt) reduction(+ : s)
		for (int i = 0; i < nt; i++)
			s += read_sum(src + per * (size_t)i, per);
		double t2 = now();
		sink += s;
		best_c = t1 - t0 < best_c ? t1 - t0 : best_c;
		best_r = t2 - t1 < best_r ? t2 - t1 : best_r;
	}
	(void)sink;
	*copy_gbs = (double)(per * (size_t)nt * sizeof(float)) / best_c * 1e-9;
	*read_gbs = (double)(per * (size_t)nt * sizeof(float)) / best_r * 1e-9;
	free(src);
	free(dst);
}

/* ---- prefill -------------------------------------------------------------------- */

static void bench_prefill(int nt)
{
	const int64_t M = 512, N = 2816, K = 1024;
	const double flop = 2.0 * (double)M * (double)N * (double)K;
	float *x = aligned_alloc(64, sizeof(float) * (size_t)(M * K));
	float *y = aligned_alloc(64, sizeof(float) * (size_t)(M * N));
	if (x == NULL || y == NULL)
		goto out;
	ku_fill_acts(x, M, K, K, 1);
	struct cpu_weight w32;
	uint8_t *p32 = make_weights(DTYPE_F32, N, K, &w32);
	if (p32 == NULL)
		goto out;
	double best = 1e9;
	omp_set_num_threads(nt);
	for (int rep = 0; rep < reps; rep++) {
		double t0 = now();
		dnnl_sgemm('N', 'T', M, N, K, 1.0f, x, K, (const float *)(const void *)p32, K, 0.0f, y, N);
		double dt = now() - t0;
		best = dt < best ? dt : best;
	}
	free(p32);
	const double base = flop / best * 1e-9;
	printf("prefill %dT  M=%lld N=%lld K=%lld  dnnl_sgemm f32: %7.1f GFLOP/s\n", nt,
	       (long long)M, (long long)N, (long long)K, base);
	for (size_t i = 0; i < N_TYPES; i++) {
		struct cpu_weight w;
		uint8_t *p = make_weights(types[i], N, K, &w);
		if (p == NULL)
			continue;
		best = 1e9;
		int rc = 0;
		for (int rep = 0; rep < reps && rc == 0; rep++) {
			double t0 = now();
			rc = cpu_matmul(&w, x, K, M, y, N, nt);
			double dt = now() - t0;
			best = dt < best ? dt : best;
		}
		double g = flop / best * 1e-9;
		printf("prefill %dT  cpu_matmul %-5s: %7.1f GFLOP/s  ratio vs dnnl_sgemm f32 %.2f%s\n",
		       nt, dtype_name(types[i]), g, g / base, rc ? "  (error)" : "");
		free(p);
	}
out:
	free(x);
	free(y);
}

/* ---- decode --------------------------------------------------------------------- */

static void bench_decode(int nt, size_t target_bytes)
{
	const int64_t K = 4096;
	double copy_gbs, read_gbs;
	memory_baselines(target_bytes, nt, &copy_gbs, &read_gbs);
	printf("decode %dT  memcpy %.1f GB/s copied, AVX2 streaming read %.1f GB/s\n", nt,
	       copy_gbs, read_gbs);
	float x[4096], *y = malloc(sizeof(float) * (target_bytes / 256 + 64));
	if (y == NULL)
		return;
	ku_fill_acts(x, 1, K, K, 3);
	for (size_t i = 0; i < N_TYPES; i++) {
		uint64_t rb;
		dtype_row_size(types[i], K, &rb);
		int64_t rows = (int64_t)(target_bytes / rb);
		struct cpu_weight w;
		uint8_t *p = make_weights(types[i], rows, K, &w);
		if (p == NULL)
			continue;
		double best = 1e9;
		int rc = 0;
		for (int rep = 0; rep < reps && rc == 0; rep++) {
			double t0 = now();
			rc = cpu_matmul(&w, x, K, 1, y, rows, nt);
			double dt = now() - t0;
			best = dt < best ? dt : best;
		}
		double gbs = (double)rb * (double)rows / best * 1e-9;
		printf("decode %dT  cpu_matmul %-5s %6lld x %lld (%4.0f MB): %5.1f GB/s  vs memcpy %.2f"
		       "  vs read %.2f%s\n", nt, dtype_name(types[i]), (long long)rows, (long long)K,
		       (double)rb * (double)rows / 1e6, gbs, gbs / copy_gbs, gbs / read_gbs,
		       rc ? "  (error)" : "");
		if (types[i] == DTYPE_F32) {
			best = 1e9;
			omp_set_num_threads(nt);
			for (int rep = 0; rep < reps; rep++) {
				double t0 = now();
				dnnl_sgemm('N', 'T', 1, rows, K, 1.0f, x, K, (const float *)(const void *)p,
				           K, 0.0f, y, rows);
				double dt = now() - t0;
				best = dt < best ? dt : best;
			}
			gbs = (double)rb * (double)rows / best * 1e-9;
			printf("decode %dT  dnnl_sgemm M=1 F32 (for reference): %5.1f GB/s  vs read %.2f\n",
			       nt, gbs, gbs / read_gbs);
		}
		free(p);
	}
	free(y);
}

int main(int argc, char **argv)
{
	size_t decode_bytes = (size_t)128 << 20;
	bool prefill = true, decode = true;
	int nt0 = 1, nt1 = 2;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			reps = 2;
			decode_bytes = (size_t)48 << 20;
		} else if (strcmp(argv[i], "prefill") == 0) {
			decode = false;
		} else if (strcmp(argv[i], "decode") == 0) {
			prefill = false;
		} else if (atoi(argv[i]) > 0) {
			nt0 = nt1 = atoi(argv[i]);
		}
	}
	for (int nt = nt0; nt <= nt1; nt++) {
		if (prefill)
			bench_prefill(nt);
		if (decode)
			bench_decode(nt, decode_bytes);
	}
	return 0;
}
