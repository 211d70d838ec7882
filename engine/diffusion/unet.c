/* The UNet forward: input checks, scratch, time embedding, down path (whose outputs are
 * written straight into the skip buffers), mid block, ControlNet residuals, up path, output
 * head. See unet.h and unet-internal.h. */
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion_ops.h"
#include "unet-internal.h"

#define MAX_DIM (1 << 16)

struct scratch {
	float *skips;          /* every skip, packed in production order */
	float *pa, *pb;        /* the current activation and the concat / output of up resnets */
	float *small;          /* time embeddings and the resnets' time projections */
	struct unet_exec e;
};

static size_t level_hw(int64_t h, int64_t w, int l)
{
	return (size_t)(h >> l) * (size_t)(w >> l);
}

/* Sizes every buffer for batch n at h x w. @return 0 or -ENOMEM. */
static int scratch_new(const struct unet *u, const struct unet_input *in, struct scratch *s,
                       float **skip)
{
	const struct diff_unet_config *c = &u->cfg;
	const size_t n = (size_t)in->batch, L = (size_t)in->ctx_len;
	size_t maxact = 0, work = 0, skips = 0;
	for (int l = 0; l < c->n_blocks; l++) {
		const size_t hw = level_hw(in->h, in->w, l), T = n * hw, tc = (size_t)u->lvl_tch[l];
		size_t a = n * (size_t)u->lvl_ch[l] * hw;
		maxact = a > maxact ? a : maxact;
		if (tc == 0)
			continue;
		const size_t ff = 8 * tc * (T < UNET_FF_CHUNK ? T : UNET_FF_CHUNK);
		size_t need = 3 * tc * T;
		need = tc * T + 2 * tc * n * L > need ? tc * T + 2 * tc * n * L : need;
		need = ff > need ? ff : need;
		work = need > work ? need : work;
	}
	for (int i = 0; i < u->n_skips; i++)
		skips += n * (size_t)u->skip_ch[i] * level_hw(in->h, in->w, 0) /
		         ((size_t)u->skip_ds[i] * (size_t)u->skip_ds[i]);
	const size_t temb = (size_t)c->time_embed_dim, ch0 = (size_t)c->block_out_channels[0];
	const size_t small = n * (2 * ch0 + 3 * temb + (size_t)u->max_cout);
	memset(s, 0, sizeof *s);
	s->skips = malloc(skips * sizeof(float));
	s->pa = malloc(maxact * sizeof(float));
	s->pb = malloc(maxact * sizeof(float));
	s->e.t1 = malloc(maxact * sizeof(float));
	s->e.t2 = malloc(maxact * sizeof(float));
	s->e.work = malloc((work ? work : 1) * sizeof(float));
	s->small = malloc(small * sizeof(float));
	if (s->skips == NULL || s->pa == NULL || s->pb == NULL || s->e.t1 == NULL ||
	    s->e.t2 == NULL || s->e.work == NULL || s->small == NULL)
		return -ENOMEM;
	float *p = s->skips;
	for (int i = 0; i < u->n_skips; i++) {
		skip[i] = p;
		p += n * (size_t)u->skip_ch[i] * level_hw(in->h, in->w, 0) /
		     ((size_t)u->skip_ds[i] * (size_t)u->skip_ds[i]);
	}
	return 0;
}

static void scratch_free(struct scratch *s)
{
	free(s->skips);
	free(s->pa);
	free(s->pb);
	free(s->e.t1);
	free(s->e.t2);
	free(s->e.work);
	free(s->small);
}

static int check_input(const struct unet *u, const struct unet_input *in, const float *out)
{
	if (u == NULL || in == NULL || out == NULL || in->x == NULL || in->t == NULL ||
	    in->ctx == NULL)
		return -EINVAL;
	const int64_t m = unet_size_multiple(u);
	if (in->batch < 1 || in->batch > MAX_DIM || in->h < 1 || in->w < 1 || in->h > MAX_DIM ||
	    in->w > MAX_DIM || in->h % m != 0 || in->w % m != 0 || in->ctx_len < 1 ||
	    in->ctx_len > MAX_DIM)
		return -EINVAL;
	/* the largest activation must stay addressable: channels x pixels x batch */
	if ((double)in->batch * (double)in->h * (double)in->w * 8.0 * 65536.0 > 9e18)
		return -EINVAL;
	if (u->cfg.time_cond_proj_dim > 0 && in->t_cond == NULL)
		return -EINVAL;
	if (in->down_res != NULL)
		for (int i = 0; i < u->n_skips; i++)
			if (in->down_res[i] == NULL)
				return -EINVAL;
	return 0;
}

