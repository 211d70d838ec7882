/* The cuda backend against the cpu backend, op by op, on the same random inputs. Without a GPU
 * (or a build without CUDA) every case is reported as skipped with the reason. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "backend_cuda.h"
#include "cuda_probe.h"
#include "dtype.h"

static struct backend gpu, cpu;

static void setup(void)
{
	char why[256];
	if (backend_cuda_init(&gpu, 0, why, sizeof(why)) < 0)
		cr_skip_test("no GPU for the cuda backend: %s", why);
	backend_cpu_init(&cpu, 0);
}

static void teardown(void)
{
	backend_cuda_fini(&gpu);
}

TestSuite(cuda_backend, .init = setup, .fini = teardown);

static void fill(float *x, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		x[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * 2.0f;
	}
}

/* Device copy of host data. */
static float *up(const void *h, size_t bytes)
{
	void *d;
	cr_assert_eq(backend_alloc(&gpu, bytes, &d), 0);
	cr_assert_eq(backend_copy(&gpu, d, h, bytes, NULL), 0);
	return d;
}

static void down(void *h, const void *d, size_t bytes)
{
	cr_assert_eq(backend_copy(&gpu, h, d, bytes, NULL), 0);
	cr_assert_eq(backend_sync(&gpu, NULL), 0);
}

static float max_diff(const float *a, const float *b, size_t n)
{
	float m = 0;
	for (size_t i = 0; i < n; i++)
		m = fmaxf(m, fabsf(a[i] - b[i]));
	return m;
}

Test(cuda_backend, matmul_f32_and_f16_match_the_cpu)
{
	enum { R = 96, C = 128, T = 5 };
	static float w[R * C], x[T * C], yc[T * R], yg[T * R];
	static uint16_t wh[R * C];
	fill(w, R * C, 1);
	fill(x, T * C, 2);
	for (size_t i = 0; i < R * C; i++)
		wh[i] = dtype_f32_to_f16(w[i]);
	for (int f16 = 0; f16 < 2; f16++) {
		struct tensor tc = { .type = f16 ? DTYPE_F16 : DTYPE_F32, .n_dims = 2,
		                     .ne = { C, R, 1, 1 },
		                     .nb = { f16 ? 2 : 4, (size_t)C * (f16 ? 2 : 4), 0, 0 },
		                     .data = f16 ? (void *)wh : (void *)w };
		struct tensor tg = tc;
		tg.data = up(tc.data, (size_t)R * C * (f16 ? 2 : 4));
		float *xd = up(x, sizeof(x)), *yd;
		cr_assert_eq(backend_alloc(&gpu, sizeof(yg), (void **)&yd), 0);
		cr_assert_eq(backend_matmul(&cpu, &tc, x, C, T, yc, R), 0);
		cr_assert_eq(backend_matmul(&gpu, &tg, xd, C, T, yd, R), 0);
		down(yg, yd, sizeof(yg));
		cr_expect_lt(max_diff(yc, yg, T * R), f16 ? 2e-2f : 1e-4f, "f16 %d", f16);
		backend_free(&gpu, tg.data);
		backend_free(&gpu, xd);
		backend_free(&gpu, yd);
	}
}

