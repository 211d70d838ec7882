/* UNet construction: config checks, weights from the safetensors file to f32 Linear layers
 * and conv2d objects, and the per-level sizes of a forward's scratch. See unet.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "unet-internal.h"

struct loader {
	struct unet *u;
	const struct st_file *f;
	char *err;
	size_t errlen;
};

static int lerr(struct loader *L, int rc, const char *fmt, ...)
{
	va_list ap;
	if (L->err != NULL && L->errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(L->err, L->errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- config ------------------------------------------------------------------------ */

static int check_config(const struct diff_unet_config *c, struct loader *L)
{
	const int n = c->n_blocks;
	if (n < 1 || n > DIFF_MAX_BLOCKS)
		return lerr(L, -EINVAL, "unet: %d blocks (1..%d)", n, DIFF_MAX_BLOCKS);
	if (c->in_channels < 1 || c->out_channels < 1 || c->layers_per_block < 1 ||
	    c->layers_per_block > 64 || c->cross_attention_dim < 1 || c->norm_num_groups < 1 ||
	    !(c->norm_eps > 0) || c->time_embed_dim < 1 || c->time_cond_proj_dim < 0 ||
	    c->downsample_padding < 0 || c->freq_shift < 0 || !(c->mid_block_scale_factor > 0))
		return lerr(L, -EINVAL, "unet: bad config (in %d, out %d, layers_per_block %d, cross "
		            "%d, groups %d, time_embed_dim %d)", c->in_channels, c->out_channels,
		            c->layers_per_block, c->cross_attention_dim, c->norm_num_groups,
		            c->time_embed_dim);
	if (c->block_out_channels[0] < 2 || c->block_out_channels[0] / 2 == c->freq_shift)
		return lerr(L, -EINVAL, "unet: block_out_channels[0] = %d with freq_shift %d gives no "
		            "timestep embedding", c->block_out_channels[0], c->freq_shift);
	for (int i = 0; i < n; i++) {
		const int ch = c->block_out_channels[i];
		if (ch < 1 || ch % c->norm_num_groups != 0)
			return lerr(L, -EINVAL, "unet: block_out_channels[%d] = %d is not a multiple of "
			            "norm_num_groups %d", i, ch, c->norm_num_groups);
		if (c->attention_heads[i] < 1 || ch % c->attention_heads[i] != 0)
			return lerr(L, -EINVAL, "unet: %d attention heads do not divide "
			            "block_out_channels[%d] = %d", c->attention_heads[i], i, ch);
		if (c->transformer_layers[i] < 1 || c->transformer_layers[i] > 64)
			return lerr(L, -EINVAL, "unet: transformer_layers_per_block[%d] = %d", i,
			            c->transformer_layers[i]);
		if (c->down_blocks[i] != DIFF_BLOCK_DOWN && c->down_blocks[i] != DIFF_BLOCK_CROSS_ATTN_DOWN)
			return lerr(L, -ENOTSUP, "unet: down block %d is %s", i,
			            diff_block_name(c->down_blocks[i]));
		if (c->up_blocks[i] != DIFF_BLOCK_UP && c->up_blocks[i] != DIFF_BLOCK_CROSS_ATTN_UP)
			return lerr(L, -ENOTSUP, "unet: up block %d is %s", i,
			            diff_block_name(c->up_blocks[i]));
	}
	if (c->downsample_padding > 1)
		return lerr(L, -ENOTSUP, "unet: downsample_padding %d (0 or 1: the latent halves)",
		            c->downsample_padding);
	if (c->in_channels > (1 << 16) || c->out_channels > (1 << 16))
		return lerr(L, -EINVAL, "unet: too many channels");
	return 0;
}

/* ---- weights ----------------------------------------------------------------------- */

