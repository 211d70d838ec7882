/* Benchmarks of the diffusion operators, each against a baseline measured in the same run
 * (prints ratios, asserts nothing):
 *   conv2d:    3x3, 320 -> 320 channels at 64x64 (SD 1.5's first UNet level), GFLOP/s of
 *              conv2d_run (the NCHW primitive, and CONV2D_BLOCKED_IO with reorders)
 *              against dnnl_sgemm on the conv's im2col GEMM (M 320, N 4096, K 2880);
 *   attention: 4096 tokens x 8 heads x head_dim 40 self-attention (and 77-token
 *              cross-attention), GFLOP/s against the same sgemm figure;
 *   group norm: (8, 320, 64, 64), 32 groups, with and without SiLU, bytes read + written per
 *              second against memcpy of the same tensor split over the same threads.
 * Threads: the OpenMP default (OMP_NUM_THREADS); best of several repetitions, the variants
 * of one comparison interleaved in each repetition (a shared machine's load hits all alike).
 *
 * Usage: bench_diffops [--quick]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dnnl.h>
#include <omp.h>

#include "conv.h"
#include "diffusion_ops.h"

static int reps = 7;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *buf(size_t n, unsigned seed)
{
	float *p = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
	if (p == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (float)((seed >> 9) & 0xffff) / 65536.0f - 0.5f;
	}
	return p;
}

/* The baseline: dnnl_sgemm on the im2col GEMM of the conv below, Y (C x HW) = W (C x C*9) .
 * col (C*9 x HW) row-major, and the transposed orientation Y^T (HW x C) = col^T . W^T; the
 * faster of the two. */
enum { SG_M = 320, SG_N = 64 * 64, SG_K = 320 * 9 };
static float *sg_w, *sg_col, *sg_y;
#define SG_FLOPS (2.0 * SG_M * SG_N * SG_K)

static double sgemm_time(void)
{
	double t0 = now();
	dnnl_sgemm('N', 'N', SG_M, SG_N, SG_K, 1.0f, sg_w, SG_K, sg_col, SG_N, 0.0f, sg_y, SG_N);
	double t1 = now();
	dnnl_sgemm('N', 'T', SG_N, SG_M, SG_K, 1.0f, sg_col, SG_K, sg_w, SG_K, 0.0f, sg_y, SG_M);
	double t2 = now();
	return t1 - t0 < t2 - t1 ? t1 - t0 : t2 - t1;
}

static int bench_conv(void)
{
	const int C = 320, H = 64, W = 64, K = 3;
	struct conv2d_desc d = {C, C, K, K, 1, 1, 1, 1, 1, 1};
	const double flops = 2.0 * C * C * K * K * H * W;
	float *wt = buf((size_t)C * C * K * K, 1), *b = buf(C, 2), *x = buf((size_t)C * H * W, 3);
	float *y = buf((size_t)C * H * W, 4);
	struct conv2d *cb = NULL, *cp = NULL;
	int err = -1;
	if (wt == NULL || b == NULL || x == NULL || y == NULL)
		goto done;
	if ((err = conv2d_new(&d, DTYPE_F32, wt, b, 0, &cb)) < 0 ||
	    (err = conv2d_new(&d, DTYPE_F32, wt, b, CONV2D_BLOCKED_IO, &cp)) < 0)
		goto done;
	/* The variants run interleaved in each repetition so that they see the same load. */
	double t_sg = 1e30, t_b = 1e30, t_p = 1e30;
	conv2d_run(cb, x, 1, H, W, y);
	conv2d_run(cp, x, 1, H, W, y);
	for (int r = 0; r < reps; r++) {
		double t = sgemm_time();
		t_sg = t < t_sg ? t : t_sg;
		double t2 = now();
		err |= conv2d_run(cb, x, 1, H, W, y);
		double t3 = now();
		err |= conv2d_run(cp, x, 1, H, W, y);
		double t4 = now();
		t_b = t3 - t2 < t_b ? t3 - t2 : t_b;
		t_p = t4 - t3 < t_p ? t4 - t3 : t_p;
	}
	printf("conv2d 3x3 %d->%d at %dx%d (%.2f GFLOP), %d threads:\n", C, C, H, W, flops * 1e-9,
	       omp_get_max_threads());
	printf("  dnnl_sgemm, im2col GEMM 320 x 4096 x 2880: %7.1f GFLOP/s  %7.2f ms\n",
	       SG_FLOPS / t_sg * 1e-9, t_sg * 1e3);
	printf("  conv2d_run, NCHW primitive (default):     %7.1f GFLOP/s  %7.2f ms  ratio %.2f\n",
	       flops / t_b * 1e-9, t_b * 1e3, t_sg / t_b);
	printf("  conv2d_run, CONV2D_BLOCKED_IO (reorders): %7.1f GFLOP/s  %7.2f ms  ratio %.2f\n",
	       flops / t_p * 1e-9, t_p * 1e3, t_sg / t_p);
done:
	conv2d_free(cb);
	conv2d_free(cp);
	free(wt), free(b), free(x), free(y);
	return err;
}

