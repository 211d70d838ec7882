/* The tensors a config implies, with the names and shapes diffusers'
 * UNet2DConditionModel / AutoencoderKL and transformers' CLIPTextModel write,
 * and the check of a weight file against them. Shapes are PyTorch's: a linear
 * weight is [out, in], a conv weight [out, in, kh, kw]. */
#include "pipeline.h"
#include "diff-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct walk {
	diff_tensor_fn fn;
	void *arg;
	int rc;
};

/* One tensor: prefix + "." + suffix; shape given as n_dims values. */
static void emit(struct walk *w, const char *prefix, const char *suffix, const char *alt_suffix,
                 enum diff_tensor_kind kind, uint32_t nd, ...)
{
	char name[256], alt[256];
	int64_t shape[4];
	va_list ap;
	if (w->rc)
		return;
	va_start(ap, nd);
	for (uint32_t i = 0; i < nd; i++)
		shape[i] = va_arg(ap, int64_t);
	va_end(ap);
	snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", suffix);
	if (alt_suffix)
		snprintf(alt, sizeof alt, "%s%s%s", prefix, *prefix ? "." : "", alt_suffix);
	w->rc = w->fn(name, alt_suffix ? alt : NULL, nd, shape, kind, w->arg);
}

#define I64(x) ((int64_t)(x))
#define W2(p, s, a, b) emit(w, p, s, NULL, DIFF_TENSOR_WEIGHT, 2, I64(a), I64(b))
#define W4(p, s, a, b, k) emit(w, p, s, NULL, DIFF_TENSOR_WEIGHT, 4, I64(a), I64(b), I64(k), I64(k))
#define B1(p, s, a) emit(w, p, s, NULL, DIFF_TENSOR_BIAS, 1, I64(a))
#define N1(p, s, a) emit(w, p, s, NULL, DIFF_TENSOR_NORM, 1, I64(a))

static void norm(struct walk *w, const char *p, const char *what, int c)
{
	char s[64];
	snprintf(s, sizeof s, "%s.weight", what);
	N1(p, s, c);
	snprintf(s, sizeof s, "%s.bias", what);
	B1(p, s, c);
}

static void linear(struct walk *w, const char *p, const char *what, int out, int in, bool bias)
{
	char s[64];
	snprintf(s, sizeof s, "%s.weight", what);
	W2(p, s, out, in);
	if (bias) {
		snprintf(s, sizeof s, "%s.bias", what);
		B1(p, s, out);
	}
}

static void conv(struct walk *w, const char *p, const char *what, int out, int in, int k)
{
	char s[64];
	snprintf(s, sizeof s, "%s.weight", what);
	W4(p, s, out, in, k);
	snprintf(s, sizeof s, "%s.bias", what);
	B1(p, s, out);
}

/* ResnetBlock2D; temb 0 = no time embedding projection (VAE). */
static void resnet(struct walk *w, const char *p, int cin, int cout, int temb)
{
	norm(w, p, "norm1", cin);
	conv(w, p, "conv1", cout, cin, 3);
	if (temb)
		linear(w, p, "time_emb_proj", cout, temb, true);
	norm(w, p, "norm2", cout);
	conv(w, p, "conv2", cout, cout, 3);
	if (cin != cout)
		conv(w, p, "conv_shortcut", cout, cin, 1);
}

/* Transformer2DModel with layers BasicTransformerBlocks (self-attention,
 * cross-attention, GEGLU feed-forward of inner size 4c). */
