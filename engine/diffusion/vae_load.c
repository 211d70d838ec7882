/* Building the VAE from a diffusers AutoencoderKL weight file (see vae.h): every tensor is
 * looked up by name, its shape checked against the config, and converted to f32 (norms,
 * attention) or handed to conv2d_new (convolutions, which keep their own copy). */
#include "vae-internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "diff-internal.h"

struct ld {
	const struct st_file *f;
	char *err;
	size_t errlen;
};

/* ---- tensors -------------------------------------------------------------------------------- */

/* Tensor name (or its older name alt, when not NULL) with shape (nd dims); alt names also
 * accept [c, c, 1, 1] for [c, c] (old files store the attention projections as 1x1 convs).
 * Converts it to a new f32 array in *out (free()). */
static int ld_f32(struct ld *l, const char *name, const char *alt, uint32_t nd,
                  const int64_t *shape, float **out)
{
	const struct st_tensor *t = st_get(l->f, name);
	char want[96], have[96];
	enum dtype dt;
	*out = NULL;
	if (t == NULL && alt != NULL)
		t = st_get(l->f, alt);
	diff_format_shape(want, sizeof want, nd, shape);
	if (t == NULL) {
		diff_set_err(l->err, l->errlen, "vae: %s: tensor '%s'%s%s%s is missing (expected shape %s)",
		        st_path(l->f), name, alt ? " (or '" : "", alt ? alt : "", alt ? "')" : "", want);
		return -EBADMSG;
	}
	bool same = t->n_dims == nd;
	for (uint32_t i = 0; same && i < nd; i++)
		same = t->shape[i] == shape[i];
	if (!same && alt != NULL && nd == 2 && t->n_dims == 4 && t->shape[0] == shape[0] &&
	    t->shape[1] == shape[1] && t->shape[2] == 1 && t->shape[3] == 1)
		same = true;
	if (!same) {
		diff_format_shape(have, sizeof have, t->n_dims, t->shape);
		diff_set_err(l->err, l->errlen, "vae: %s: tensor '%s' has shape %s, the config implies %s",
		        st_path(l->f), t->name, have, want);
		return -EBADMSG;
	}
	if (st_tensor_dtype(t, &dt) != 0) {
		diff_set_err(l->err, l->errlen, "vae: %s: tensor '%s' has dtype %s; weights must be F32, "
		        "F16 or BF16", st_path(l->f), t->name, t->dtype_name);
		return -ENOTSUP;
	}
	uint64_t n = t->n_elements;
	float *p = malloc((n ? n : 1) * sizeof *p);
	if (p == NULL)
		return -ENOMEM;
	int rc = st_tensor_to_f32(t, p, n);
	if (rc != 0) {
		free(p);
		diff_set_err(l->err, l->errlen, "vae: %s: tensor '%s' could not be converted",
		        st_path(l->f), t->name);
		return rc;
	}
	*out = p;
	return 0;
}

/* prefix.what.weight / .bias of c values. */
static int ld_norm(struct ld *l, const char *prefix, const char *what, int c, struct vae_norm *n)
{
	char name[256];
	int64_t s[1] = { c };
	snprintf(name, sizeof name, "%s.%s.weight", prefix, what);
	int rc = ld_f32(l, name, NULL, 1, s, &n->w);
	if (rc == 0) {
		snprintf(name, sizeof name, "%s.%s.bias", prefix, what);
		rc = ld_f32(l, name, NULL, 1, s, &n->b);
	}
	return rc;
}

static void norm_fini(struct vae_norm *n)
{
	free(n->w);
	free(n->b);
	n->w = n->b = NULL;
}

/* Activation layout of a conv: oneDNN's own (blocked, reordered in and out per call) for the
 * 3x3 convs and the wide 1x1 shortcuts, NCHW for the small 1x1 ones. Measured by bench_vae
 * --layouts on 2 Zen 3 cores: blocked 1.2-2.8x faster on the 3x3 convs at 32-512 channels
 * (the NCHW primitive is the GEMM one, the blocked one oneDNN's direct JIT kernel), slower on
 * 4 -> 4 (0.3x) and 64 -> 32 (0.6x) 1x1 convs, faster from 128 input channels up. */
static unsigned vae_conv_flags(int k, int in)
{
	return k > 1 || in >= 128 ? CONV2D_BLOCKED_IO : 0;
}

/* prefix.what (prefix may be empty): a k x k conv in -> out with stride and padding
 * (top, left, bottom, right). */