static float *alloc_f32(struct loader *L, size_t n)
{
	struct unet *u = L->u;
	if (u->n_allocs == u->cap_allocs) {
		int cap = u->cap_allocs ? 2 * u->cap_allocs : 256;
		void **a = realloc(u->allocs, (size_t)cap * sizeof *a);
		if (a == NULL)
			return NULL;
		u->allocs = a;
		u->cap_allocs = cap;
	}
	float *p = malloc((n ? n : 1) * sizeof *p);
	if (p != NULL)
		u->allocs[u->n_allocs++] = p;
	return p;
}

/* The tensor prefix.suffix with n elements. diff_unet_check() has checked names and shapes
 * against the config already; this guards the element count again. */
static int find(struct loader *L, const char *prefix, const char *suffix, uint64_t n,
                const struct st_tensor **out)
{
	char name[256];
	snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", suffix);
	const struct st_tensor *t = st_get(L->f, name);
	if (t == NULL)
		return lerr(L, -EBADMSG, "%s: tensor '%s' is missing", st_path(L->f), name);
	if (t->n_elements != n)
		return lerr(L, -EBADMSG, "%s: tensor '%s' has %llu elements, the config implies %llu",
		            st_path(L->f), name, (unsigned long long)t->n_elements,
		            (unsigned long long)n);
	*out = t;
	return 0;
}

/* Converts prefix.suffix (n elements) to f32 at dst. */
static int load_into(struct loader *L, const char *prefix, const char *suffix, float *dst,
                     uint64_t n)
{
	const struct st_tensor *t = NULL;
	int rc = find(L, prefix, suffix, n, &t);
	if (rc == 0 && st_tensor_to_f32(t, dst, n) != 0)
		rc = lerr(L, -EBADMSG, "%s: tensor '%s.%s' has dtype %s", st_path(L->f), prefix,
		          suffix, t->dtype_name);
	return rc;
}

static int load(struct loader *L, const char *prefix, const char *suffix, uint64_t n,
                float **out)
{
	*out = alloc_f32(L, n);
	if (*out == NULL)
		return -ENOMEM;
	return load_into(L, prefix, suffix, *out, n);
}

/* Group/layer norm prefix.what.{weight,bias} of c channels. */
static int load_norm(struct loader *L, const char *prefix, const char *what, int c, float **w,
                     float **b)
{
	char s[96];
	snprintf(s, sizeof s, "%s.weight", what);
	int rc = load(L, prefix, s, (uint64_t)c, w);
	if (rc == 0) {
		snprintf(s, sizeof s, "%s.bias", what);
		rc = load(L, prefix, s, (uint64_t)c, b);
	}
	return rc;
}

/* A Linear layer from n_parts diffusers weights prefix.names[k].weight, each (out, in),
 * stacked along out; bias prefix.names[0].bias when bias (n_parts must be 1). */
static int load_linear(struct loader *L, const char *prefix, const char *const *names,
                       int n_parts, int out, int in, bool bias, struct unet_linear *l)
{
	char s[96];
	const size_t part = (size_t)out * (size_t)in;
	l->in = in;
	l->out = out * n_parts;
	l->w = alloc_f32(L, part * (size_t)n_parts);
	if (l->w == NULL)
		return -ENOMEM;
	for (int k = 0; k < n_parts; k++) {
		snprintf(s, sizeof s, "%s.weight", names[k]);
		int rc = load_into(L, prefix, s, l->w + part * (size_t)k, part);
		if (rc != 0)
			return rc;
	}
	if (bias) {
		snprintf(s, sizeof s, "%s.bias", names[0]);
		int rc = load(L, prefix, s, (uint64_t)out, &l->b);
		if (rc != 0)
			return rc;
	}
	if (cpu_weight_init(&l->cw, DTYPE_F32, l->w, in, l->out) != 0)
		return lerr(L, -EINVAL, "unet: %s: bad linear shape", prefix);
	return 0;
}

static int load_linear1(struct loader *L, const char *prefix, const char *name, int out, int in,
                        bool bias, struct unet_linear *l)
{
	const char *names[1] = { name };
	return load_linear(L, prefix, names, 1, out, in, bias, l);
}