static void transformer(struct walk *w, const char *p, int c, int cross, int layers, bool lin)
{
	char q[200];
	norm(w, p, "norm", c);
	if (lin)
		linear(w, p, "proj_in", c, c, true);
	else
		conv(w, p, "proj_in", c, c, 1);
	for (int k = 0; k < layers; k++) {
		snprintf(q, sizeof q, "%s.transformer_blocks.%d", p, k);
		norm(w, q, "norm1", c);
		linear(w, q, "attn1.to_q", c, c, false);
		linear(w, q, "attn1.to_k", c, c, false);
		linear(w, q, "attn1.to_v", c, c, false);
		linear(w, q, "attn1.to_out.0", c, c, true);
		norm(w, q, "norm2", c);
		linear(w, q, "attn2.to_q", c, c, false);
		linear(w, q, "attn2.to_k", c, cross, false);
		linear(w, q, "attn2.to_v", c, cross, false);
		linear(w, q, "attn2.to_out.0", c, c, true);
		norm(w, q, "norm3", c);
		linear(w, q, "ff.net.0.proj", 8 * c, c, true);
		linear(w, q, "ff.net.2", c, 4 * c, true);
	}
	if (lin)
		linear(w, p, "proj_out", c, c, true);
	else
		conv(w, p, "proj_out", c, c, 1);
}

/* VAE mid-block attention (one head); older files name the projections
 * query/key/value/proj_attn. */
static void vae_attention(struct walk *w, const char *p, int c)
{
	static const char *const nn[4][2] = {
		{ "to_q", "query" }, { "to_k", "key" }, { "to_v", "value" }, { "to_out.0", "proj_attn" },
	};
	char s[64], a[64];
	norm(w, p, "group_norm", c);
	for (int i = 0; i < 4; i++) {
		snprintf(s, sizeof s, "%s.weight", nn[i][0]);
		snprintf(a, sizeof a, "%s.weight", nn[i][1]);
		emit(w, p, s, a, DIFF_TENSOR_WEIGHT, 2, I64(c), I64(c));
		snprintf(s, sizeof s, "%s.bias", nn[i][0]);
		snprintf(a, sizeof a, "%s.bias", nn[i][1]);
		emit(w, p, s, a, DIFF_TENSOR_BIAS, 1, I64(c));
	}
}

/* ---- UNet2DConditionModel --------------------------------------------------------- */

int diff_unet_tensors(const struct diff_unet_config *u, diff_tensor_fn fn, void *arg)
{
	struct walk ws = { .fn = fn, .arg = arg }, *w = &ws;
	const int n = u->n_blocks, *ch = u->block_out_channels, temb = u->time_embed_dim;
	const int lpb = u->layers_per_block, cross = u->cross_attention_dim;
	const bool lin = u->use_linear_projection;
	char p[160], q[200];

	conv(w, "", "conv_in", ch[0], u->in_channels, 3);
	linear(w, "time_embedding", "linear_1", temb, ch[0], true);
	linear(w, "time_embedding", "linear_2", temb, temb, true);
	if (u->time_cond_proj_dim)
		linear(w, "time_embedding", "cond_proj", ch[0], u->time_cond_proj_dim, false);

	int out = ch[0];
	for (int i = 0; i < n; i++) {
		int in = out;
		out = ch[i];
		for (int j = 0; j < lpb; j++) {
			snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
			resnet(w, p, j == 0 ? in : out, out, temb);
			if (u->down_blocks[i] == DIFF_BLOCK_CROSS_ATTN_DOWN) {
				snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
				transformer(w, p, out, cross, u->transformer_layers[i], lin);
			}
		}
		if (i < n - 1) {
			snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0", i);
			conv(w, p, "conv", out, out, 3);
		}
	}
	if (u->has_mid_block) {
		int c = ch[n - 1];
		resnet(w, "mid_block.resnets.0", c, c, temb);
		transformer(w, "mid_block.attentions.0", c, cross, u->transformer_layers[n - 1], lin);
		resnet(w, "mid_block.resnets.1", c, c, temb);
	}
	out = ch[n - 1];
	for (int i = 0; i < n; i++) {
		int prev = out;
		out = ch[n - 1 - i];
		int in = ch[n - 1 - (i + 1 < n ? i + 1 : n - 1)];
		for (int j = 0; j < lpb + 1; j++) {
			int skip = j == lpb ? in : out;
			int rin = j == 0 ? prev : out;
			snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
			resnet(w, p, rin + skip, out, temb);
			if (u->up_blocks[i] == DIFF_BLOCK_CROSS_ATTN_UP) {
				snprintf(q, sizeof q, "up_blocks.%d.attentions.%d", i, j);
				transformer(w, q, out, cross, u->transformer_layers[n - 1 - i], lin);
			}
		}
		if (i < n - 1) {
			snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0", i);
			conv(w, p, "conv", out, out, 3);
		}
	}
	norm(w, "", "conv_norm_out", ch[0]);
	conv(w, "", "conv_out", u->out_channels, ch[0], 3);
	return w->rc;
}