static int bench_attention(void)
{
	const int L = 4096, heads = 8, d = 40, hd = heads * d, LC = 77;
	float *q = buf((size_t)L * hd, 6), *k = buf((size_t)L * hd, 7), *v = buf((size_t)L * hd, 8);
	float *o = buf((size_t)L * hd, 9);
	int err = -1;
	if (q == NULL || k == NULL || v == NULL || o == NULL)
		goto done;
	struct dops_attn p = {q, hd, k, hd, v, hd, o, hd, 1, L, L, heads, d, 0.0f};
	double t_self = 1e30, t_cross = 1e30, t_sg = 1e30;
	const double flops = 4.0 * L * L * d * heads, fc = 4.0 * L * LC * d * heads;
	err = dops_attention(&p, 0);
	for (int r = 0; r < reps; r++) { /* interleaved with the sgemm baseline */
		double t = sgemm_time();
		t_sg = t < t_sg ? t : t_sg;
		p.lk = L;
		double t0 = now();
		err |= dops_attention(&p, 0);
		double t1 = now();
		p.lk = LC;
		for (int i = 0; i < 8; i++) /* short: 8 calls per sample */
			err |= dops_attention(&p, 0);
		double t2 = now();
		t_self = t1 - t0 < t_self ? t1 - t0 : t_self;
		t_cross = (t2 - t1) / 8 < t_cross ? (t2 - t1) / 8 : t_cross;
	}
	const double sgemm_gflops = SG_FLOPS / t_sg * 1e-9;
	printf("attention %d tokens x %d heads x head_dim %d (im2col sgemm in the same loop: "
	       "%.1f GFLOP/s):\n", L, heads, d, sgemm_gflops);
	printf("  self  (Lk %d, %.1f GFLOP): %7.1f GFLOP/s  %7.1f ms  ratio to sgemm %.2f\n", L,
	       flops * 1e-9, flops / t_self * 1e-9, t_self * 1e3,
	       flops / t_self * 1e-9 / sgemm_gflops);
	printf("  cross (Lk %d, %.2f GFLOP): %7.1f GFLOP/s  %7.2f ms  ratio to sgemm %.2f\n", LC,
	       fc * 1e-9, fc / t_cross * 1e-9, t_cross * 1e3, fc / t_cross * 1e-9 / sgemm_gflops);
done:
	free(q), free(k), free(v), free(o);
	return err;
}

/* memcpy split over the OpenMP team, as the group norm is. */
static void par_memcpy(float *y, const float *x, size_t n)
{
	int nt = omp_get_max_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
	for (int i = 0; i < nt; i++) {
		size_t per = (n / (size_t)nt + 15) & ~(size_t)15, a = per * (size_t)i;
		if (a < n)
			memcpy(y + a, x + a, (a + per < n ? per : n - a) * sizeof(float));
	}
}

static int bench_group_norm(void)
{
	const int N = 8, C = 320, HW = 64 * 64, G = 32; /* 42 MB: past the L3 */
	const size_t n = (size_t)N * C * HW;
	const double bytes = 2.0 * (double)n * sizeof(float); /* read x + write y */
	float *x = buf(n, 10), *y = buf(n, 11), *w = buf(C, 12), *b = buf(C, 13);
	int err = -1;
	if (x == NULL || y == NULL || w == NULL || b == NULL)
		goto done;
	double t_cp = 1e30, t_gn = 1e30, t_gs = 1e30;
	err = dops_group_norm(x, y, N, C, HW, G, w, b, 1e-5f, false, 0);
	for (int r = 0; r < 4 * reps; r++) { /* interleaved, as the conv */
		double t0 = now();
		par_memcpy(y, x, n);
		double t1 = now();
		err |= dops_group_norm(x, y, N, C, HW, G, w, b, 1e-5f, false, 0);
		double t2 = now();
		err |= dops_group_norm(x, y, N, C, HW, G, w, b, 1e-5f, true, 0);
		double t3 = now();
		t_cp = t1 - t0 < t_cp ? t1 - t0 : t_cp;
		t_gn = t2 - t1 < t_gn ? t2 - t1 : t_gn;
		t_gs = t3 - t2 < t_gs ? t3 - t2 : t_gs;
	}
	printf("group norm (%d, %d, 64, 64), %d groups (%.1f MB in, %.1f MB out):\n", N, C, G,
	       (double)n * 4e-6, (double)n * 4e-6);
	printf("  memcpy (threads):  %6.1f GB/s (read + write)  %6.2f ms\n", bytes / t_cp * 1e-9,
	       t_cp * 1e3);
	printf("  group norm:        %6.1f GB/s                 %6.2f ms  ratio %.2f\n",
	       bytes / t_gn * 1e-9, t_gn * 1e3, t_cp / t_gn);
	printf("  group norm + SiLU: %6.1f GB/s                 %6.2f ms  ratio %.2f\n",
	       bytes / t_gs * 1e-9, t_gs * 1e3, t_cp / t_gs);
done:
	free(x), free(y), free(w), free(b);
	return err;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--quick") == 0)
		reps = 3;
	sg_w = buf((size_t)SG_M * SG_K, 20);
	sg_col = buf((size_t)SG_K * SG_N, 21);
	sg_y = buf((size_t)SG_M * SG_N, 22);
	if (sg_w == NULL || sg_col == NULL || sg_y == NULL) {
		fprintf(stderr, "bench_diffops: out of memory\n");
		return 1;
	}
	int err = bench_conv();
	if (err == 0)
		err = bench_attention();
	if (err == 0)
		err = bench_group_norm();
	if (err != 0)
		fprintf(stderr, "bench_diffops: an operator failed (%d)\n", err);
	free(sg_w), free(sg_col), free(sg_y);
	return err != 0;
}
