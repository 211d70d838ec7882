/* The cpu backend's operators (AVX2 and scalar against double-precision
 * formulas), the dispatcher's NULL-slot checks and the KV cache pool. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "backend_cpu.h"
#include "kv_cache.h"
#include "ops.h"

static void randv(float *x, int n, unsigned seed, float scale)
{
	for (int i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		x[i] = scale * ((float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f);
	}
}

static double maxdiff(const float *a, const double *b, int n)
{
	double m = 0.0;
	for (int i = 0; i < n; i++)
		m = fmax(m, fabs((double)a[i] - b[i]));
	return m;
}

struct simd_case {
	int scalar; /* 1: forced scalar kernels */
};

#define SIMD_PARAMS(suite, name)                                                    \
	ParameterizedTestParameters(suite, name)                                    \
	{                                                                           \
		static struct simd_case c[] = { { 0 }, { 1 } };                     \
		return cr_make_param_array(struct simd_case, c, 2);                 \
	}

/* n = 67: exercises the vector loops and their scalar tails. */
#define N 67
#define ROWS 5

SIMD_PARAMS(cpu_ops, rms_norm)
ParameterizedTest(struct simd_case *c, cpu_ops, rms_norm)
{
	cpu_ops_force_scalar(c->scalar);
	float x[ROWS * N], w[N], y[ROWS * N];
	double want[ROWS * N];
	randv(x, ROWS * N, 1, 3.0f);
	randv(w, N, 2, 1.0f);
	for (int r = 0; r < ROWS; r++) {
		double ss = 0;
		for (int i = 0; i < N; i++)
			ss += (double)x[r * N + i] * x[r * N + i];
		for (int i = 0; i < N; i++)
			want[r * N + i] = x[r * N + i] / sqrt(ss / N + 1e-5) * w[i];
	}
	cpu_rms_norm(x, N, w, y, N, ROWS, N, 1e-5f, 0);
	cr_expect_leq(maxdiff(y, want, ROWS * N), 1e-5);
	cpu_rms_norm(x, N, w, x, N, ROWS, N, 1e-5f, 0); /* in place */
	cr_expect_leq(maxdiff(x, want, ROWS * N), 1e-5);
}