/* ---- AutoencoderKL ------------------------------------------------------------------ */

static void vae_mid(struct walk *w, const char *part, const struct diff_vae_config *v)
{
	char p[64];
	int c = v->block_out_channels[v->n_blocks - 1];
	snprintf(p, sizeof p, "%s.mid_block.resnets.0", part);
	resnet(w, p, c, c, 0);
	if (v->mid_block_add_attention) {
		snprintf(p, sizeof p, "%s.mid_block.attentions.0", part);
		vae_attention(w, p, c);
	}
	snprintf(p, sizeof p, "%s.mid_block.resnets.1", part);
	resnet(w, p, c, c, 0);
}

int diff_vae_tensors(const struct diff_vae_config *v, diff_tensor_fn fn, void *arg)
{
	struct walk ws = { .fn = fn, .arg = arg }, *w = &ws;
	const int n = v->n_blocks, *ch = v->block_out_channels, lat = v->latent_channels;
	char p[160];

	conv(w, "encoder", "conv_in", ch[0], v->in_channels, 3);
	int out = ch[0];
	for (int i = 0; i < n; i++) {
		int in = out;
		out = ch[i];
		for (int j = 0; j < v->layers_per_block; j++) {
			snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
			resnet(w, p, j == 0 ? in : out, out, 0);
		}
		if (i < n - 1) {
			snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0", i);
			conv(w, p, "conv", out, out, 3);
		}
	}
	vae_mid(w, "encoder", v);
	norm(w, "encoder", "conv_norm_out", ch[n - 1]);
	conv(w, "encoder", "conv_out", 2 * lat, ch[n - 1], 3);
	if (v->use_quant_conv)
		conv(w, "", "quant_conv", 2 * lat, 2 * lat, 1);
	if (v->use_post_quant_conv)
		conv(w, "", "post_quant_conv", lat, lat, 1);

	conv(w, "decoder", "conv_in", ch[n - 1], lat, 3);
	vae_mid(w, "decoder", v);
	out = ch[n - 1];
	for (int i = 0; i < n; i++) {
		int prev = out;
		out = ch[n - 1 - i];
		for (int j = 0; j < v->layers_per_block + 1; j++) {
			snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
			resnet(w, p, j == 0 ? prev : out, out, 0);
		}
		if (i < n - 1) {
			snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0", i);
			conv(w, p, "conv", out, out, 3);
		}
	}
	norm(w, "decoder", "conv_norm_out", ch[0]);
	conv(w, "decoder", "conv_out", v->out_channels, ch[0], 3);
	return w->rc;
}

/* ---- CLIPTextModel ------------------------------------------------------------------ */

int diff_clip_tensors(const struct diff_clip_config *t, diff_tensor_fn fn, void *arg)
{
	struct walk ws = { .fn = fn, .arg = arg }, *w = &ws;
	const int h = t->hidden_size, in = t->intermediate_size;
	char p[96];

	emit(w, "text_model.embeddings", "token_embedding.weight", NULL, DIFF_TENSOR_EMBED, 2,
	     I64(t->vocab_size), I64(h));
	emit(w, "text_model.embeddings", "position_embedding.weight", NULL, DIFF_TENSOR_EMBED, 2,
	     I64(t->max_position_embeddings), I64(h));
	for (int l = 0; l < t->num_hidden_layers; l++) {
		snprintf(p, sizeof p, "text_model.encoder.layers.%d", l);
		linear(w, p, "self_attn.k_proj", h, h, true);
		linear(w, p, "self_attn.v_proj", h, h, true);
		linear(w, p, "self_attn.q_proj", h, h, true);
		linear(w, p, "self_attn.out_proj", h, h, true);
		norm(w, p, "layer_norm1", h);
		linear(w, p, "mlp.fc1", in, h, true);
		linear(w, p, "mlp.fc2", h, in, true);
		norm(w, p, "layer_norm2", h);
	}
	norm(w, "text_model", "final_layer_norm", h);
	return w->rc;
}