/* True when the tensor's data can be handed to conv2d_new as it is. */
static bool usable_in_place(const struct st_tensor *t, enum dtype *dt)
{
	if (st_tensor_dtype(t, dt) != 0)
		return false;
	return ((uintptr_t)t->data % (*dt == DTYPE_F32 ? 4 : 2)) == 0;
}

/* conv2d of prefix.what.{weight,bias}. F32/F16/BF16 data is passed in place (conv2d_new
 * converts and reorders it once); other cases go through an f32 copy. */
static int load_conv(struct loader *L, const char *prefix, const char *what, int in, int out,
                     int k, int stride, int pad_t, int pad_l, int pad_b, int pad_r,
                     struct unet_conv *c)
{
	char s[96];
	const struct st_tensor *tw, *tb;
	const uint64_t nw = (uint64_t)out * (uint64_t)in * (uint64_t)k * (uint64_t)k;
	snprintf(s, sizeof s, "%s.weight", what);
	int rc = find(L, prefix, s, nw, &tw);
	if (rc != 0)
		return rc;
	snprintf(s, sizeof s, "%s.bias", what);
	if ((rc = find(L, prefix, s, (uint64_t)out, &tb)) != 0)
		return rc;
	c->d = (struct conv2d_desc){ .in_ch = in, .out_ch = out, .kh = k, .kw = k,
	                             .stride_h = stride, .stride_w = stride, .pad_t = pad_t,
	                             .pad_l = pad_l, .pad_b = pad_b, .pad_r = pad_r };
	enum dtype dw, db;
	if (usable_in_place(tw, &dw) && usable_in_place(tb, &db) && dw == db) {
		rc = conv2d_new(&c->d, dw, tw->data, tb->data, 0, &c->c);
	} else {
		float *w = malloc(nw * sizeof *w), *b = malloc((size_t)out * sizeof *b);
		rc = -ENOMEM;
		if (w != NULL && b != NULL) {
			rc = -EBADMSG;
			if (st_tensor_to_f32(tw, w, nw) == 0 && st_tensor_to_f32(tb, b, (uint64_t)out) == 0)
				rc = conv2d_new(&c->d, DTYPE_F32, w, b, 0, &c->c);
		}
		free(w);
		free(b);
	}
	if (rc != 0)
		return lerr(L, rc, "unet: %s.%s: convolution %d -> %d, %dx%d: error %d", prefix, what,
		            in, out, k, k, rc);
	return 0;
}

static int load_conv3(struct loader *L, const char *prefix, const char *what, int in, int out,
                      struct unet_conv *c)
{
	return load_conv(L, prefix, what, in, out, 3, 1, 1, 1, 1, 1, c);
}

static int load_resnet(struct loader *L, const char *p, int cin, int cout, float scale,
                       struct unet_resnet *r)
{
	const int temb = L->u->cfg.time_embed_dim;
	int rc;
	r->cin = cin;
	r->cout = cout;
	r->out_scale = scale;
	if ((rc = load_norm(L, p, "norm1", cin, &r->n1_w, &r->n1_b)) != 0 ||
	    (rc = load_conv3(L, p, "conv1", cin, cout, &r->conv1)) != 0 ||
	    (rc = load_linear1(L, p, "time_emb_proj", cout, temb, true, &r->temb)) != 0 ||
	    (rc = load_norm(L, p, "norm2", cout, &r->n2_w, &r->n2_b)) != 0 ||
	    (rc = load_conv3(L, p, "conv2", cout, cout, &r->conv2)) != 0)
		return rc;
	if (cin != cout)
		rc = load_conv(L, p, "conv_shortcut", cin, cout, 1, 1, 0, 0, 0, 0, &r->shortcut);
	return rc;
}