static int ld_conv(struct ld *l, const char *prefix, const char *what, int out, int in, int k,
                   int stride, const int pad[4], struct conv2d **c)
{
	char name[256];
	const char *dot = *prefix ? "." : "";
	int64_t ws[4] = { out, in, k, k }, bs[1] = { out };
	float *w = NULL, *b = NULL;
	snprintf(name, sizeof name, "%s%s%s.weight", prefix, dot, what);
	int rc = ld_f32(l, name, NULL, 4, ws, &w);
	if (rc == 0) {
		snprintf(name, sizeof name, "%s%s%s.bias", prefix, dot, what);
		rc = ld_f32(l, name, NULL, 1, bs, &b);
	}
	if (rc == 0) {
		struct conv2d_desc d = {
			.in_ch = in, .out_ch = out, .kh = k, .kw = k, .stride_h = stride,
			.stride_w = stride, .pad_t = pad[0], .pad_l = pad[1], .pad_b = pad[2],
			.pad_r = pad[3],
		};
		rc = conv2d_new(&d, DTYPE_F32, w, b, vae_conv_flags(k, in), c);
		if (rc != 0)
			diff_set_err(l->err, l->errlen, "vae: %s%s%s: convolution not created (%s)", prefix,
			        dot, what, strerror(-rc));
	}
	free(w);
	free(b);
	return rc;
}

static const int PAD1[4] = { 1, 1, 1, 1 }, PAD0[4] = { 0, 0, 0, 0 }, PAD_DOWN[4] = { 0, 0, 1, 1 };

static int ld_resnet(struct ld *l, const char *p, int cin, int cout, struct vae_resnet *r)
{
	int rc;
	r->cin = cin;
	r->cout = cout;
	if ((rc = ld_norm(l, p, "norm1", cin, &r->n1)) != 0 ||
	    (rc = ld_conv(l, p, "conv1", cout, cin, 3, 1, PAD1, &r->conv1)) != 0 ||
	    (rc = ld_norm(l, p, "norm2", cout, &r->n2)) != 0 ||
	    (rc = ld_conv(l, p, "conv2", cout, cout, 3, 1, PAD1, &r->conv2)) != 0)
		return rc;
	if (cin != cout)
		rc = ld_conv(l, p, "conv_shortcut", cout, cin, 1, 1, PAD0, &r->shortcut);
	return rc;
}

static void resnet_fini(struct vae_resnet *r)
{
	norm_fini(&r->n1);
	norm_fini(&r->n2);
	conv2d_free(r->conv1);
	conv2d_free(r->conv2);
	conv2d_free(r->shortcut);
	memset(r, 0, sizeof *r);
}

static void attn_free(struct vae_attn *a)
{
	if (a == NULL)
		return;
	norm_fini(&a->norm);
	free(a->qkv_w);
	free(a->qkv_b);
	free(a->o_w);
	free(a->o_b);
	free(a);
}

static int ld_attn(struct ld *l, const char *p, int c, struct vae_attn **out)
{
	static const char *const names[4][2] = {
		{ "to_q", "query" }, { "to_k", "key" }, { "to_v", "value" }, { "to_out.0", "proj_attn" },
	};
	const size_t C = (size_t)c;
	struct vae_attn *a = calloc(1, sizeof *a);
	int rc = -ENOMEM;
	*out = NULL;
	if (a == NULL)
		return rc;
	a->c = c;
	a->qkv_w = malloc(3 * C * C * sizeof *a->qkv_w);
	a->qkv_b = malloc(3 * C * sizeof *a->qkv_b);
	if (a->qkv_w == NULL || a->qkv_b == NULL)
		goto fail;
	if ((rc = ld_norm(l, p, "group_norm", c, &a->norm)) != 0)
		goto fail;
	for (int i = 0; i < 4; i++) {
		char name[256], alt[256];
		int64_t ws[2] = { c, c }, bs[1] = { c };
		float *w = NULL, *b = NULL;
		snprintf(name, sizeof name, "%s.%s.weight", p, names[i][0]);
		snprintf(alt, sizeof alt, "%s.%s.weight", p, names[i][1]);
		rc = ld_f32(l, name, alt, 2, ws, &w);
		if (rc == 0) {
			snprintf(name, sizeof name, "%s.%s.bias", p, names[i][0]);
			snprintf(alt, sizeof alt, "%s.%s.bias", p, names[i][1]);
			rc = ld_f32(l, name, alt, 1, bs, &b);
		}
		if (rc != 0) {
			free(w);
			goto fail;
		}
		if (i < 3) {
			memcpy(a->qkv_w + (size_t)i * C * C, w, C * C * sizeof *w);
			memcpy(a->qkv_b + (size_t)i * C, b, C * sizeof *b);
			free(w);
			free(b);
		} else {
			a->o_w = w;
			a->o_b = b;
		}
	}
	if ((rc = cpu_weight_init(&a->qkv, DTYPE_F32, a->qkv_w, c, 3 * (int64_t)c)) != 0 ||
	    (rc = cpu_weight_init(&a->o, DTYPE_F32, a->o_w, c, c)) != 0)
		goto fail;
	*out = a;
	return 0;
fail:
	attn_free(a);
	return rc;
}

