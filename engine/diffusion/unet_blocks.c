/* The UNet's blocks on one forward's scratch: convolutions and Linear layers (traced for the
 * benchmark), ResnetBlock2D and Transformer2DModel. See unet-internal.h. */
#include <errno.h>
#include <string.h>

#include "diffusion_ops.h"
#include "unet-internal.h"

/* ---- row helpers (no operator fuses these) ------------------------------------------ */

/* y[r] += b over rows of n floats (row stride ldy). */
static void bias_rows(float *y, int64_t ldy, const float *b, int64_t rows, int64_t n, int nt)
{
#pragma omp parallel for num_threads(nt) if (nt > 1 && rows * n >= 32768) schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		float *yr = y + r * ldy;
#pragma omp simd
		for (int64_t i = 0; i < n; i++)
			yr[i] += b[i];
	}
}

/* res[r] += t[r] + b (t rows packed, n floats). */
static void residual_rows(float *res, int64_t ldr, const float *t, const float *b, int64_t rows,
                          int64_t n, int nt)
{
#pragma omp parallel for num_threads(nt) if (nt > 1 && rows * n >= 32768) schedule(static)
	for (int64_t r = 0; r < rows; r++) {
		float *rr = res + r * ldr;
		const float *tr = t + r * n;
#pragma omp simd
		for (int64_t i = 0; i < n; i++)
			rr[i] += tr[i] + b[i];
	}
}

/* ---- traced kernels ----------------------------------------------------------------- */

int unet_conv_run(struct unet_exec *e, const struct unet_conv *c, const float *x, int64_t h,
                  int64_t w, float *y)
{
	if (e->trace != NULL) {
		const struct conv2d_desc *d = &c->d;
		struct unet_op op = { .kind = UNET_OP_CONV, .in_ch = d->in_ch, .out_ch = d->out_ch,
		                      .kh = d->kh, .kw = d->kw, .stride = d->stride_h,
		                      .pad_t = d->pad_t, .pad_l = d->pad_l, .pad_b = d->pad_b,
		                      .pad_r = d->pad_r, .n = e->n, .h = h, .w = w };
		e->trace(&op, e->trace_arg);
	}
	return conv2d_run(c->c, x, e->n, h, w, y);
}

static int matmul(struct unet_exec *e, const struct unet_linear *l, const float *x, int64_t ldx,
                  int64_t rows, float *y, int64_t ldy)
{
	if (e->trace != NULL) {
		struct unet_op op = { .kind = UNET_OP_MATMUL, .rows = l->out, .cols = l->in,
		                      .tokens = rows };
		e->trace(&op, e->trace_arg);
	}
	return cpu_matmul(&l->cw, x, ldx, rows, y, ldy, e->nt);
}

int unet_linear_run(struct unet_exec *e, const struct unet_linear *l, const float *x,
                    int64_t ldx, int64_t rows, float *y, int64_t ldy)
{
	int rc = matmul(e, l, x, ldx, rows, y, ldy);
	if (rc == 0 && l->b != NULL)
		bias_rows(y, ldy, l->b, rows, l->out, e->nt);
	return rc;
}

int unet_linear_residual(struct unet_exec *e, const struct unet_linear *l, const float *x,
                         int64_t ldx, int64_t rows, float *tmp, float *res, int64_t ldr)
{
	int rc = matmul(e, l, x, ldx, rows, tmp, l->out);
	if (rc == 0)
		residual_rows(res, ldr, tmp, l->b, rows, l->out, e->nt);
	return rc;
}

/* ---- ResnetBlock2D ------------------------------------------------------------------ */

/* h = conv1(silu(gn1(x))) + time_emb_proj(silu(emb)); h = conv2(silu(gn2(h)));
 * y = (shortcut(x) + h) / out_scale. */