/* semb (n, temb) = silu(linear_2(silu(linear_1(proj(t) [+ cond_proj(t_cond)])))): the resnets'
 * input; every time_emb_proj applies the SiLU first, so it is applied once here. */
static int time_embedding(struct unet_exec *e, const struct unet_input *in, float *small)
{
	const struct unet *u = e->u;
	const struct diff_unet_config *c = &u->cfg;
	const int64_t n = e->n, ch0 = c->block_out_channels[0], temb = c->time_embed_dim;
	float *t0 = small, *tc = t0 + n * ch0, *e1 = tc + n * ch0, *e2 = e1 + n * temb;
	float *semb = e2 + n * temb;
	const struct dops_timestep_params tp = { .dim = (int)ch0, .flip_sin_to_cos = c->flip_sin_to_cos,
	                                         .downscale_freq_shift = (float)c->freq_shift,
	                                         .scale = 1.0f, .max_period = 10000.0f };
	int rc = dops_timestep_embedding(in->t, n, &tp, t0);
	if (rc == 0 && u->cond_proj.w != NULL) {
		if ((rc = unet_linear_run(e, &u->cond_proj, in->t_cond, c->time_cond_proj_dim, n, tc,
		                          ch0)) == 0)
			rc = dops_add(t0, tc, n * ch0, e->nt);
	}
	if (rc != 0 || (rc = unet_linear_run(e, &u->time1, t0, ch0, n, e1, temb)) != 0 ||
	    (rc = dops_silu(e1, e1, n * temb, e->nt)) != 0 ||
	    (rc = unet_linear_run(e, &u->time2, e1, temb, n, e2, temb)) != 0 ||
	    (rc = dops_silu(e2, semb, n * temb, e->nt)) != 0)
		return rc;
	e->semb = semb;
	e->tproj = semb + n * temb;
	return 0;
}

/* Down path: conv_in then the blocks, every output written into its skip buffer.
 * On return *h, *w are the last level's size. */
static int down_path(struct unet_exec *e, const float *x, float **skip, int64_t *h, int64_t *w)
{
	const struct unet *u = e->u;
	int rc = unet_conv_run(e, &u->conv_in, x, *h, *w, skip[0]);
	int k = 1;
	for (int i = 0; rc == 0 && i < u->cfg.n_blocks; i++) {
		const struct unet_block *b = &u->down[i];
		for (int j = 0; rc == 0 && j < b->n_res; j++, k++) {
			rc = unet_resnet_forward(e, &b->res[j], skip[k - 1], *h, *w, skip[k]);
			if (rc == 0 && b->attn != NULL)
				rc = unet_transformer_forward(e, &b->attn[j], skip[k], *h, *w);
		}
		if (rc == 0 && b->sample.c != NULL) {
			rc = unet_conv_run(e, &b->sample, skip[k - 1], *h, *w, skip[k]);
			k++;
			*h /= 2;
			*w /= 2;
		}
	}
	return rc;
}

/* Up path from cur (in pa, pb or the last skip); the result is left in *res (pa or pb). */
static int up_path(struct unet_exec *e, float *cur, float *pa, float *pb, float **skip,
                   int64_t h, int64_t w, float **res)
{
	const struct unet *u = e->u;
	const int64_t n = e->n;
	int k = u->n_skips, cc = u->cfg.block_out_channels[u->cfg.n_blocks - 1], rc = 0;
	for (int i = 0; rc == 0 && i < u->cfg.n_blocks; i++) {
		const struct unet_block *b = &u->up[i];
		for (int j = 0; rc == 0 && j < b->n_res; j++) {
			const struct unet_resnet *r = &b->res[j];
			float *cat = cur == pa ? pb : pa, *dst = cat == pa ? pb : pa;
			k--;
			rc = dops_concat_channels(cur, cc, skip[k], u->skip_ch[k], n, h * w, cat);
			if (rc == 0)
				rc = unet_resnet_forward(e, r, cat, h, w, dst);
			if (rc == 0 && b->attn != NULL)
				rc = unet_transformer_forward(e, &b->attn[j], dst, h, w);
			cur = dst;
			cc = r->cout;
		}
		if (rc == 0 && b->sample.c != NULL) {
			rc = dops_upsample_nearest2x(cur, e->t1, n * cc, h, w, e->nt);
			h *= 2;
			w *= 2;
			if (rc == 0)
				rc = unet_conv_run(e, &b->sample, e->t1, h, w, cur);
		}
	}
	*res = cur;
	return rc;
}