static int ld_mid(struct ld *l, const char *part, const struct diff_vae_config *v,
                  struct vae_mid *m)
{
	char p[96];
	const int c = v->block_out_channels[v->n_blocks - 1];
	int rc;
	snprintf(p, sizeof p, "%s.mid_block.resnets.0", part);
	if ((rc = ld_resnet(l, p, c, c, &m->r0)) != 0)
		return rc;
	if (v->mid_block_add_attention) {
		snprintf(p, sizeof p, "%s.mid_block.attentions.0", part);
		if ((rc = ld_attn(l, p, c, &m->attn)) != 0)
			return rc;
	}
	snprintf(p, sizeof p, "%s.mid_block.resnets.1", part);
	return ld_resnet(l, p, c, c, &m->r1);
}

void vae_coder_fini(struct vae_coder *c)
{
	conv2d_free(c->conv_in);
	for (int i = 0; c->levels != NULL && i < c->n_levels; i++) {
		struct vae_level *lv = &c->levels[i];
		for (int j = 0; lv->res != NULL && j < lv->n_res; j++)
			resnet_fini(&lv->res[j]);
		free(lv->res);
		conv2d_free(lv->resample);
	}
	free(c->levels);
	resnet_fini(&c->mid.r0);
	resnet_fini(&c->mid.r1);
	attn_free(c->mid.attn);
	norm_fini(&c->norm_out);
	conv2d_free(c->conv_out);
	conv2d_free(c->quant);
	memset(c, 0, sizeof *c);
}

/* Allocates the levels of c with n_res resnets each. */
static int levels_alloc(struct vae_coder *c, int n, int n_res)
{
	c->levels = calloc((size_t)n, sizeof *c->levels);
	if (c->levels == NULL)
		return -ENOMEM;
	c->n_levels = n;
	for (int i = 0; i < n; i++) {
		c->levels[i].res = calloc((size_t)n_res, sizeof *c->levels[i].res);
		if (c->levels[i].res == NULL)
			return -ENOMEM;
		c->levels[i].n_res = n_res;
	}
	return 0;
}

/* ---- the two halves ------------------------------------------------------------------------- */

static int build_decoder(struct ld *l, const struct diff_vae_config *v, struct vae_coder *d)
{
	const int n = v->n_blocks, *ch = v->block_out_channels, lat = v->latent_channels;
	char p[96];
	int rc;
	if (v->use_post_quant_conv &&
	    (rc = ld_conv(l, "", "post_quant_conv", lat, lat, 1, 1, PAD0, &d->quant)) != 0)
		return rc;
	if ((rc = ld_conv(l, "decoder", "conv_in", ch[n - 1], lat, 3, 1, PAD1, &d->conv_in)) != 0 ||
	    (rc = ld_mid(l, "decoder", v, &d->mid)) != 0 ||
	    (rc = levels_alloc(d, n, v->layers_per_block + 1)) != 0)
		return rc;
	int out = ch[n - 1];
	for (int i = 0; i < n; i++) {
		struct vae_level *lv = &d->levels[i];
		lv->cin = out;
		out = lv->cout = ch[n - 1 - i];
		for (int j = 0; j < lv->n_res; j++) {
			snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
			if ((rc = ld_resnet(l, p, j == 0 ? lv->cin : out, out, &lv->res[j])) != 0)
				return rc;
		}
		if (i < n - 1) {
			snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0", i);
			if ((rc = ld_conv(l, p, "conv", out, out, 3, 1, PAD1, &lv->resample)) != 0)
				return rc;
		}
	}
	if ((rc = ld_norm(l, "decoder", "conv_norm_out", ch[0], &d->norm_out)) != 0 ||
	    (rc = ld_conv(l, "decoder", "conv_out", v->out_channels, ch[0], 3, 1, PAD1,
	                  &d->conv_out)) != 0)
		return rc;
	d->built = true;
	return 0;
}