Test(cuda_backend, norm_rope_silu_add_softmax_match_the_cpu)
{
	enum { ROWS = 7, N = 256, HEADS = 4, HD = 64 };
	static float x[ROWS * N], w[N], u[ROWS * N], yc[ROWS * N], yg[ROWS * N];
	int32_t pos[ROWS] = { 0, 1, 5, 17, 100, 511, 2047 };
	fill(x, ROWS * N, 3);
	fill(w, N, 4);
	fill(u, ROWS * N, 5);
	float *xd = up(x, sizeof(x)), *wd = up(w, sizeof(w)), *ud = up(u, sizeof(u));

	memcpy(yc, x, sizeof(x));
	cr_assert_eq(backend_rms_norm(&cpu, x, N, w, yc, N, ROWS, N, 1e-5f), 0);
	cr_assert_eq(backend_rms_norm(&gpu, xd, N, wd, xd, N, ROWS, N, 1e-5f), 0);
	down(yg, xd, sizeof(yg));
	cr_expect_lt(max_diff(yc, yg, ROWS * N), 1e-4f, "rms_norm");

	for (int style = 0; style < 2; style++) {
		struct rope_params rp = { .style = style, .n_rot = HD, .freq_base = 10000.0f,
		                          .freq_scale = 1.0f };
		memcpy(yc, x, sizeof(x));
		float *rd = up(x, sizeof(x));
		cr_assert_eq(backend_rope(&cpu, yc, N, ROWS, HEADS, HD, pos, &rp), 0);
		cr_assert_eq(backend_rope(&gpu, rd, N, ROWS, HEADS, HD, pos, &rp), 0);
		down(yg, rd, sizeof(yg));
		cr_expect_lt(max_diff(yc, yg, ROWS * N), 1e-3f, "rope style %d", style);
		backend_free(&gpu, rd);
	}

	memcpy(yc, x, sizeof(x));
	float *gd = up(x, sizeof(x));
	cr_assert_eq(backend_silu_mul(&cpu, yc, N, u, N, ROWS, N), 0);
	cr_assert_eq(backend_silu_mul(&gpu, gd, N, ud, N, ROWS, N), 0);
	down(yg, gd, sizeof(yg));
	cr_expect_lt(max_diff(yc, yg, ROWS * N), 1e-5f, "silu_mul");

	cr_assert_eq(backend_add(&cpu, yc, N, w, 0, ROWS, N), 0);
	cr_assert_eq(backend_add(&gpu, gd, N, wd, 0, ROWS, N), 0);
	down(yg, gd, sizeof(yg));
	cr_expect_lt(max_diff(yc, yg, ROWS * N), 1e-5f, "add with a broadcast row");
	backend_free(&gpu, xd);
	backend_free(&gpu, wd);
	backend_free(&gpu, ud);
	backend_free(&gpu, gd);
}

Test(cuda_backend, paged_attention_matches_the_cpu)
{
	enum { BS = 16, NB = 12, KVH = 2, H = 8, HD = 64, KVD = KVH * HD, QD = H * HD };
	static float kc[NB * BS * KVD], vc[NB * BS * KVD], q[6 * QD], oc[6 * QD], og[6 * QD];
	int32_t t0[] = { 3, 7, 1 }, t1[] = { 0, 11, 5, 2 };
	/* seq 0: 5 new rows at positions 30..34 (prefill chunk); seq 1: one decode row at 50 */
	struct attn_seq seqs[2] = { { .q_row = 0, .n_new = 5, .pos = 30, .block_table = t0 },
	                            { .q_row = 5, .n_new = 1, .pos = 50, .block_table = t1 } };
	fill(kc, sizeof(kc) / 4, 6);
	fill(vc, sizeof(vc) / 4, 7);
	fill(q, sizeof(q) / 4, 8);
	struct attn_params p = { .q = q, .ldq = QD, .out = oc, .ldo = QD, .k_cache = kc,
	                         .v_cache = vc, .kv_type = DTYPE_F32, .block_size = BS,
	                         .n_heads = H, .n_kv_heads = KVH, .head_dim = HD,
	                         .scale = 0.125f, .seqs = seqs, .n_seqs = 2 };
	cr_assert_eq(cpu.ops->attention(&cpu, &p), 0);
	struct attn_params g = p;
	g.q = up(q, sizeof(q));
	g.k_cache = up(kc, sizeof(kc));
	g.v_cache = up(vc, sizeof(vc));
	cr_assert_eq(backend_alloc(&gpu, sizeof(og), (void **)&g.out), 0);
	cr_assert_eq(gpu.ops->attention(&gpu, &g), 0);
	down(og, g.out, sizeof(og));
	cr_expect_lt(max_diff(oc, og, 6 * QD), 1e-4f, "paged attention");
	backend_free(&gpu, (void *)g.q);
	backend_free(&gpu, (void *)g.k_cache);
	backend_free(&gpu, (void *)g.v_cache);
	backend_free(&gpu, g.out);
}