static int load_transformer(struct loader *L, const char *p, int c, int heads, int layers,
                            struct unet_transformer *t)
{
	static const char *const qkv1[3] = { "attn1.to_q", "attn1.to_k", "attn1.to_v" };
	static const char *const kv2[2] = { "attn2.to_k", "attn2.to_v" };
	const int cross = L->u->cfg.cross_attention_dim;
	char q[224];
	int rc;
	t->c = c;
	t->heads = heads;
	t->n_layers = layers;
	t->linear_proj = L->u->cfg.use_linear_projection;
	t->layers = calloc((size_t)layers, sizeof *t->layers);
	if (t->layers == NULL)
		return -ENOMEM;
	if ((rc = load_norm(L, p, "norm", c, &t->gn_w, &t->gn_b)) != 0)
		return rc;
	if (t->linear_proj)
		rc = load_linear1(L, p, "proj_in", c, c, true, &t->proj_in);
	else
		rc = load_conv(L, p, "proj_in", c, c, 1, 1, 0, 0, 0, 0, &t->proj_in_conv);
	if (rc != 0)
		return rc;
	for (int k = 0; k < layers; k++) {
		struct unet_tlayer *y = &t->layers[k];
		snprintf(q, sizeof q, "%s.transformer_blocks.%d", p, k);
		if ((rc = load_norm(L, q, "norm1", c, &y->ln1_w, &y->ln1_b)) != 0 ||
		    (rc = load_linear(L, q, qkv1, 3, c, c, false, &y->qkv)) != 0 ||
		    (rc = load_linear1(L, q, "attn1.to_out.0", c, c, true, &y->o1)) != 0 ||
		    (rc = load_norm(L, q, "norm2", c, &y->ln2_w, &y->ln2_b)) != 0 ||
		    (rc = load_linear1(L, q, "attn2.to_q", c, c, false, &y->q2)) != 0 ||
		    (rc = load_linear(L, q, kv2, 2, c, cross, false, &y->kv2)) != 0 ||
		    (rc = load_linear1(L, q, "attn2.to_out.0", c, c, true, &y->o2)) != 0 ||
		    (rc = load_norm(L, q, "norm3", c, &y->ln3_w, &y->ln3_b)) != 0 ||
		    (rc = load_linear1(L, q, "ff.net.0.proj", 8 * c, c, true, &y->ff1)) != 0 ||
		    (rc = load_linear1(L, q, "ff.net.2", c, 4 * c, true, &y->ff2)) != 0)
			return rc;
	}
	if (t->linear_proj)
		return load_linear1(L, p, "proj_out", c, c, true, &t->proj_out);
	return load_conv(L, p, "proj_out", c, c, 1, 1, 0, 0, 0, 0, &t->proj_out_conv);
}

static int max_i(int a, int b)
{
	return a > b ? a : b;
}

