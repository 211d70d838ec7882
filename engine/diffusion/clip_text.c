/* CLIP text encoder: weights (f32 copies) and the forward pass. See clip_text.h. */
#include "clip_text.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "diff-internal.h"

struct clip_layer {
	float *ln1_w, *ln1_b;          /* (width) */
	float *qkv_w, *qkv_b;          /* (3*width, width): q, k, v rows stacked; (3*width) */
	float *o_w, *o_b;              /* (width, width), (width) */
	float *ln2_w, *ln2_b;          /* (width) */
	float *fc1_w, *fc1_b;          /* (ffn, width), (ffn) */
	float *fc2_w, *fc2_b;          /* (width, ffn), (width) */
	struct cpu_weight qkv, o, fc1, fc2;
};

struct clip_text {
	struct clip_text_config cfg;
	float *arena;                  /* every weight below, f32 */
	float *tok_emb;                /* (n_vocab, width) */
	float *pos_emb;                /* (n_ctx, width) */
	float *fln_w, *fln_b;          /* (width) */
	struct clip_layer *layers;     /* (n_layers) */
};

/* ---- building ------------------------------------------------------------------------- */

/* Converts n values of src to f32 at dst. @return 0 or -EINVAL. */
static int to_f32(const struct clip_weight *src, float *dst, size_t n, const char *what,
                  char *err, size_t errlen)
{
	if (src->data == NULL) {
		diff_set_err(err, errlen, "clip text encoder: no data for %s", what);
		return -EINVAL;
	}
	const uint16_t *h = src->data;
	switch (src->type) {
	case DTYPE_F32:
		memcpy(dst, src->data, n * sizeof *dst);
		return 0;
	case DTYPE_F16:
		for (size_t i = 0; i < n; i++)
			dst[i] = dtype_f16_to_f32(h[i]);
		return 0;
	case DTYPE_BF16:
		for (size_t i = 0; i < n; i++)
			dst[i] = dtype_bf16_to_f32(h[i]);
		return 0;
	default:
		diff_set_err(err, errlen, "clip text encoder: %s: dtype %d not F32/F16/BF16", what,
		        (int)src->type);
		return -EINVAL;
	}
}

static int check_config(const struct clip_text_config *c, char *err, size_t errlen)
{
	if (c->n_vocab < 1 || c->n_ctx < 1 || c->width < 1 || c->n_layers < 1 || c->n_heads < 1 ||
	    c->ffn < 1 || c->width % c->n_heads != 0 || !(c->ln_eps > 0) ||
	    (c->act != CLIP_ACT_QUICK_GELU && c->act != CLIP_ACT_GELU) || c->n_vocab > (1 << 24) ||
	    c->n_ctx > 4096 || c->width > 65536 || c->ffn > 262144 || c->n_layers > 1024) {
		diff_set_err(err, errlen, "clip text encoder: bad config (vocab %d, ctx %d, width %d, "
		        "layers %d, heads %d, ffn %d)", c->n_vocab, c->n_ctx, c->width, c->n_layers,
		        c->n_heads, c->ffn);
		return -EINVAL;
	}
	return 0;
}

int clip_text_new(const struct clip_text_config *cfg, const struct clip_weights *w,
                  struct clip_text **out, char *err, size_t errlen)
{
	if (cfg == NULL || w == NULL || out == NULL)
		return -EINVAL;
	*out = NULL;
	int rc = check_config(cfg, err, errlen);
	if (rc != 0)
		return rc;
	if (w->layers == NULL) {
		diff_set_err(err, errlen, "clip text encoder: no layer weights");
		return -EINVAL;
	}
	const size_t W = (size_t)cfg->width, F = (size_t)cfg->ffn;
	const size_t per_layer = 4 * W + 3 * W * W + 3 * W + W * W + W + 2 * F * W + F + W;
	const size_t total = (size_t)cfg->n_vocab * W + (size_t)cfg->n_ctx * W + 2 * W +
	                     (size_t)cfg->n_layers * per_layer;
	struct clip_text *m = calloc(1, sizeof *m);
	rc = -ENOMEM;
	if (m == NULL)
		goto fail;
	m->cfg = *cfg;
	m->arena = malloc(total * sizeof *m->arena);
	m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
	if (m->arena == NULL || m->layers == NULL)
		goto fail;

