/* Config files of a diffusers folder: JSON read with jansson into the structs
 * of pipeline.h. Defaults are diffusers' (transformers' for the text encoder;
 * DDIMScheduler's for the scheduler). */
#include "pipeline.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CFG_MAX_BYTES (16u << 20) /* config files are a few KB */

struct cfg {
	const char *path;
	json_t *root;
	char *err;
	size_t errlen;
};

static int cerr(struct cfg *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int cerr(struct cfg *c, int code, const char *fmt, ...)
{
	if (c->err == NULL || c->errlen == 0)
		return code;
	int n = snprintf(c->err, c->errlen, "%s: ", c->path);
	if (n < 0 || (size_t)n >= c->errlen)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

static int cfg_open(struct cfg *c, const char *path, char *err, size_t errlen)
{
	struct stat sb;
	json_error_t jerr;
	*c = (struct cfg){ .path = path, .err = err, .errlen = errlen };
	if (err && errlen)
		err[0] = '\0';
	if (stat(path, &sb) < 0) {
		int e = errno;
		return cerr(c, -e, "cannot open: %s", strerror(e));
	}
	if (!S_ISREG(sb.st_mode))
		return cerr(c, -EINVAL, "not a regular file");
	if ((uint64_t)sb.st_size > CFG_MAX_BYTES)
		return cerr(c, -EBADMSG, "%lld bytes: too large for a config file",
		            (long long)sb.st_size);
	c->root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (c->root == NULL)
		return cerr(c, -EBADMSG, "not valid JSON: %s (line %d, column %d)", jerr.text,
		            jerr.line, jerr.column);
	if (!json_is_object(c->root)) {
		json_decref(c->root);
		c->root = NULL;
		return cerr(c, -EBADMSG, "not a JSON object");
	}
	return 0;
}

/* The value of key, NULL when absent or null (both mean "use the default"). */
static json_t *cfg_get(struct cfg *c, const char *key)
{
	json_t *v = json_object_get(c->root, key);
	return json_is_null(v) ? NULL : v;
}

static int missing(struct cfg *c, const char *key)
{
	return cerr(c, -EBADMSG, "required key \"%s\" is missing", key);
}

/* An integer (or an integral real: some writers emit 4.0) in [lo, hi]. */
static int to_int(struct cfg *c, const char *key, const json_t *v, int lo, int hi, int *out)
{
	double d;
	if (json_is_integer(v))
		d = (double)json_integer_value(v);
	else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)))
		d = json_real_value(v);
	else
		return cerr(c, -EBADMSG, "key \"%s\": not an integer", key);
	if (d < lo || d > hi)
		return cerr(c, -EBADMSG, "key \"%s\": %.0f is outside [%d, %d]", key, d, lo, hi);
	*out = (int)d;
	return 0;
}

static int cfg_int(struct cfg *c, const char *key, bool required, int def, int lo, int hi,
                   int *out)
{
	json_t *v = cfg_get(c, key);
	if (v == NULL) {
		*out = def;
		return required ? missing(c, key) : 0;
	}
	return to_int(c, key, v, lo, hi, out);
}

static int cfg_float(struct cfg *c, const char *key, double def, double lo, double hi, float *out)
{
	json_t *v = cfg_get(c, key);
	*out = (float)def;
	if (v == NULL)
		return 0;
	if (!json_is_number(v))
		return cerr(c, -EBADMSG, "key \"%s\": not a number", key);
	double d = json_number_value(v);
	if (!(d >= lo && d <= hi))
		return cerr(c, -EBADMSG, "key \"%s\": %g is outside [%g, %g]", key, d, lo, hi);
	*out = (float)d;
	return 0;
}