/* Builds every layer in diffusers' order and records the channel counts per level. */
static int build(struct loader *L)
{
	struct unet *u = L->u;
	const struct diff_unet_config *c = &u->cfg;
	const int n = c->n_blocks, *ch = c->block_out_channels, lpb = c->layers_per_block;
	char p[160];
	int rc;

	u->lvl_ch[0] = max_i(c->in_channels, ch[0]);
	if ((rc = load_conv3(L, "", "conv_in", c->in_channels, ch[0], &u->conv_in)) != 0 ||
	    (rc = load_linear1(L, "time_embedding", "linear_1", c->time_embed_dim, ch[0], true,
	                       &u->time1)) != 0 ||
	    (rc = load_linear1(L, "time_embedding", "linear_2", c->time_embed_dim,
	                       c->time_embed_dim, true, &u->time2)) != 0)
		return rc;
	if (c->time_cond_proj_dim > 0 &&
	    (rc = load_linear1(L, "time_embedding", "cond_proj", ch[0], c->time_cond_proj_dim, false,
	                       &u->cond_proj)) != 0)
		return rc;

	/* skip 0 is conv_in's output */
	u->n_skips = 0;
	u->skip_ch[u->n_skips] = ch[0];
	u->skip_ds[u->n_skips++] = 1;
	int out = ch[0];
	for (int i = 0; i < n; i++) {
		struct unet_block *b = &u->down[i];
		const int in = out;
		out = ch[i];
		b->type = c->down_blocks[i];
		b->n_res = lpb;
		b->cout = out;
		b->res = calloc((size_t)lpb, sizeof *b->res);
		if (b->type == DIFF_BLOCK_CROSS_ATTN_DOWN)
			b->attn = calloc((size_t)lpb, sizeof *b->attn);
		if (b->res == NULL || (b->type == DIFF_BLOCK_CROSS_ATTN_DOWN && b->attn == NULL))
			return -ENOMEM;
		u->lvl_ch[i] = max_i(u->lvl_ch[i], max_i(in, out));
		for (int j = 0; j < lpb; j++) {
			snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
			if ((rc = load_resnet(L, p, j == 0 ? in : out, out, 1.0f, &b->res[j])) != 0)
				return rc;
			u->max_cout = max_i(u->max_cout, out);
			if (b->attn != NULL) {
				snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
				if ((rc = load_transformer(L, p, out, c->attention_heads[i],
				                           c->transformer_layers[i], &b->attn[j])) != 0)
					return rc;
				u->lvl_tch[i] = max_i(u->lvl_tch[i], out);
			}
			u->skip_ch[u->n_skips] = out;
			u->skip_ds[u->n_skips++] = 1 << i;
		}
		if (i < n - 1) {
			/* padding 0 is diffusers' asymmetric (0, 1, 0, 1) */
			const int pd = c->downsample_padding;
			snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0", i);
			rc = load_conv(L, p, "conv", out, out, 3, 2, pd, pd, pd ? pd : 1, pd ? pd : 1,
			               &b->sample);
			if (rc != 0)
				return rc;
			u->lvl_ch[i + 1] = max_i(u->lvl_ch[i + 1], out);
			u->skip_ch[u->n_skips] = out;
			u->skip_ds[u->n_skips++] = 1 << (i + 1);
		}
	}
	if (c->has_mid_block) {
		const int cm = ch[n - 1];
		const float s = c->mid_block_scale_factor;
		if ((rc = load_resnet(L, "mid_block.resnets.0", cm, cm, s, &u->mid_res[0])) != 0 ||
		    (rc = load_transformer(L, "mid_block.attentions.0", cm, c->attention_heads[n - 1],
		                           c->transformer_layers[n - 1], &u->mid_attn)) != 0 ||
		    (rc = load_resnet(L, "mid_block.resnets.1", cm, cm, s, &u->mid_res[1])) != 0)
			return rc;
		u->lvl_tch[n - 1] = max_i(u->lvl_tch[n - 1], cm);
		u->max_cout = max_i(u->max_cout, cm);
	}
	out = ch[n - 1];
	for (int i = 0; i < n; i++) {
		struct unet_block *b = &u->up[i];
		const int lvl = n - 1 - i, prev = out;
		out = ch[lvl];
		const int in = ch[lvl > 0 ? lvl - 1 : 0];
		b->type = c->up_blocks[i];
		b->n_res = lpb + 1;
		b->cout = out;
		b->res = calloc((size_t)b->n_res, sizeof *b->res);
		if (b->type == DIFF_BLOCK_CROSS_ATTN_UP)
			b->attn = calloc((size_t)b->n_res, sizeof *b->attn);
		if (b->res == NULL || (b->type == DIFF_BLOCK_CROSS_ATTN_UP && b->attn == NULL))
			return -ENOMEM;
		for (int j = 0; j < b->n_res; j++) {
			const int skip = j == lpb ? in : out, rin = j == 0 ? prev : out;
			snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
			if ((rc = load_resnet(L, p, rin + skip, out, 1.0f, &b->res[j])) != 0)
				return rc;
			u->lvl_ch[lvl] = max_i(u->lvl_ch[lvl], max_i(rin + skip, out));
			u->max_cout = max_i(u->max_cout, out);
			if (b->attn != NULL) {
				snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
				if ((rc = load_transformer(L, p, out, c->attention_heads[lvl],
				                           c->transformer_layers[lvl], &b->attn[j])) != 0)
					return rc;
				u->lvl_tch[lvl] = max_i(u->lvl_tch[lvl], out);
			}
		}
		if (i < n - 1) {
			snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0", i);
			if ((rc = load_conv3(L, p, "conv", out, out, &b->sample)) != 0)
				return rc;
			u->lvl_ch[lvl - 1] = max_i(u->lvl_ch[lvl - 1], out);
		}
	}
	u->lvl_ch[0] = max_i(u->lvl_ch[0], ch[0]);
	if ((rc = load_norm(L, "", "conv_norm_out", ch[0], &u->norm_out_w, &u->norm_out_b)) != 0)
		return rc;
	return load_conv3(L, "", "conv_out", ch[0], c->out_channels, &u->conv_out);
}