SIMD_PARAMS(cpu_ops, silu_mul_add_softmax)
ParameterizedTest(struct simd_case *c, cpu_ops, silu_mul_add_softmax)
{
	cpu_ops_force_scalar(c->scalar);
	float g[ROWS * N], u[ROWS * N], b[N];
	double want[ROWS * N];
	randv(g, ROWS * N, 3, 12.0f);
	randv(u, ROWS * N, 4, 2.0f);
	randv(b, N, 5, 1.0f);
	for (int i = 0; i < ROWS * N; i++)
		want[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
	cpu_silu_mul(g, N, u, N, ROWS, N, 0);
	cr_expect_leq(maxdiff(g, want, ROWS * N), 1e-5);

	for (int i = 0; i < ROWS * N; i++)
		want[i] = (double)g[i] + b[i % N];
	cpu_add(g, N, b, 0, ROWS, N, 0); /* broadcast bias */
	cr_expect_leq(maxdiff(g, want, ROWS * N), 1e-6);

	for (int r = 0; r < ROWS; r++) {
		double m = -INFINITY, s = 0;
		for (int i = 0; i < N; i++)
			m = fmax(m, g[r * N + i]);
		for (int i = 0; i < N; i++)
			s += exp(g[r * N + i] - m);
		for (int i = 0; i < N; i++)
			want[r * N + i] = exp(g[r * N + i] - m) / s;
	}
	cpu_softmax(g, N, ROWS, N, 0);
	cr_expect_leq(maxdiff(g, want, ROWS * N), 1e-6);
}

/* RoPE: normal style rotates (2i, 2i+1), neox (i, i+n_rot/2); dims past n_rot stay. */
static void rope_ref(const float *x, double *y, int n_heads, int hd, int pos,
                     const struct rope_params *p)
{
	int half = p->n_rot / 2;
	for (int h = 0; h < n_heads; h++) {
		const float *xh = x + h * hd;
		double *yh = y + h * hd;
		for (int i = 0; i < hd; i++)
			yh[i] = xh[i];
		for (int i = 0; i < half; i++) {
			double th = pos * pow(p->freq_base, -2.0 * i / p->n_rot) * p->freq_scale;
			int a = p->style == ROPE_STYLE_NEOX ? i : 2 * i;
			int b = p->style == ROPE_STYLE_NEOX ? i + half : 2 * i + 1;
			yh[a] = xh[a] * cos(th) - xh[b] * sin(th);
			yh[b] = xh[a] * sin(th) + xh[b] * cos(th);
		}
	}
}

struct rope_case {
	int scalar, style, n_rot, hd;
};

ParameterizedTestParameters(cpu_ops, rope)
{
	static struct rope_case c[] = {
		{ 0, ROPE_STYLE_NORMAL, 64, 64 }, { 1, ROPE_STYLE_NORMAL, 64, 64 },
		{ 0, ROPE_STYLE_NEOX, 64, 64 },   { 1, ROPE_STYLE_NEOX, 64, 64 },
		{ 0, ROPE_STYLE_NORMAL, 20, 32 }, { 0, ROPE_STYLE_NEOX, 20, 32 },
		{ 0, ROPE_STYLE_NORMAL, 6, 6 },   { 0, ROPE_STYLE_NEOX, 6, 6 },
	};
	return cr_make_param_array(struct rope_case, c, sizeof c / sizeof c[0]);
}

ParameterizedTest(struct rope_case *c, cpu_ops, rope)
{
	cpu_ops_force_scalar(c->scalar);
	enum { H = 3, R = 4 };
	float x[R * H * 64];
	double want[R * H * 64];
	int32_t pos[R] = { 0, 1, 17, 3000 };
	struct rope_params p = { .style = c->style, .n_rot = c->n_rot, .freq_base = 10000.0f,
	                         .freq_scale = 0.5f };
	randv(x, R * H * c->hd, 9, 1.0f);
	for (int r = 0; r < R; r++)
		rope_ref(x + r * H * c->hd, want + r * H * c->hd, H, c->hd, pos[r], &p);
	cpu_rope(x, H * c->hd, R, H, c->hd, pos, &p, 0);
	cr_expect_leq(maxdiff(x, want, R * H * c->hd), 2e-6);
}

/* ---- paged attention against a dense computation --------------------------------------- */

struct attn_case {
	int scalar, f16;        /* scalar kernels; f16 KV cache */
	int hd, nh, nkv;        /* head_dim, query heads, kv heads */
};

ParameterizedTestParameters(cpu_attention, matches_dense_gqa_causal)
{
	static struct attn_case c[] = {
		{ 0, 0, 16, 4, 2 },  { 1, 0, 16, 4, 2 },  { 0, 1, 16, 4, 2 }, { 1, 1, 16, 4, 2 },
		{ 0, 0, 64, 36, 2 }, { 0, 1, 64, 36, 2 }, /* groups of 18 > GROUP_CHUNK */
		{ 0, 0, 24, 3, 3 },  { 0, 0, 12, 2, 1 },  /* head_dim % 16 != 0, % 8 != 0 */
	};
	return cr_make_param_array(struct attn_case, c, sizeof c / sizeof c[0]);
}

ParameterizedTest(struct attn_case *c, cpu_attention, matches_dense_gqa_causal)
{
	cpu_ops_force_scalar(c->scalar);
	const int HD = c->hd, NH = c->nh, NKV = c->nkv, BS = 4, NB = 16, KVD = NKV * HD;
	const int NKVE = NB * BS * KVD;
	float *kc = malloc(sizeof(float) * NKVE), *vc = malloc(sizeof(float) * NKVE);
	float *q = malloc(sizeof(float) * 9 * NH * HD), *out = malloc(sizeof(float) * 9 * NH * HD);
	uint16_t *kh16 = malloc(2 * (size_t)NKVE), *vh16 = malloc(2 * (size_t)NKVE);
	cr_assert(kc && vc && q && out && kh16 && vh16);
	randv(kc, NKVE, 1, 1.0f);
	randv(vc, NKVE, 2, 1.0f);
	randv(q, 9 * NH * HD, 3, 2.0f);
	if (c->f16) { /* the dense reference uses the f16-rounded values */
		for (int i = 0; i < NKVE; i++) {
			kh16[i] = dtype_f32_to_f16(kc[i]);
			vh16[i] = dtype_f32_to_f16(vc[i]);
			kc[i] = dtype_f16_to_f32(kh16[i]);
			vc[i] = dtype_f16_to_f32(vh16[i]);
		}
	}
	/* two sequences with scattered blocks: 6 new at pos 5 (ctx 11), 3 new at pos 0 */
	int32_t t0[] = { 7, 2, 11 }, t1[] = { 4 };
	struct attn_seq seqs[2] = { { .q_row = 0, .n_new = 6, .pos = 5, .block_table = t0 },
	                            { .q_row = 6, .n_new = 3, .pos = 0, .block_table = t1 } };
	struct attn_params p = { .q = q, .ldq = NH * HD, .out = out, .ldo = NH * HD,
	                         .k_cache = c->f16 ? (void *)kh16 : kc,
	                         .v_cache = c->f16 ? (void *)vh16 : vc,
	                         .kv_type = c->f16 ? DTYPE_F16 : DTYPE_F32,
	                         .block_size = BS, .n_heads = NH, .n_kv_heads = NKV, .head_dim = HD,
	                         .scale = 0.25f, .seqs = seqs, .n_seqs = 2 };
	cr_assert_eq(cpu_attention(&p, 2), 0); /* two threads, however small the call */
	double maxd = 0;
	for (int r = 0; r < 9; r++) {
		const struct attn_seq *s = r < 6 ? &seqs[0] : &seqs[1];
		int ctx = s->pos + (r - s->q_row) + 1;
		for (int h = 0; h < NH; h++) {
			int kh = h / (NH / NKV);
			double sc[16], m = -INFINITY, sum = 0, o[64] = { 0 };
			for (int j = 0; j < ctx; j++) {
				const float *k = kc + ((size_t)s->block_table[j / BS] * BS + j % BS) * KVD + kh * HD;
				double d = 0;
				for (int i = 0; i < HD; i++)
					d += (double)q[r * NH * HD + h * HD + i] * k[i];
				sc[j] = d * 0.25;
				m = fmax(m, sc[j]);
			}
			for (int j = 0; j < ctx; j++) {
				const float *v = vc + ((size_t)s->block_table[j / BS] * BS + j % BS) * KVD + kh * HD;
				double e = exp(sc[j] - m);
				sum += e;
				for (int i = 0; i < HD; i++)
					o[i] += e * v[i];
			}
			for (int i = 0; i < HD; i++)
				maxd = fmax(maxd, fabs(o[i] / sum - out[r * NH * HD + h * HD + i]));
		}
	}
	cr_expect_leq(maxd, 1e-5, "max diff %g", maxd);
	float *out2 = malloc(sizeof(float) * 9 * NH * HD);
	p.out = out2;
	cr_assert_eq(cpu_attention(&p, 0), 0); /* small: on the calling thread */
	cr_expect_arr_eq(out2, out, sizeof(float) * 9 * NH * HD, "1 thread differs from 2");
	free(out2);
	p.out = out;

	p.n_kv_heads = NH + 1;
	cr_expect_eq(cpu_attention(&p, 0), -EINVAL, "heads not a multiple of kv heads");
	p.n_kv_heads = NKV;
	enum dtype kt = p.kv_type;
	p.kv_type = DTYPE_Q8_0;
	cr_expect_eq(cpu_attention(&p, 0), -ENOTSUP);
	p.kv_type = kt;
	seqs[1].q_row = 5;
	cr_expect_eq(cpu_attention(&p, 0), -EINVAL, "overlapping rows");
	free(kc);
	free(vc);
	free(q);
	free(out);
	free(kh16);
	free(vh16);
}

/* ---- dispatcher ------------------------------------------------------------------------- */

Test(backend, null_slots_give_enotsup)
{
	struct backend_ops ops = backend_cpu_ops;
	struct backend b = { .ops = &ops };
	cr_expect_eq(backend_check(&b), 0);
	ops.softmax = NULL;
	ops.stream_new = NULL;
	cr_expect_eq(backend_check(&b), 0, "optional slots may be NULL");
	float x[4] = { 1, 2, 3, 4 };
	cr_expect_eq(backend_softmax(&b, x, 4, 1, 4), -ENOTSUP);
	struct backend_stream *s;
	cr_expect_eq(backend_stream_new(&b, &s), -ENOTSUP);
	ops.attention = NULL;
	cr_expect_eq(backend_check(&b), -EINVAL, "attention is required");
	ops = backend_cpu_ops;
	ops.version = BACKEND_OPS_VERSION + 1;
	cr_expect_eq(backend_check(&b), -EINVAL, "version mismatch");
	cr_expect_eq(backend_check(NULL), -EINVAL);
	backend_free(NULL, NULL);
	backend_free(&b, NULL);
}

Test(backend, cpu_streams_events_and_memory)
{
	struct backend b;
	backend_cpu_init(&b, 1);
	struct backend_stream *s = NULL;
	struct backend_event *e = NULL;
	void *p = NULL;
	cr_assert_eq(backend_stream_new(&b, &s), 0);
	cr_assert_eq(backend_event_new(&b, &e), 0);
	cr_assert_eq(backend_alloc(&b, 100, &p), 0);
	cr_expect_eq((uintptr_t)p % 64, 0, "64-byte aligned");
	char src[100];
	memset(src, 7, sizeof src);
	cr_expect_eq(backend_copy(&b, p, src, 100, s), 0);
	cr_expect_eq(memcmp(p, src, 100), 0);
	cr_expect_eq(backend_event_record(&b, e, s), 0);
	cr_expect_eq(backend_event_wait(&b, e, NULL), 0);
	cr_expect_eq(backend_sync(&b, s), 0);
	backend_free(&b, p);
	backend_event_free(&b, e);
	backend_stream_free(&b, s);
}

/* ---- KV cache pool ----------------------------------------------------------------------- */

Test(kv_cache, blocks_refcounts_and_tables)
{
	struct backend b;
	backend_cpu_init(&b, 1);
	struct kv_cache_params p = { .n_layers = 2, .n_kv_heads = 2, .head_dim = 8, .block_size = 4,
	                             .n_blocks = 5, .type = DTYPE_F32 };
	struct kv_cache *kv;
	cr_assert_eq(kv_cache_new(&b, &p, &kv), 0);
	cr_expect_eq(kv_cache_bytes(kv), 2u * 2 * 5 * 4 * 16 * sizeof(float));
	cr_expect_eq((char *)kv_cache_v(kv, 0) - (char *)kv_cache_k(kv, 0), 5 * 4 * 16 * 4);
	cr_expect_null(kv_cache_k(kv, 2));
	cr_expect_eq(kv_cache_n_free(kv), 5);

	struct kv_seq a, c;
	cr_assert_eq(kv_seq_init(&a, kv, 12), 0);
	cr_assert_eq(kv_seq_init(&c, kv, 100), 0);
	cr_expect_eq(kv_seq_reserve(&a, kv, 9), 0);
	cr_expect_eq(a.n_blocks, 3);
	cr_expect_eq(kv_seq_reserve(&a, kv, 13), -E2BIG, "beyond the table's capacity");
	cr_expect_eq(kv_seq_reserve(&c, kv, 20), -ENOSPC, "pool exhausted");
	cr_expect_eq(c.n_blocks, 2);
	cr_expect_eq(kv_cache_n_free(kv), 0);

	/* sharing: a block referenced twice survives one release */
	int32_t shared = a.blocks[0];
	cr_expect_eq(kv_cache_block_ref(kv, shared), 0);
	cr_expect_eq(kv_cache_block_refcount(kv, shared), 2);
	kv_seq_release(&a, kv);
	cr_expect_eq(kv_cache_n_free(kv), 2);
	cr_expect_eq(kv_cache_block_refcount(kv, shared), 1);
	cr_expect_eq(kv_cache_block_unref(kv, shared), 0);
	cr_expect_eq(kv_cache_block_unref(kv, shared), -EINVAL, "already free");
	cr_expect_eq(kv_cache_block_ref(kv, 99), -EINVAL);
	cr_expect_eq(kv_cache_n_free(kv), 3);

	kv_seq_fini(&a, kv);
	kv_seq_fini(&c, kv);
	cr_expect_eq(kv_cache_n_free(kv), 5);
	kv_cache_free(kv);
	kv_cache_free(NULL);

	p.type = DTYPE_Q8_0;
	cr_expect_eq(kv_cache_new(&b, &p, &kv), -ENOTSUP);
	p.type = DTYPE_F32;
	p.block_size = 0;
	cr_expect_eq(kv_cache_new(&b, &p, &kv), -EINVAL);
}