int unet_resnet_forward(struct unet_exec *e, const struct unet_resnet *r, const float *x,
                        int64_t h, int64_t w, float *y)
{
	const struct diff_unet_config *c = &e->u->cfg;
	const int64_t n = e->n, hw = h * w;
	const int g = c->norm_num_groups;
	int rc;
	if ((rc = dops_group_norm(x, e->t1, n, r->cin, hw, g, r->n1_w, r->n1_b, c->norm_eps, true,
	                          e->nt)) != 0 ||
	    (rc = unet_conv_run(e, &r->conv1, e->t1, h, w, e->t2)) != 0 ||
	    (rc = unet_linear_run(e, &r->temb, e->semb, c->time_embed_dim, n, e->tproj,
	                          r->cout)) != 0 ||
	    (rc = dops_add_channel(e->t2, e->tproj, r->cout, n, r->cout, hw, e->nt)) != 0 ||
	    (rc = dops_group_norm(e->t2, e->t2, n, r->cout, hw, g, r->n2_w, r->n2_b, c->norm_eps,
	                          true, e->nt)) != 0 ||
	    (rc = unet_conv_run(e, &r->conv2, e->t2, h, w, y)) != 0)
		return rc;
	const int64_t count = n * r->cout * hw;
	if (r->shortcut.c != NULL) {
		if ((rc = unet_conv_run(e, &r->shortcut, x, h, w, e->t1)) != 0)
			return rc;
		rc = dops_add(y, e->t1, count, e->nt);
	} else {
		rc = dops_add(y, x, count, e->nt);
	}
	if (rc == 0 && r->out_scale != 1.0f) {
		const float s = 1.0f / r->out_scale;
		const int nt = e->nt;
#pragma omp parallel for num_threads(nt) if (nt > 1 && count >= 65536) schedule(static)
		for (int64_t i = 0; i < count; i++)
			y[i] *= s;
	}
	return rc;
}

/* ---- Transformer2DModel --------------------------------------------------------------- */

static int attention(struct unet_exec *e, const struct dops_attn *a)
{
	if (e->trace != NULL) {
		struct unet_op op = { .kind = UNET_OP_ATTENTION, .n = a->batch, .lq = a->lq,
		                      .lk = a->lk, .heads = a->n_heads, .head_dim = a->head_dim };
		e->trace(&op, e->trace_arg);
	}
	return dops_attention(a, e->nt);
}

/* One BasicTransformerBlock on the token rows tok (T = n * hw, c), with nrm (T, c) and
 * e->work as scratch. */