int unet_new(const struct diff_unet_config *c, const struct st_file *f, struct unet **out,
             char *err, size_t errlen)
{
	struct loader L = { .f = f, .err = err, .errlen = errlen };
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (c == NULL || f == NULL)
		return lerr(&L, -EINVAL, "unet: no config or no weights");
	int rc = check_config(c, &L);
	if (rc != 0)
		return rc;
	/* every tensor with its shape and dtype, named in the message when not */
	if ((rc = diff_unet_check(f, c, err, errlen)) != 0)
		return rc;
	L.u = calloc(1, sizeof *L.u);
	if (L.u == NULL)
		return lerr(&L, -ENOMEM, "unet: out of memory");
	L.u->cfg = *c;
	rc = build(&L);
	if (rc != 0) {
		if (rc == -ENOMEM)
			lerr(&L, rc, "unet: out of memory");
		unet_free(L.u);
		return rc;
	}
	*out = L.u;
	return 0;
}

/* ---- freeing ----------------------------------------------------------------------- */

static void free_resnet(struct unet_resnet *r)
{
	conv2d_free(r->conv1.c);
	conv2d_free(r->conv2.c);
	conv2d_free(r->shortcut.c);
}

static void free_transformer(struct unet_transformer *t)
{
	conv2d_free(t->proj_in_conv.c);
	conv2d_free(t->proj_out_conv.c);
	free(t->layers);
}

static void free_block(struct unet_block *b)
{
	for (int j = 0; j < b->n_res && b->res != NULL; j++)
		free_resnet(&b->res[j]);
	for (int j = 0; j < b->n_res && b->attn != NULL; j++)
		free_transformer(&b->attn[j]);
	conv2d_free(b->sample.c);
	free(b->res);
	free(b->attn);
}

void unet_free(struct unet *u)
{
	if (u == NULL)
		return;
	conv2d_free(u->conv_in.c);
	conv2d_free(u->conv_out.c);
	for (int i = 0; i < DIFF_MAX_BLOCKS; i++) {
		free_block(&u->down[i]);
		free_block(&u->up[i]);
	}
	free_resnet(&u->mid_res[0]);
	free_resnet(&u->mid_res[1]);
	free_transformer(&u->mid_attn);
	for (int i = 0; i < u->n_allocs; i++)
		free(u->allocs[i]);
	free(u->allocs);
	free(u);
}

const struct diff_unet_config *unet_get_config(const struct unet *u)
{
	return u ? &u->cfg : NULL;
}

int unet_size_multiple(const struct unet *u)
{
	return u ? 1 << (u->cfg.n_blocks - 1) : 0;
}

int unet_n_skips(const struct unet *u)
{
	return u ? u->n_skips : 0;
}

int unet_skip_shape(const struct unet *u, int i, int *channels, int *downscale)
{
	if (u == NULL || i < 0 || i >= u->n_skips)
		return -EINVAL;
	if (channels != NULL)
		*channels = u->skip_ch[i];
	if (downscale != NULL)
		*downscale = u->skip_ds[i];
	return 0;
}