static int build_encoder(struct ld *l, const struct diff_vae_config *v, struct vae_coder *e)
{
	const int n = v->n_blocks, *ch = v->block_out_channels, lat = v->latent_channels;
	char p[96];
	int rc;
	if ((rc = ld_conv(l, "encoder", "conv_in", ch[0], v->in_channels, 3, 1, PAD1,
	                  &e->conv_in)) != 0 ||
	    (rc = levels_alloc(e, n, v->layers_per_block)) != 0)
		return rc;
	int out = ch[0];
	for (int i = 0; i < n; i++) {
		struct vae_level *lv = &e->levels[i];
		lv->cin = out;
		out = lv->cout = ch[i];
		for (int j = 0; j < lv->n_res; j++) {
			snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
			if ((rc = ld_resnet(l, p, j == 0 ? lv->cin : out, out, &lv->res[j])) != 0)
				return rc;
		}
		if (i < n - 1) {
			snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0", i);
			if ((rc = ld_conv(l, p, "conv", out, out, 3, 2, PAD_DOWN, &lv->resample)) != 0)
				return rc;
		}
	}
	if ((rc = ld_mid(l, "encoder", v, &e->mid)) != 0 ||
	    (rc = ld_norm(l, "encoder", "conv_norm_out", ch[n - 1], &e->norm_out)) != 0 ||
	    (rc = ld_conv(l, "encoder", "conv_out", 2 * lat, ch[n - 1], 3, 1, PAD1,
	                  &e->conv_out)) != 0)
		return rc;
	if (v->use_quant_conv &&
	    (rc = ld_conv(l, "", "quant_conv", 2 * lat, 2 * lat, 1, 1, PAD0, &e->quant)) != 0)
		return rc;
	e->built = true;
	return 0;
}

static int check_config(const struct diff_vae_config *c, char *err, size_t errlen)
{
	bool ok = c->n_blocks >= 1 && c->n_blocks <= DIFF_MAX_BLOCKS && c->in_channels >= 1 &&
	          c->out_channels >= 1 && c->latent_channels >= 1 && c->layers_per_block >= 1 &&
	          c->layers_per_block <= 64 && c->norm_num_groups >= 1 && c->in_channels <= 65536 &&
	          c->out_channels <= 65536 && c->latent_channels <= 65536 &&
	          isfinite(c->scaling_factor) && c->scaling_factor != 0 && isfinite(c->shift_factor);
	for (int i = 0; ok && i < c->n_blocks; i++)
		ok = c->block_out_channels[i] >= 1 && c->block_out_channels[i] <= 65536 &&
		     c->block_out_channels[i] % c->norm_num_groups == 0;
	if (!ok) {
		diff_set_err(err, errlen, "vae: bad config (%d blocks, %d layers per block, %d groups, "
		        "channels in %d out %d latent %d, scaling %g): channels must be positive and "
		        "divisible by the groups", c->n_blocks, c->layers_per_block, c->norm_num_groups,
		        c->in_channels, c->out_channels, c->latent_channels, (double)c->scaling_factor);
		return -EINVAL;
	}
	return 0;
}

int vae_new(const struct diff_vae_config *c, const struct st_file *f, bool with_encoder,
            struct vae **out, char *err, size_t errlen)
{
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (c == NULL || f == NULL) {
		diff_set_err(err, errlen, "vae: no config or weight file");
		return -EINVAL;
	}
	int rc = check_config(c, err, errlen);
	if (rc != 0)
		return rc;
	struct vae *v = calloc(1, sizeof *v);
	if (v == NULL) {
		diff_set_err(err, errlen, "vae: out of memory");
		return -ENOMEM;
	}
	v->cfg = *c;
	struct ld l = { .f = f, .err = err, .errlen = errlen };
	rc = build_decoder(&l, c, &v->dec);
	if (rc == 0 && with_encoder)
		rc = build_encoder(&l, c, &v->enc);
	if (rc != 0) {
		if (rc == -ENOMEM)
			diff_set_err(err, errlen, "vae: out of memory");
		vae_free(v);
		return rc;
	}
	*out = v;
	return 0;
}

void vae_free(struct vae *v)
{
	if (v == NULL)
		return;
	vae_coder_fini(&v->dec);
	vae_coder_fini(&v->enc);
	free(v);
}

const struct diff_vae_config *vae_get_config(const struct vae *v)
{
	return v != NULL ? &v->cfg : NULL;
}

bool vae_has_encoder(const struct vae *v)
{
	return v != NULL && v->enc.built;
}

int vae_downscale(const struct vae *v)
{
	return v != NULL ? 1 << (v->cfg.n_blocks - 1) : 0;
}