	float *p = m->arena;
#define TAKE(dst, n) do { dst = p; p += (n); } while (0)
#define CONV(dst, n, src, what) do { \
		TAKE(dst, n); \
		rc = to_f32(&(src), dst, n, what, err, errlen); \
		if (rc != 0) \
			goto fail; \
	} while (0)
	CONV(m->tok_emb, (size_t)cfg->n_vocab * W, w->tok_emb, "token_embedding");
	CONV(m->pos_emb, (size_t)cfg->n_ctx * W, w->pos_emb, "position_embedding");
	CONV(m->fln_w, W, w->final_ln_w, "final_layer_norm.weight");
	CONV(m->fln_b, W, w->final_ln_b, "final_layer_norm.bias");
	for (int l = 0; l < cfg->n_layers; l++) {
		const struct clip_layer_weights *s = &w->layers[l];
		struct clip_layer *d = &m->layers[l];
		CONV(d->ln1_w, W, s->ln1_w, "layer_norm1.weight");
		CONV(d->ln1_b, W, s->ln1_b, "layer_norm1.bias");
		TAKE(d->qkv_w, 3 * W * W);
		TAKE(d->qkv_b, 3 * W);
		const struct clip_weight *pw[3] = { &s->q_w, &s->k_w, &s->v_w };
		const struct clip_weight *pb[3] = { &s->q_b, &s->k_b, &s->v_b };
		for (int k = 0; k < 3; k++) {
			rc = to_f32(pw[k], d->qkv_w + k * W * W, W * W, "q/k/v_proj.weight", err, errlen);
			if (rc == 0)
				rc = to_f32(pb[k], d->qkv_b + k * W, W, "q/k/v_proj.bias", err, errlen);
			if (rc != 0)
				goto fail;
		}
		CONV(d->o_w, W * W, s->o_w, "out_proj.weight");
		CONV(d->o_b, W, s->o_b, "out_proj.bias");
		CONV(d->ln2_w, W, s->ln2_w, "layer_norm2.weight");
		CONV(d->ln2_b, W, s->ln2_b, "layer_norm2.bias");
		CONV(d->fc1_w, F * W, s->fc1_w, "mlp.fc1.weight");
		CONV(d->fc1_b, F, s->fc1_b, "mlp.fc1.bias");
		CONV(d->fc2_w, W * F, s->fc2_w, "mlp.fc2.weight");
		CONV(d->fc2_b, W, s->fc2_b, "mlp.fc2.bias");
		if (cpu_weight_init(&d->qkv, DTYPE_F32, d->qkv_w, (int64_t)W, 3 * (int64_t)W) != 0 ||
		    cpu_weight_init(&d->o, DTYPE_F32, d->o_w, (int64_t)W, (int64_t)W) != 0 ||
		    cpu_weight_init(&d->fc1, DTYPE_F32, d->fc1_w, (int64_t)W, (int64_t)F) != 0 ||
		    cpu_weight_init(&d->fc2, DTYPE_F32, d->fc2_w, (int64_t)F, (int64_t)W) != 0) {
			rc = -EINVAL;
			goto fail;
		}
	}
#undef CONV
#undef TAKE
	*out = m;
	return 0;
fail:
	if (rc == -ENOMEM)
		diff_set_err(err, errlen, "clip text encoder: out of memory");
	clip_text_free(m);
	return rc;
}

void clip_text_free(struct clip_text *m)
{
	if (m == NULL)
		return;
	free(m->arena);
	free(m->layers);
	free(m);
}

const struct clip_text_config *clip_text_get_config(const struct clip_text *m)
{
	return m ? &m->cfg : NULL;
}

/* ---- forward -------------------------------------------------------------------------- */

/* y[r] = (x[r] - mean) / sqrt(var + eps) * w + b over rows of n; y may equal x. */
static void layer_norm(const float *x, float *y, const float *w, const float *b, int64_t rows,
                       int64_t n, float eps, int nt)
{
#pragma omp parallel for num_threads(nt) if (nt > 1 && rows >= 64) schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		const float *xr = x + r * n;
		float *yr = y + r * n;
		double s = 0, s2 = 0;
		for (int64_t i = 0; i < n; i++)
			s += xr[i];
		double mean = s / (double)n;
		for (int64_t i = 0; i < n; i++)
			s2 += (xr[i] - mean) * (xr[i] - mean);
		float inv = (float)(1.0 / sqrt(s2 / (double)n + eps));
		float mf = (float)mean;
		for (int64_t i = 0; i < n; i++)
			yr[i] = (xr[i] - mf) * inv * w[i] + b[i];
	}
}

/* y[r] += b over rows of n; act: -1 none, else an enum clip_act applied after the bias. */
static void bias_act(float *y, const float *b, int64_t rows, int64_t n, int act, int nt)
{
#pragma omp parallel for num_threads(nt) if (nt > 1 && rows * n >= 65536) schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		float *yr = y + r * n;
		for (int64_t i = 0; i < n; i++) {
			float v = yr[i] + b[i];
			if (act == CLIP_ACT_QUICK_GELU)
				v = v / (1.0f + expf(-1.702f * v));
			else if (act == CLIP_ACT_GELU)
				v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
			yr[i] = v;
		}
	}
}