static int forward(const struct unet *u, const struct unet_input *in, float *out,
                   struct scratch *s, float **skip)
{
	const struct diff_unet_config *c = &u->cfg;
	struct unet_exec *e = &s->e;
	const int64_t n = in->batch, hw0 = in->h * in->w;
	const int nb = c->n_blocks;
	int64_t h = in->h, w = in->w;
	int rc = time_embedding(e, in, s->small);
	if (rc != 0)
		return rc;

	const float *x = in->x;
	if (c->center_input_sample) {
		const int64_t count = n * c->in_channels * hw0;
		const int nt = e->nt;
		float *xc = s->pa;
#pragma omp parallel for num_threads(nt) if (nt > 1 && count >= 65536) schedule(static)
		for (int64_t i = 0; i < count; i++)
			xc[i] = 2.0f * in->x[i] - 1.0f;
		x = xc;
	}
	if ((rc = down_path(e, x, skip, &h, &w)) != 0)
		return rc;

	const int cm = c->block_out_channels[nb - 1];
	const int64_t mid_count = n * cm * h * w;
	float *cur = skip[u->n_skips - 1];
	if (c->has_mid_block) {
		if ((rc = unet_resnet_forward(e, &u->mid_res[0], cur, h, w, s->pa)) != 0 ||
		    (rc = unet_transformer_forward(e, &u->mid_attn, s->pa, h, w)) != 0 ||
		    (rc = unet_resnet_forward(e, &u->mid_res[1], s->pa, h, w, s->pb)) != 0)
			return rc;
		cur = s->pb;
	} else if (in->mid_res != NULL || in->down_res != NULL) {
		/* the residuals change the skip and the mid output differently */
		memcpy(s->pa, cur, (size_t)mid_count * sizeof *cur);
		cur = s->pa;
	}
	if (in->mid_res != NULL && (rc = dops_add(cur, in->mid_res, mid_count, e->nt)) != 0)
		return rc;
	for (int i = 0; in->down_res != NULL && i < u->n_skips; i++) {
		const int64_t ds = u->skip_ds[i];
		rc = dops_add(skip[i], in->down_res[i], n * u->skip_ch[i] * hw0 / (ds * ds), e->nt);
		if (rc != 0)
			return rc;
	}

	float *res;
	if ((rc = up_path(e, cur, s->pa, s->pb, skip, h, w, &res)) != 0)
		return rc;
	const int64_t ch0 = c->block_out_channels[0];
	if ((rc = dops_group_norm(res, e->t1, n, ch0, hw0, c->norm_num_groups, u->norm_out_w,
	                          u->norm_out_b, c->norm_eps, true, e->nt)) != 0)
		return rc;
	return unet_conv_run(e, &u->conv_out, e->t1, in->h, in->w, out);
}

int unet_forward_traced(const struct unet *u, const struct unet_input *in, float *out,
                        int n_threads, unet_op_fn fn, void *arg)
{
	int rc = check_input(u, in, out);
	if (rc != 0)
		return rc;
	float **skip = calloc((size_t)u->n_skips, sizeof *skip);
	struct scratch s;
	memset(&s, 0, sizeof s);
	if (skip == NULL)
		return -ENOMEM;
	rc = scratch_new(u, in, &s, skip);
	if (rc == 0) {
		const int old = omp_get_max_threads();
		const int nt = n_threads > 0 ? n_threads : old;
		if (nt != old)
			omp_set_num_threads(nt); /* conv2d_run uses the calling thread's team size */
		s.e.u = u;
		s.e.nt = nt;
		s.e.n = in->batch;
		s.e.ctx = in->ctx;
		s.e.ctx_len = in->ctx_len;
		s.e.trace = fn;
		s.e.trace_arg = arg;
		rc = forward(u, in, out, &s, skip);
		if (nt != old)
			omp_set_num_threads(old);
	}
	scratch_free(&s);
	free(skip);
	return rc;
}

int unet_forward(const struct unet *u, const struct unet_input *in, float *out, int n_threads)
{
	return unet_forward_traced(u, in, out, n_threads, NULL, NULL);
}