static int cfg_bool(struct cfg *c, const char *key, bool def, bool *out)
{
	json_t *v = cfg_get(c, key);
	*out = def;
	if (v == NULL)
		return 0;
	if (!json_is_boolean(v))
		return cerr(c, -EBADMSG, "key \"%s\": not true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int cfg_str(struct cfg *c, const char *key, bool required, const char *def, char *out,
                   size_t outlen)
{
	json_t *v = cfg_get(c, key);
	if (v == NULL) {
		snprintf(out, outlen, "%s", def);
		return required ? missing(c, key) : 0;
	}
	if (!json_is_string(v))
		return cerr(c, -EBADMSG, "key \"%s\": not a string", key);
	if (strlen(json_string_value(v)) >= outlen)
		return cerr(c, -EBADMSG, "key \"%s\": value longer than %zu bytes", key, outlen - 1);
	snprintf(out, outlen, "%s", json_string_value(v));
	return 0;
}

/* A string key that must be one of the values in allowed (NULL-terminated)
 * when present; -ENOTSUP otherwise. */
static int cfg_choice(struct cfg *c, const char *key, const char *def, const char *const *allowed,
                      char *out, size_t outlen)
{
	char buf[DIFF_NAME_MAX];
	int rc = cfg_str(c, key, false, def, buf, sizeof buf);
	if (rc < 0)
		return rc;
	for (const char *const *a = allowed; *a; a++) {
		if (strcmp(buf, *a) == 0) {
			if (out)
				snprintf(out, outlen, "%s", buf);
			return 0;
		}
	}
	return cerr(c, -ENOTSUP, "key \"%s\": \"%s\" is not supported (supported: %s%s%s)", key, buf,
	            allowed[0], allowed[1] ? ", " : "", allowed[1] ? allowed[1] : "");
}

/* A key whose only supported value is null/absent. */
static int cfg_absent(struct cfg *c, const char *key)
{
	if (cfg_get(c, key) != NULL)
		return cerr(c, -ENOTSUP, "key \"%s\": only null is supported (a model with this "
		            "feature is not a Stable Diffusion 1.x/2.x model)", key);
	return 0;
}

/* A list of n integers; a single integer is repeated n times when broadcast. */
static int cfg_int_list(struct cfg *c, const char *key, bool broadcast, int n, int lo, int hi,
                        int *out)
{
	json_t *v = cfg_get(c, key);
	if (broadcast && v && !json_is_array(v)) {
		int x, rc = to_int(c, key, v, lo, hi, &x);
		for (int i = 0; i < n && rc == 0; i++)
			out[i] = x;
		return rc;
	}
	if (!json_is_array(v) || json_array_size(v) != (size_t)n)
		return cerr(c, -EBADMSG, "key \"%s\": not a list of %d integers", key, n);
	for (int i = 0; i < n; i++) {
		char k[96];
		snprintf(k, sizeof k, "%s[%d]", key, i);
		int rc = to_int(c, k, json_array_get(v, (size_t)i), lo, hi, &out[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* block_out_channels: required list of 1..DIFF_MAX_BLOCKS positive integers. */
static int cfg_channels(struct cfg *c, int *n, int *out)
{
	json_t *v = cfg_get(c, "block_out_channels");
	if (v == NULL)
		return missing(c, "block_out_channels");
	if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > DIFF_MAX_BLOCKS)
		return cerr(c, -EBADMSG, "key \"block_out_channels\": not a list of 1 to %d integers",
		            DIFF_MAX_BLOCKS);
	*n = (int)json_array_size(v);
	return cfg_int_list(c, "block_out_channels", false, *n, 1, 1 << 16, out);
}

static const char *const block_names[] = {
	[DIFF_BLOCK_DOWN] = "DownBlock2D",
	[DIFF_BLOCK_CROSS_ATTN_DOWN] = "CrossAttnDownBlock2D",
	[DIFF_BLOCK_UP] = "UpBlock2D",
	[DIFF_BLOCK_CROSS_ATTN_UP] = "CrossAttnUpBlock2D",
	[DIFF_BLOCK_DOWN_ENCODER] = "DownEncoderBlock2D",
	[DIFF_BLOCK_UP_DECODER] = "UpDecoderBlock2D",
};

const char *diff_block_name(enum diff_block b)
{
	return (unsigned)b < sizeof block_names / sizeof block_names[0] ? block_names[b] : "?";
}

/* A list of n block type names, each one of the two allowed. */
static int cfg_blocks(struct cfg *c, const char *key, int n, enum diff_block a, enum diff_block b,
                      enum diff_block *out)
{
	json_t *v = cfg_get(c, key);
	if (v == NULL)
		return missing(c, key);
	if (!json_is_array(v) || json_array_size(v) != (size_t)n)
		return cerr(c, -EBADMSG, "key \"%s\": not a list of %d block types (one per "
		            "block_out_channels entry)", key, n);
	for (int i = 0; i < n; i++) {
		const char *s = json_string_value(json_array_get(v, (size_t)i));
		if (s == NULL)
			return cerr(c, -EBADMSG, "key \"%s\"[%d]: not a string", key, i);
		if (strcmp(s, block_names[a]) == 0)
			out[i] = a;
		else if (strcmp(s, block_names[b]) == 0)
			out[i] = b;
		else
			return cerr(c, -ENOTSUP, "key \"%s\"[%d]: block type \"%s\" is not supported "
			            "(supported: %s, %s)", key, i, s, block_names[a], block_names[b]);
	}
	return 0;
}

static int check_class(struct cfg *c, const char *key, const char *const *allowed)
{
	return cfg_choice(c, key, allowed[0], allowed, NULL, 0);
}

static int check_groups(struct cfg *c, int groups, int n, const int *ch)
{
	for (int i = 0; i < n; i++)
		if (ch[i] % groups != 0)
			return cerr(c, -EBADMSG, "key \"norm_num_groups\": %d does not divide "
			            "block_out_channels[%d] = %d", groups, i, ch[i]);
	return 0;
}

/* ---- unet ---------------------------------------------------------------------------- */

static int unet_parse(struct cfg *c, struct diff_unet_config *u)
{
	static const char *const cls[] = { "UNet2DConditionModel", NULL };
	static const char *const silu[] = { "silu", NULL };
	static const char *const positional[] = { "positional", NULL };
	static const char *const deflt[] = { "default", NULL };
	static const char *const mid[] = { "UNetMidBlock2DCrossAttn", NULL };
	static const char *const must_be_null[] = {
		"class_embed_type", "addition_embed_type", "encoder_hid_dim", "num_class_embeds",
		"projection_class_embeddings_input_dim", "addition_time_embed_dim",
		"encoder_hid_dim_type", "timestep_post_act", NULL,
	};
	int rc, n, kernel;
	bool b;
	memset(u, 0, sizeof *u);
	if ((rc = check_class(c, "_class_name", cls)) < 0 ||
	    (rc = cfg_channels(c, &u->n_blocks, u->block_out_channels)) < 0)
		return rc;
	n = u->n_blocks;
	if ((rc = cfg_int(c, "in_channels", true, 4, 1, 1 << 16, &u->in_channels)) < 0 ||
	    (rc = cfg_int(c, "out_channels", true, 4, 1, 1 << 16, &u->out_channels)) < 0 ||
	    (rc = cfg_int(c, "layers_per_block", true, 2, 1, 64, &u->layers_per_block)) < 0 ||
	    (rc = cfg_blocks(c, "down_block_types", n, DIFF_BLOCK_CROSS_ATTN_DOWN, DIFF_BLOCK_DOWN,
	                     u->down_blocks)) < 0 ||
	    (rc = cfg_blocks(c, "up_block_types", n, DIFF_BLOCK_UP, DIFF_BLOCK_CROSS_ATTN_UP,
	                     u->up_blocks)) < 0 ||
	    (rc = cfg_int(c, "cross_attention_dim", true, 1280, 1, 1 << 16,
	                  &u->cross_attention_dim)) < 0 ||
	    (rc = cfg_int(c, "sample_size", false, 64, 1, 1 << 16, &u->sample_size)) < 0 ||
	    (rc = cfg_int(c, "norm_num_groups", false, 32, 1, 1 << 16, &u->norm_num_groups)) < 0 ||
	    (rc = cfg_float(c, "norm_eps", 1e-5, 0.0, 1.0, &u->norm_eps)) < 0 ||
	    (rc = cfg_bool(c, "use_linear_projection", false, &u->use_linear_projection)) < 0 ||
	    (rc = cfg_bool(c, "upcast_attention", false, &u->upcast_attention)) < 0 ||
	    (rc = cfg_bool(c, "flip_sin_to_cos", true, &u->flip_sin_to_cos)) < 0 ||
	    (rc = cfg_int(c, "freq_shift", false, 0, 0, 1 << 16, &u->freq_shift)) < 0 ||
	    (rc = cfg_bool(c, "center_input_sample", false, &u->center_input_sample)) < 0 ||
	    (rc = cfg_int(c, "downsample_padding", false, 1, 0, 16, &u->downsample_padding)) < 0 ||
	    (rc = cfg_float(c, "mid_block_scale_factor", 1.0, 0.0, 1e6,
	                    &u->mid_block_scale_factor)) < 0 ||
	    (rc = cfg_int(c, "time_cond_proj_dim", false, 0, 1, 1 << 16, &u->time_cond_proj_dim)) < 0 ||
	    (rc = cfg_int(c, "time_embedding_dim", false, 4 * u->block_out_channels[0], 1, 1 << 20,
	                  &u->time_embed_dim)) < 0 ||
	    (rc = check_groups(c, u->norm_num_groups, n, u->block_out_channels)) < 0)
		return rc;
	/* heads: num_attention_heads when given, else attention_head_dim (see pipeline.h) */
	const char *hk = cfg_get(c, "num_attention_heads") ? "num_attention_heads" : "attention_head_dim";
	if (cfg_get(c, hk) == NULL) {
		for (int i = 0; i < n; i++)
			u->attention_heads[i] = 8;
	} else if ((rc = cfg_int_list(c, hk, true, n, 1, 1 << 16, u->attention_heads)) < 0) {
		return rc;
	}
	if (cfg_get(c, "transformer_layers_per_block") == NULL) {
		for (int i = 0; i < n; i++)
			u->transformer_layers[i] = 1;
	} else if ((rc = cfg_int_list(c, "transformer_layers_per_block", true, n, 1, 64,
	                              u->transformer_layers)) < 0) {
		return rc;
	}
	for (int i = 0; i < n; i++)
		if (u->block_out_channels[i] % u->attention_heads[i] != 0)
			return cerr(c, -EBADMSG, "key \"%s\": %d heads do not divide block_out_channels[%d] "
			            "= %d", hk, u->attention_heads[i], i, u->block_out_channels[i]);
	/* features of other UNets: refuse rather than compute something else */
	for (const char *const *k = must_be_null; *k; k++)
		if ((rc = cfg_absent(c, *k)) < 0)
			return rc;
	if ((rc = cfg_choice(c, "act_fn", "silu", silu, NULL, 0)) < 0 ||
	    (rc = cfg_choice(c, "time_embedding_type", "positional", positional, NULL, 0)) < 0 ||
	    (rc = cfg_choice(c, "resnet_time_scale_shift", "default", deflt, NULL, 0)) < 0 ||
	    (rc = cfg_choice(c, "attention_type", "default", deflt, NULL, 0)) < 0)
		return rc;
	json_t *mb = json_object_get(c->root, "mid_block_type");
	u->has_mid_block = !json_is_null(mb);
	if (u->has_mid_block && (rc = cfg_choice(c, "mid_block_type", mid[0], mid, NULL, 0)) < 0)
		return rc;
	json_t *oca = cfg_get(c, "only_cross_attention");
	if (json_is_true(oca) || (json_is_array(oca) && json_array_size(oca) > 0 &&
	                          json_is_true(json_array_get(oca, 0))))
		return cerr(c, -ENOTSUP, "key \"only_cross_attention\": only false is supported");
	if ((rc = cfg_bool(c, "dual_cross_attention", false, &b)) < 0)
		return rc;
	if (b)
		return cerr(c, -ENOTSUP, "key \"dual_cross_attention\": only false is supported");
	if ((rc = cfg_int(c, "conv_in_kernel", false, 3, 3, 3, &kernel)) < 0 ||
	    (rc = cfg_int(c, "conv_out_kernel", false, 3, 3, 3, &kernel)) < 0)
		return rc;
	return 0;
}

int diff_unet_config_load(const char *path, struct diff_unet_config *u, char *err, size_t errlen)
{
	struct cfg c;
	int rc = cfg_open(&c, path, err, errlen);
	if (rc == 0)
		rc = unet_parse(&c, u);
	json_decref(c.root);
	return rc;
}

/* ---- vae ----------------------------------------------------------------------------- */

static int vae_parse(struct cfg *c, struct diff_vae_config *v)
{
	static const char *const cls[] = { "AutoencoderKL", NULL };
	static const char *const silu[] = { "silu", NULL };
	enum diff_block blocks[DIFF_MAX_BLOCKS];
	int rc;
	memset(v, 0, sizeof *v);
	if ((rc = check_class(c, "_class_name", cls)) < 0 ||
	    (rc = cfg_channels(c, &v->n_blocks, v->block_out_channels)) < 0 ||
	    (rc = cfg_blocks(c, "down_block_types", v->n_blocks, DIFF_BLOCK_DOWN_ENCODER,
	                     DIFF_BLOCK_DOWN_ENCODER, blocks)) < 0 ||
	    (rc = cfg_blocks(c, "up_block_types", v->n_blocks, DIFF_BLOCK_UP_DECODER,
	                     DIFF_BLOCK_UP_DECODER, blocks)) < 0 ||
	    (rc = cfg_int(c, "in_channels", false, 3, 1, 1 << 16, &v->in_channels)) < 0 ||
	    (rc = cfg_int(c, "out_channels", false, 3, 1, 1 << 16, &v->out_channels)) < 0 ||
	    (rc = cfg_int(c, "layers_per_block", false, 1, 1, 64, &v->layers_per_block)) < 0 ||
	    (rc = cfg_int(c, "latent_channels", false, 4, 1, 1 << 16, &v->latent_channels)) < 0 ||
	    (rc = cfg_int(c, "norm_num_groups", false, 32, 1, 1 << 16, &v->norm_num_groups)) < 0 ||
	    (rc = cfg_int(c, "sample_size", false, 32, 1, 1 << 20, &v->sample_size)) < 0 ||
	    (rc = cfg_float(c, "scaling_factor", 0.18215, 1e-9, 1e9, &v->scaling_factor)) < 0 ||
	    (rc = cfg_float(c, "shift_factor", 0.0, -1e9, 1e9, &v->shift_factor)) < 0 ||
	    (rc = cfg_bool(c, "use_quant_conv", true, &v->use_quant_conv)) < 0 ||
	    (rc = cfg_bool(c, "use_post_quant_conv", true, &v->use_post_quant_conv)) < 0 ||
	    (rc = cfg_bool(c, "mid_block_add_attention", true, &v->mid_block_add_attention)) < 0 ||
	    (rc = cfg_bool(c, "force_upcast", true, &v->force_upcast)) < 0 ||
	    (rc = cfg_choice(c, "act_fn", "silu", silu, NULL, 0)) < 0 ||
	    (rc = check_groups(c, v->norm_num_groups, v->n_blocks, v->block_out_channels)) < 0)
		return rc;
	return 0;
}

int diff_vae_config_load(const char *path, struct diff_vae_config *v, char *err, size_t errlen)
{
	struct cfg c;
	int rc = cfg_open(&c, path, err, errlen);
	if (rc == 0)
		rc = vae_parse(&c, v);
	json_decref(c.root);
	return rc;
}

/* ---- text encoder --------------------------------------------------------------------- */

static int clip_parse(struct cfg *c, struct diff_clip_config *t)
{
	static const char *const mt[] = { "clip_text_model", NULL };
	static const char *const acts[] = { "quick_gelu", "gelu", NULL };
	char act[DIFF_NAME_MAX];
	int rc;
	memset(t, 0, sizeof *t);
	json_t *arch = cfg_get(c, "architectures");
	if (arch) {
		const char *a = json_string_value(json_array_get(arch, 0));
		if (a == NULL || (strcmp(a, "CLIPTextModel") != 0 &&
		                  strcmp(a, "CLIPTextModelWithProjection") != 0))
			return cerr(c, -ENOTSUP, "key \"architectures\": \"%s\" is not supported "
			            "(supported: CLIPTextModel)", a ? a : "?");
	}
	if ((rc = check_class(c, "model_type", mt)) < 0 ||
	    (rc = cfg_int(c, "hidden_size", true, 512, 1, 1 << 16, &t->hidden_size)) < 0 ||
	    (rc = cfg_int(c, "intermediate_size", true, 2048, 1, 1 << 20, &t->intermediate_size)) < 0 ||
	    (rc = cfg_int(c, "num_hidden_layers", true, 12, 1, 1024, &t->num_hidden_layers)) < 0 ||
	    (rc = cfg_int(c, "num_attention_heads", true, 8, 1, 1 << 12, &t->num_attention_heads)) < 0 ||
	    (rc = cfg_int(c, "vocab_size", true, 49408, 1, 1 << 24, &t->vocab_size)) < 0 ||
	    (rc = cfg_int(c, "max_position_embeddings", false, 77, 1, 1 << 16,
	                  &t->max_position_embeddings)) < 0 ||
	    (rc = cfg_float(c, "layer_norm_eps", 1e-5, 0.0, 1.0, &t->layer_norm_eps)) < 0 ||
	    (rc = cfg_int(c, "bos_token_id", false, 49406, 0, 1 << 24, &t->bos_token_id)) < 0 ||
	    (rc = cfg_int(c, "eos_token_id", false, 49407, 0, 1 << 24, &t->eos_token_id)) < 0 ||
	    (rc = cfg_int(c, "pad_token_id", false, 1, 0, 1 << 24, &t->pad_token_id)) < 0 ||
	    (rc = cfg_int(c, "projection_dim", false, 512, 1, 1 << 16, &t->projection_dim)) < 0 ||
	    (rc = cfg_choice(c, "hidden_act", "quick_gelu", acts, act, sizeof act)) < 0)
		return rc;
	t->hidden_act = strcmp(act, "gelu") == 0 ? DIFF_ACT_GELU : DIFF_ACT_QUICK_GELU;
	if (t->hidden_size % t->num_attention_heads != 0)
		return cerr(c, -EBADMSG, "key \"num_attention_heads\": %d heads do not divide "
		            "hidden_size %d", t->num_attention_heads, t->hidden_size);
	return 0;
}

int diff_clip_config_load(const char *path, struct diff_clip_config *t, char *err, size_t errlen)
{
	struct cfg c;
	int rc = cfg_open(&c, path, err, errlen);
	if (rc == 0)
		rc = clip_parse(&c, t);
	json_decref(c.root);
	return rc;
}

/* ---- scheduler ------------------------------------------------------------------------ */

static int sched_parse(struct cfg *c, struct diff_scheduler_config *s)
{
	static const char *const sched[] = { "linear", "scaled_linear", "squaredcos_cap_v2", NULL };
	static const char *const pred[] = { "epsilon", "v_prediction", "sample", NULL };
	static const char *const spacing[] = { "leading", "trailing", "linspace", NULL };
	int rc;
	memset(s, 0, sizeof *s);
	if ((rc = cfg_str(c, "_class_name", true, "", s->class_name, sizeof s->class_name)) < 0 ||
	    (rc = cfg_int(c, "num_train_timesteps", false, 1000, 1, 100000,
	                  &s->num_train_timesteps)) < 0 ||
	    (rc = cfg_float(c, "beta_start", 0.0001, 0.0, 1.0, &s->beta_start)) < 0 ||
	    (rc = cfg_float(c, "beta_end", 0.02, 0.0, 1.0, &s->beta_end)) < 0 ||
	    (rc = cfg_choice(c, "beta_schedule", "linear", sched, s->beta_schedule,
	                     sizeof s->beta_schedule)) < 0 ||
	    (rc = cfg_choice(c, "prediction_type", "epsilon", pred, s->prediction_type,
	                     sizeof s->prediction_type)) < 0 ||
	    (rc = cfg_bool(c, "set_alpha_to_one", true, &s->set_alpha_to_one)) < 0 ||
	    (rc = cfg_int(c, "steps_offset", false, 0, 0, 100000, &s->steps_offset)) < 0 ||
	    (rc = cfg_choice(c, "timestep_spacing", "leading", spacing, s->timestep_spacing,
	                     sizeof s->timestep_spacing)) < 0 ||
	    (rc = cfg_bool(c, "clip_sample", true, &s->clip_sample)) < 0 ||
	    (rc = cfg_float(c, "clip_sample_range", 1.0, 0.0, 1e9, &s->clip_sample_range)) < 0 ||
	    (rc = cfg_bool(c, "thresholding", false, &s->thresholding)) < 0 ||
	    (rc = cfg_bool(c, "rescale_betas_zero_snr", false, &s->rescale_betas_zero_snr)) < 0 ||
	    (rc = cfg_absent(c, "trained_betas")) < 0)
		return rc;
	if (s->beta_end < s->beta_start)
		return cerr(c, -EBADMSG, "key \"beta_end\": %g is smaller than beta_start %g",
		            s->beta_end, s->beta_start);
	return 0;
}

int diff_scheduler_config_load(const char *path, struct diff_scheduler_config *s, char *err,
                               size_t errlen)
{
	struct cfg c;
	int rc = cfg_open(&c, path, err, errlen);
	if (rc == 0)
		rc = sched_parse(&c, s);
	json_decref(c.root);
	return rc;
}

/* ---- model_index.json ------------------------------------------------------------------ */

/* key: ["library", "Class"]; class is checked against allowed (NULL: any). */
static int index_part(struct cfg *c, const char *key, const char *const *allowed, char *out,
                      size_t outlen)
{
	json_t *v = cfg_get(c, key);
	if (v == NULL)
		return missing(c, key);
	const char *cls = json_string_value(json_array_get(v, 1));
	if (!json_is_array(v) || json_array_size(v) != 2 || cls == NULL)
		return cerr(c, -EBADMSG, "key \"%s\": not a [library, class] pair", key);
	if (allowed) {
		const char *const *a;
		for (a = allowed; *a && strcmp(*a, cls) != 0; a++)
			;
		if (*a == NULL)
			return cerr(c, -ENOTSUP, "key \"%s\": class \"%s\" is not supported (supported: "
			            "%s)", key, cls, allowed[0]);
	}
	if (out)
		snprintf(out, outlen, "%s", cls);
	return 0;
}

int diff_model_index_load(const char *path, struct diff_model_index *m, char *err, size_t errlen)
{
	static const char *const unet[] = { "UNet2DConditionModel", NULL };
	static const char *const vae[] = { "AutoencoderKL", NULL };
	static const char *const te[] = { "CLIPTextModel", "CLIPTextModelWithProjection", NULL };
	static const char *const tok[] = { "CLIPTokenizer", "CLIPTokenizerFast", NULL };
	struct cfg c;
	int rc = cfg_open(&c, path, err, errlen);
	if (rc < 0)
		return rc;
	memset(m, 0, sizeof *m);
	if ((rc = cfg_str(&c, "_class_name", true, "", m->class_name, sizeof m->class_name)) < 0 ||
	    (rc = cfg_str(&c, "_diffusers_version", false, "", m->diffusers_version,
	                  sizeof m->diffusers_version)) < 0 ||
	    (rc = index_part(&c, "unet", unet, NULL, 0)) < 0 ||
	    (rc = index_part(&c, "vae", vae, NULL, 0)) < 0 ||
	    (rc = index_part(&c, "text_encoder", te, NULL, 0)) < 0 ||
	    (rc = index_part(&c, "tokenizer", tok, NULL, 0)) < 0 ||
	    (rc = index_part(&c, "scheduler", NULL, m->scheduler_class, sizeof m->scheduler_class)) < 0)
		goto out;
out:
	json_decref(c.root);
	return rc;
}