/* Dot product with 8 independent partial sums, so the compiler can vectorize it. */
static float dot(const float *a, const float *b, int n)
{
	float acc[8] = { 0 }, s = 0;
	int e = 0;
	for (; e + 8 <= n; e += 8)
		for (int u = 0; u < 8; u++)
			acc[u] += a[e + u] * b[e + u];
	for (; e < n; e++)
		s += a[e] * b[e];
	return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* Causal multi-head attention of B sequences of T rows.
 * qkv: (B*T, 3*W) rows [q | k | v]; out: (B*T, W); scores: (B*H, T) scratch. */
static void attention(const float *qkv, float *out, float *scores, int B, int T, int W, int H,
                      int nt)
{
	const int hd = W / H;
	const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic)
	for (int bh = 0; bh < B * H; bh++) {
		const int b = bh / H, h = bh % H;
		float *p = scores + (size_t)bh * T;
		for (int i = 0; i < T; i++) {
			const float *q = qkv + ((size_t)b * T + i) * 3 * W + (size_t)h * hd;
			float mx = -INFINITY;
			for (int j = 0; j <= i; j++) {
				const float *k = qkv + ((size_t)b * T + j) * 3 * W + W + (size_t)h * hd;
				p[j] = dot(q, k, hd) * scale;
				mx = p[j] > mx ? p[j] : mx;
			}
			float sum = 0;
			for (int j = 0; j <= i; j++) {
				p[j] = expf(p[j] - mx);
				sum += p[j];
			}
			float *o = out + ((size_t)b * T + i) * W + (size_t)h * hd;
			memset(o, 0, (size_t)hd * sizeof *o);
			for (int j = 0; j <= i; j++) {
				const float *v = qkv + ((size_t)b * T + j) * 3 * W + 2 * W + (size_t)h * hd;
				const float a = p[j] / sum;
				for (int e = 0; e < hd; e++)
					o[e] += a * v[e];
			}
		}
	}
}

int clip_text_forward(const struct clip_text *m, const int32_t *ids, int B, int skip, float *out,
                      int n_threads)
{
	if (m == NULL || ids == NULL || out == NULL || B < 1 || skip < 0 ||
	    skip >= m->cfg.n_layers)
		return -EINVAL;
	const struct clip_text_config *c = &m->cfg;
	const int T = c->n_ctx, W = c->width, F = c->ffn;
	const int64_t R = (int64_t)B * T;
	const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
	for (int64_t r = 0; r < R; r++)
		if (ids[r] < 0 || ids[r] >= c->n_vocab)
			return -EINVAL;

	float *x = NULL, *h = NULL, *big = NULL, *att = NULL, *scores = NULL;
	int rc = -ENOMEM;
	const size_t big_n = (size_t)R * (size_t)(F > 3 * W ? F : 3 * W);
	x = malloc((size_t)R * W * sizeof *x);
	h = malloc((size_t)R * W * sizeof *h);
	att = malloc((size_t)R * W * sizeof *att);
	big = malloc(big_n * sizeof *big);
	scores = malloc((size_t)B * c->n_heads * T * sizeof *scores);
	if (x == NULL || h == NULL || att == NULL || big == NULL || scores == NULL)
		goto cleanup;

	for (int64_t r = 0; r < R; r++) {
		const float *te = m->tok_emb + (size_t)ids[r] * W, *pe = m->pos_emb + (r % T) * W;
		for (int i = 0; i < W; i++)
			x[r * W + i] = te[i] + pe[i];
	}
	for (int l = 0; l < c->n_layers - skip; l++) {
		const struct clip_layer *L = &m->layers[l];
		layer_norm(x, h, L->ln1_w, L->ln1_b, R, W, c->ln_eps, nt);
		rc = cpu_matmul(&L->qkv, h, W, R, big, 3 * W, nt);
		if (rc != 0)
			goto cleanup;
		bias_act(big, L->qkv_b, R, 3 * W, -1, nt);
		attention(big, att, scores, B, T, W, c->n_heads, nt);
		rc = cpu_matmul(&L->o, att, W, R, h, W, nt);
		if (rc != 0)
			goto cleanup;
		bias_act(h, L->o_b, R, W, -1, nt);
		for (int64_t i = 0; i < R * W; i++)
			x[i] += h[i];

		layer_norm(x, h, L->ln2_w, L->ln2_b, R, W, c->ln_eps, nt);
		rc = cpu_matmul(&L->fc1, h, W, R, big, F, nt);
		if (rc != 0)
			goto cleanup;
		bias_act(big, L->fc1_b, R, F, (int)c->act, nt);
		rc = cpu_matmul(&L->fc2, big, F, R, h, W, nt);
		if (rc != 0)
			goto cleanup;
		bias_act(h, L->fc2_b, R, W, -1, nt);
		for (int64_t i = 0; i < R * W; i++)
			x[i] += h[i];
	}
	layer_norm(x, out, m->fln_w, m->fln_b, R, W, c->ln_eps, nt);
	rc = 0;
cleanup:
	free(x);
	free(h);
	free(att);
	free(big);
	free(scores);
	return rc;
}