/* ---- checking a file ---------------------------------------------------------------- */

struct check {
	const struct st_file *f;
	char *err;
	size_t errlen;
};

static int check_one(const char *name, const char *alt, uint32_t nd, const int64_t *shape,
                     enum diff_tensor_kind kind, void *arg)
{
	struct check *c = arg;
	const struct st_tensor *t = st_get(c->f, name);
	char want[96], have[96];
	enum dtype dt;
	(void)kind;
	if (t == NULL && alt)
		t = st_get(c->f, alt);
	diff_format_shape(want, sizeof want, nd, shape);
	if (t == NULL) {
		if (c->err && c->errlen)
			snprintf(c->err, c->errlen, "%s: tensor '%s'%s%s%s is missing (expected shape %s)",
			         st_path(c->f), name, alt ? " (or '" : "", alt ? alt : "", alt ? "')" : "",
			         want);
		return -EBADMSG;
	}
	bool same = t->n_dims == nd;
	for (uint32_t i = 0; same && i < nd; i++)
		same = t->shape[i] == shape[i];
	/* old VAE files store the attention projections as 1x1 convolutions */
	if (!same && alt && nd == 2 && t->n_dims == 4 && t->shape[0] == shape[0] &&
	    t->shape[1] == shape[1] && t->shape[2] == 1 && t->shape[3] == 1)
		same = true;
	if (!same) {
		diff_format_shape(have, sizeof have, t->n_dims, t->shape);
		if (c->err && c->errlen)
			snprintf(c->err, c->errlen, "%s: tensor '%s' has shape %s, the config implies %s",
			         st_path(c->f), t->name, have, want);
		return -EBADMSG;
	}
	if (st_tensor_dtype(t, &dt) < 0) {
		if (c->err && c->errlen)
			snprintf(c->err, c->errlen, "%s: tensor '%s' has dtype %s; weights must be F32, "
			         "F16 or BF16", st_path(c->f), t->name, t->dtype_name);
		return -ENOTSUP;
	}
	return 0;
}

int diff_check_tensors(const struct st_file *f,
                       int (*walk)(const void *cfg, diff_tensor_fn fn, void *arg),
                       const void *cfg, char *err, size_t errlen)
{
	struct check c = { .f = f, .err = err, .errlen = errlen };
	if (err && errlen)
		err[0] = '\0';
	return walk(cfg, check_one, &c);
}

static int walk_unet(const void *cfg, diff_tensor_fn fn, void *arg)
{
	return diff_unet_tensors(cfg, fn, arg);
}

static int walk_vae(const void *cfg, diff_tensor_fn fn, void *arg)
{
	return diff_vae_tensors(cfg, fn, arg);
}

static int walk_clip(const void *cfg, diff_tensor_fn fn, void *arg)
{
	return diff_clip_tensors(cfg, fn, arg);
}

int diff_unet_check(const struct st_file *f, const struct diff_unet_config *c, char *err,
                    size_t errlen)
{
	return diff_check_tensors(f, walk_unet, c, err, errlen);
}

int diff_vae_check(const struct st_file *f, const struct diff_vae_config *c, char *err,
                   size_t errlen)
{
	return diff_check_tensors(f, walk_vae, c, err, errlen);
}

int diff_clip_check(const struct st_file *f, const struct diff_clip_config *c, char *err,
                    size_t errlen)
{
	return diff_check_tensors(f, walk_clip, c, err, errlen);
}