static int tlayer_forward(struct unet_exec *e, const struct unet_transformer *t,
                          const struct unet_tlayer *y, float *tok, float *nrm, int64_t hw)
{
	const int64_t n = e->n, T = n * hw, c = t->c, L = e->ctx_len;
	const int hd = t->c / t->heads;
	const int cross = e->u->cfg.cross_attention_dim;
	float *wk = e->work;
	int rc;

	/* self-attention: q | k | v rows of 3c */
	if ((rc = dops_layer_norm(tok, c, nrm, c, T, c, y->ln1_w, y->ln1_b, UNET_LAYER_NORM_EPS,
	                          e->nt)) != 0 ||
	    (rc = unet_linear_run(e, &y->qkv, nrm, c, T, wk, 3 * c)) != 0)
		return rc;
	struct dops_attn a1 = { .q = wk, .ldq = 3 * c, .k = wk + c, .ldk = 3 * c, .v = wk + 2 * c,
	                        .ldv = 3 * c, .out = nrm, .ldo = c, .batch = n, .lq = hw, .lk = hw,
	                        .n_heads = t->heads, .head_dim = hd };
	if ((rc = attention(e, &a1)) != 0 ||
	    (rc = unet_linear_residual(e, &y->o1, nrm, c, T, wk, tok, c)) != 0)
		return rc;

	/* cross-attention over the text tokens: q (T, c), then k | v (n * L, 2c) */
	float *kv = wk + T * c;
	if ((rc = dops_layer_norm(tok, c, nrm, c, T, c, y->ln2_w, y->ln2_b, UNET_LAYER_NORM_EPS,
	                          e->nt)) != 0 ||
	    (rc = unet_linear_run(e, &y->q2, nrm, c, T, wk, c)) != 0 ||
	    (rc = unet_linear_run(e, &y->kv2, e->ctx, cross, n * L, kv, 2 * c)) != 0)
		return rc;
	struct dops_attn a2 = { .q = wk, .ldq = c, .k = kv, .ldk = 2 * c, .v = kv + c, .ldv = 2 * c,
	                        .out = nrm, .ldo = c, .batch = n, .lq = hw, .lk = L,
	                        .n_heads = t->heads, .head_dim = hd };
	if ((rc = attention(e, &a2)) != 0 ||
	    (rc = unet_linear_residual(e, &y->o2, nrm, c, T, wk, tok, c)) != 0)
		return rc;

	/* GEGLU feed-forward in row chunks: (rows, 8c) -> (rows, 4c) in place -> (rows, c) into
	 * the chunk's own (consumed) normed rows, then added to tok */
	if ((rc = dops_layer_norm(tok, c, nrm, c, T, c, y->ln3_w, y->ln3_b, UNET_LAYER_NORM_EPS,
	                          e->nt)) != 0)
		return rc;
	for (int64_t r0 = 0; r0 < T; r0 += UNET_FF_CHUNK) {
		const int64_t rows = T - r0 < UNET_FF_CHUNK ? T - r0 : UNET_FF_CHUNK;
		float *nr = nrm + r0 * c;
		if ((rc = unet_linear_run(e, &y->ff1, nr, c, rows, wk, 8 * c)) != 0 ||
		    (rc = dops_geglu(wk, 8 * c, wk, 8 * c, rows, 4 * c, e->nt)) != 0 ||
		    (rc = unet_linear_residual(e, &y->ff2, wk, 8 * c, rows, nr, tok + r0 * c, c)) != 0)
			return rc;
	}
	return 0;
}

int unet_transformer_forward(struct unet_exec *e, const struct unet_transformer *t, float *x,
                             int64_t h, int64_t w)
{
	const int64_t n = e->n, hw = h * w, c = t->c, T = n * hw;
	float *t1 = e->t1, *t2 = e->t2;
	int rc;
	if ((rc = dops_group_norm(x, t1, n, c, hw, e->u->cfg.norm_num_groups, t->gn_w, t->gn_b,
	                          UNET_TRANSFORMER_GN_EPS, false, e->nt)) != 0)
		return rc;
	/* token rows (n, hw, c) in t1 */
	if (t->linear_proj) {
		if ((rc = dops_transpose(t1, t2, n, c, hw, e->nt)) != 0 ||
		    (rc = unet_linear_run(e, &t->proj_in, t2, c, T, t1, c)) != 0)
			return rc;
	} else {
		if ((rc = unet_conv_run(e, &t->proj_in_conv, t1, h, w, t2)) != 0 ||
		    (rc = dops_transpose(t2, t1, n, c, hw, e->nt)) != 0)
			return rc;
	}
	for (int k = 0; k < t->n_layers; k++)
		if ((rc = tlayer_forward(e, t, &t->layers[k], t1, t2, hw)) != 0)
			return rc;
	/* back to NCHW, projected, plus the residual */
	if (t->linear_proj) {
		if ((rc = unet_linear_run(e, &t->proj_out, t1, c, T, e->work, c)) != 0 ||
		    (rc = dops_transpose(e->work, t2, n, hw, c, e->nt)) != 0)
			return rc;
		return dops_add(x, t2, n * c * hw, e->nt);
	}
	if ((rc = dops_transpose(t1, t2, n, hw, c, e->nt)) != 0 ||
	    (rc = unet_conv_run(e, &t->proj_out_conv, t2, h, w, t1)) != 0)
		return rc;
	return dops_add(x, t1, n * c * hw, e->nt);
}
