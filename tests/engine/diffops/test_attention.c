/* Dense multi-head attention (flash-style tiles) against the naive double-precision
 * softmax(q k^T * scale) v, on the AVX2 (oneDNN products) and the forced scalar path. */
#include <errno.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "diffops_util.h"
#include "diffusion_ops.h"
#include "ops.h"

struct attn_case {
	int batch, lq, lk, heads, hd, pad; /* pad: extra floats per row (strides > heads*hd) */
	float scale;                       /* 0 = 1/sqrt(hd) */
	float amp;                         /* input amplitude: large -> peaked softmax */
};

ParameterizedTestParameters(attention, matches_naive)
{
	static struct attn_case cases[] = {
		{1, 16, 16, 1, 8, 0, 0.0f, 1.0f},
		{2, 37, 77, 2, 40, 3, 0.0f, 1.0f},     /* cross-attention, Lq != Lk */
		{1, 300, 257, 3, 13, 1, 0.0f, 2.0f},   /* odd head_dim, tiles + tails */
		{1, 1024, 1024, 2, 40, 0, 0.0f, 1.0f}, /* large Lq, several key tiles */
		{2, 65, 600, 1, 64, 5, 0.3f, 3.0f},    /* explicit scale, peaked */
		{1, 1, 1, 4, 8, 0, 0.0f, 1.0f},
		{1, 130, 5, 2, 80, 0, 0.0f, 8.0f},     /* very peaked, short keys */
		{2, 600, 77, 2, 40, 1, 0.0f, 1.0f},    /* several long query tiles (short keys) */
		{1, 70, 129, 1, 24, 0, 0.0f, 1.0f},    /* just past the short-key tiling */
		{2, 100, 300, 1, 512, 0, 0.0f, 0.2f},  /* VAE mid-block: one head of 512 */
	};
	return cr_make_param_array(struct attn_case, cases, sizeof cases / sizeof cases[0]);
}

static void naive(const struct attn_case *c, const float *q, const float *k, const float *v,
                  int ld, double *out)
{
	double scale = c->scale > 0 ? c->scale : 1.0 / sqrt(c->hd);
	double *s = calloc((size_t)c->lk, sizeof(double));
	for (int b = 0; b < c->batch; b++)
		for (int h = 0; h < c->heads; h++)
			for (int i = 0; i < c->lq; i++) {
				const float *qi = q + ((int64_t)b * c->lq + i) * ld + h * c->hd;
				double m = -1e300, sum = 0;
				for (int j = 0; j < c->lk; j++) {
					const float *kj = k + ((int64_t)b * c->lk + j) * ld + h * c->hd;
					double acc = 0;
					for (int e = 0; e < c->hd; e++)
						acc += (double)qi[e] * kj[e];
					s[j] = acc * scale;
					m = fmax(m, s[j]);
				}
				for (int j = 0; j < c->lk; j++)
					sum += (s[j] = exp(s[j] - m));
				double *o = out + (((int64_t)b * c->lq + i) * c->heads + h) * c->hd;
				for (int e = 0; e < c->hd; e++)
					o[e] = 0;
				for (int j = 0; j < c->lk; j++) {
					const float *vj = v + ((int64_t)b * c->lk + j) * ld + h * c->hd;
					for (int e = 0; e < c->hd; e++)
						o[e] += s[j] / sum * vj[e];
				}
			}
	free(s);
}

ParameterizedTest(struct attn_case *c, attention, matches_naive, .timeout = 120)
{
	const int hd = c->heads * c->hd, ld = hd + c->pad;
	const int64_t nq = (int64_t)c->batch * c->lq, nk = (int64_t)c->batch * c->lk;
	float *q = du_alloc(nq * ld), *k = du_alloc(nk * ld), *v = du_alloc(nk * ld);
	float *out = du_alloc(nq * ld), *packed = du_alloc(nq * hd);
	double *want = calloc((size_t)(nq * hd), sizeof(double));
	struct du_rng r = {(uint64_t)(c->lq * 31 + c->lk)};
	du_fill(&r, q, nq * ld, c->amp, 0.0f);
	du_fill(&r, k, nk * ld, c->amp, 0.0f);
	du_fill(&r, v, nk * ld, 1.0f, 0.0f);
	naive(c, q, k, v, ld, want);
	for (int scalar = 0; scalar < 2; scalar++) {
		cpu_ops_force_scalar(scalar != 0);
		struct dops_attn p = {q, ld, k, ld, v, ld, out, ld, c->batch, c->lq, c->lk,
		                      c->heads, c->hd, c->scale};
		cr_assert_eq(dops_attention(&p, 0), 0);
		for (int64_t i = 0; i < nq; i++)
			for (int e = 0; e < hd; e++)
				packed[i * hd + e] = out[i * ld + e];
		cr_expect(du_close("attention", packed, want, nq * hd, 2e-5, 1e-4),
		          "scalar %d", scalar);
	}
	cpu_ops_force_scalar(false);
	free(q), free(k), free(v), free(out), free(packed), free(want);
}

Test(attention, one_thread_and_two_agree)
{
	const int lq = 200, lk = 150, heads = 2, d = 16, hd = heads * d;
	float *q = du_alloc(lq * hd), *k = du_alloc(lk * hd), *v = du_alloc(lk * hd);
	float *o1 = du_alloc(lq * hd), *o2 = du_alloc(lq * hd);
	struct du_rng r = {11};
	du_fill(&r, q, lq * hd, 1.0f, 0.0f);
	du_fill(&r, k, lk * hd, 1.0f, 0.0f);
	du_fill(&r, v, lk * hd, 1.0f, 0.0f);
	struct dops_attn p = {q, hd, k, hd, v, hd, o1, hd, 1, lq, lk, heads, d, 0.0f};
	cr_assert_eq(dops_attention(&p, 1), 0);
	p.out = o2;
	cr_assert_eq(dops_attention(&p, 2), 0);
	for (int i = 0; i < lq * hd; i++)
		cr_assert_float_eq(o1[i], o2[i], 1e-6, "at %d", i);
	free(q), free(k), free(v), free(o1), free(o2);
}

Test(attention, rejects_bad_arguments)
{
	float b[64] = {0}, o[64];
	struct dops_attn p = {b, 8, b, 8, b, 8, o, 8, 1, 2, 2, 2, 4, 0.0f};
	cr_expect_eq(dops_attention(&p, 0), 0);
	struct dops_attn bad = p;
	bad.ldq = 7; /* shorter than heads * head_dim */
	cr_expect_eq(dops_attention(&bad, 0), -EINVAL);
	bad = p;
	bad.lk = 0;
	cr_expect_eq(dops_attention(&bad, 0), -EINVAL);
	bad = p;
	bad.v = NULL;
	cr_expect_eq(dops_attention(&bad, 0), -EINVAL);
	bad = p;
	bad.scale = -1.0f;
	cr_expect_eq(dops_attention(&bad, 0), -EINVAL);
	cr_expect_eq(dops_attention(NULL, 0), -EINVAL);
}
