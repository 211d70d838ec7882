/* inferd-mkmodel diffusion --out DIR [--seed N] [--size tiny|small] [--dtype f32|f16]
 *
 * Writes a complete diffusers-layout Stable Diffusion pipeline with random
 * weights: model_index.json, scheduler/, text_encoder/ (CLIPTextModel),
 * tokenizer/ (CLIP byte-level BPE: vocab.json, merges.txt), unet/
 * (UNet2DConditionModel) and vae/ (AutoencoderKL), with the tensor names and
 * shapes diffusers and transformers write (the lists of pipeline.h's
 * diff_*_tensors(), which the loader checks against).
 *
 * tiny: the sizes of diffusers' own tiny test pipeline (UNet block_out_channels
 * [32, 64], 2 layers per block, cross-attention dim 32, 8 heads; VAE [32, 64];
 * CLIP width 32, 5 layers, 4 heads, intermediate 37, vocabulary 1000).
 * small: three UNet levels [64, 128, 256], VAE [64, 128, 128], CLIP width 64.
 *
 * Weights are deterministic for a seed: tensor T draws from a splitmix64 stream
 * seeded with splitmix64(seed XOR fnv1a64(T's name)) (as the llm generator),
 * so f32 and f16 files of one seed hold the same values up to rounding.
 * Linear/conv weights N(0, 1/fan_in), biases N(0, 0.02^2), norm scales
 * 1 + N(0, 0.02^2), embeddings N(0, 1).
 *
 * The vocabulary is CLIP's layout: the 256 byte symbols of the GPT-2
 * byte-to-unicode map, the same 256 with "</w>", one token per merge (in rank
 * order), then <|startoftext|> and <|endoftext|>. Merges are prefix merges of
 * a fixed word list ("c a" -> "ca", "ca t</w>" -> "cat</w>"), so every merge's
 * parts and result are tokens and every part exists before its merge's rank.
 */
#include "mkmodel-diffusion.h"

#include "dtype.h"
#include "pipeline.h"
#include "safetensors.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct dopts {
	const char *out;
	unsigned long long seed;
	bool small, f16;
};

/* ---- deterministic random numbers ---------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double normal(uint64_t *s)
{
	double u1 = ((double)(splitmix64(s) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
	double u2 = ((double)(splitmix64(s) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static uint64_t fnv1a64(const char *str)
{
	uint64_t h = 1469598103934665603ull;
	for (; *str; str++)
		h = (h ^ (unsigned char)*str) * 1099511628211ull;
	return h;
}

/* ---- sizes --------------------------------------------------------------------------- */

static void sizes(const struct dopts *o, struct diff_unet_config *u, struct diff_vae_config *v,
                  struct diff_clip_config *t)
{
	memset(u, 0, sizeof *u);
	memset(v, 0, sizeof *v);
	memset(t, 0, sizeof *t);
	int nb = o->small ? 3 : 2;
	static const int uch_tiny[] = { 32, 64 }, uch_small[] = { 64, 128, 256 };
	static const int vch_tiny[] = { 32, 64 }, vch_small[] = { 64, 128, 128 };
	u->in_channels = u->out_channels = 4;
	u->n_blocks = v->n_blocks = nb;
	for (int i = 0; i < nb; i++) {
		u->block_out_channels[i] = o->small ? uch_small[i] : uch_tiny[i];
		v->block_out_channels[i] = o->small ? vch_small[i] : vch_tiny[i];
		u->down_blocks[i] = i < nb - 1 ? DIFF_BLOCK_CROSS_ATTN_DOWN : DIFF_BLOCK_DOWN;
		u->up_blocks[i] = i == 0 ? DIFF_BLOCK_UP : DIFF_BLOCK_CROSS_ATTN_UP;
		u->attention_heads[i] = 8;
		u->transformer_layers[i] = 1;
	}
	u->layers_per_block = 2;
	u->cross_attention_dim = o->small ? 64 : 32;
	u->sample_size = 32;
	u->norm_num_groups = 32;
	u->norm_eps = 1e-5f;
	u->flip_sin_to_cos = true;
	u->downsample_padding = 1;
	u->mid_block_scale_factor = 1.0f;
	u->has_mid_block = true;
	u->time_embed_dim = 4 * u->block_out_channels[0];

	v->in_channels = v->out_channels = 3;
	v->layers_per_block = o->small ? 2 : 1;
	v->latent_channels = 4;
	v->norm_num_groups = 32;
	v->sample_size = u->sample_size << (nb - 1);
	v->scaling_factor = 0.18215f;
	v->use_quant_conv = v->use_post_quant_conv = v->mid_block_add_attention = true;

	t->hidden_size = o->small ? 64 : 32;
	t->intermediate_size = o->small ? 256 : 37;
	t->num_hidden_layers = o->small ? 6 : 5;
	t->num_attention_heads = o->small ? 8 : 4;
	t->max_position_embeddings = 77;
	t->vocab_size = o->small ? 2000 : 1000;
	t->hidden_act = DIFF_ACT_QUICK_GELU;
	t->layer_norm_eps = 1e-5f;
	t->bos_token_id = t->vocab_size - 2;
	t->eos_token_id = t->pad_token_id = t->vocab_size - 1;
	t->projection_dim = t->hidden_size;
}

/* ---- files --------------------------------------------------------------------------- */

static int make_dir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "inferd-mkmodel: cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static void path_of(char *buf, size_t len, const char *dir, const char *part, const char *file)
{
	snprintf(buf, len, "%s/%s%s%s", dir, part, *part ? "/" : "", file);
}

/* Writes obj (reference stolen) as indented JSON. */
static int write_json(const char *dir, const char *part, const char *file, json_t *obj)
{
	char path[4096];
	path_of(path, sizeof path, dir, part, file);
	int rc = obj ? json_dump_file(obj, path, JSON_INDENT(2) | JSON_SORT_KEYS) : -1;
	json_decref(obj);
	if (rc < 0)
		fprintf(stderr, "inferd-mkmodel: cannot write %s\n", path);
	return rc;
}

static json_t *int_list(const int *v, int n)
{
	json_t *a = json_array();
	for (int i = 0; a && i < n; i++)
		json_array_append_new(a, json_integer(v[i]));
	return a;
}

static json_t *block_list(const enum diff_block *b, int n)
{
	json_t *a = json_array();
	for (int i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(diff_block_name(b[i])));
	return a;
}

#define DIFFUSERS_VERSION "0.27.2"

static json_t *unet_json(const struct diff_unet_config *u)
{
	json_t *j = json_object();
	if (j == NULL)
		return NULL;
#define SET(k, v) json_object_set_new(j, k, v)
	SET("_class_name", json_string("UNet2DConditionModel"));
	SET("_diffusers_version", json_string(DIFFUSERS_VERSION));
	SET("act_fn", json_string("silu"));
	SET("addition_embed_type", json_null());
	SET("attention_head_dim", json_integer(u->attention_heads[0]));
	SET("block_out_channels", int_list(u->block_out_channels, u->n_blocks));
	SET("center_input_sample", json_false());
	SET("class_embed_type", json_null());
	SET("conv_in_kernel", json_integer(3));
	SET("conv_out_kernel", json_integer(3));
	SET("cross_attention_dim", json_integer(u->cross_attention_dim));
	SET("down_block_types", block_list(u->down_blocks, u->n_blocks));
	SET("downsample_padding", json_integer(u->downsample_padding));
	SET("dropout", json_real(0.0));
	SET("dual_cross_attention", json_false());
	SET("flip_sin_to_cos", json_true());
	SET("freq_shift", json_integer(0));
	SET("in_channels", json_integer(u->in_channels));
	SET("layers_per_block", json_integer(u->layers_per_block));
	SET("mid_block_scale_factor", json_integer(1));
	SET("mid_block_type", json_string("UNetMidBlock2DCrossAttn"));
	SET("norm_eps", json_real(u->norm_eps));
	SET("norm_num_groups", json_integer(u->norm_num_groups));
	SET("num_attention_heads", json_null());
	SET("num_class_embeds", json_null());
	SET("only_cross_attention", json_false());
	SET("out_channels", json_integer(u->out_channels));
	SET("resnet_time_scale_shift", json_string("default"));
	SET("sample_size", json_integer(u->sample_size));
	SET("time_cond_proj_dim", json_null());
	SET("time_embedding_type", json_string("positional"));
	SET("transformer_layers_per_block", json_integer(1));
	SET("up_block_types", block_list(u->up_blocks, u->n_blocks));
	SET("upcast_attention", json_false());
	SET("use_linear_projection", json_false());
#undef SET
	return j;
}

static json_t *vae_json(const struct diff_vae_config *v)
{
	enum diff_block down[DIFF_MAX_BLOCKS], up[DIFF_MAX_BLOCKS];
	for (int i = 0; i < v->n_blocks; i++) {
		down[i] = DIFF_BLOCK_DOWN_ENCODER;
		up[i] = DIFF_BLOCK_UP_DECODER;
	}
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:b, s:i, s:i, s:i, s:i, s:n, s:n, s:i, "
	                 "s:f, s:n, s:o, s:b, s:b, s:b, s:i}",
	                 "_class_name", "AutoencoderKL", "_diffusers_version", DIFFUSERS_VERSION,
	                 "act_fn", "silu", "block_out_channels", int_list(v->block_out_channels, v->n_blocks),
	                 "down_block_types", block_list(down, v->n_blocks), "force_upcast", 1,
	                 "in_channels", v->in_channels, "latent_channels", v->latent_channels,
	                 "layers_per_block", v->layers_per_block,
	                 "norm_num_groups", v->norm_num_groups, "latents_mean", "latents_std",
	                 "out_channels", v->out_channels, "scaling_factor", (double)v->scaling_factor,
	                 "shift_factor", "up_block_types", block_list(up, v->n_blocks),
	                 "use_quant_conv", 1, "use_post_quant_conv", 1, "mid_block_add_attention", 1,
	                 "sample_size", v->sample_size);
}

static json_t *clip_json(const struct diff_clip_config *t)
{
	return json_pack("{s:[s], s:f, s:i, s:f, s:i, s:s, s:i, s:f, s:f, s:i, s:f, s:i, s:s, "
	                 "s:i, s:i, s:i, s:i, s:s, s:s, s:i}",
	                 "architectures", "CLIPTextModel", "attention_dropout", 0.0,
	                 "bos_token_id", t->bos_token_id, "dropout", 0.0,
	                 "eos_token_id", t->eos_token_id, "hidden_act", "quick_gelu",
	                 "hidden_size", t->hidden_size, "initializer_factor", 1.0,
	                 "initializer_range", 0.02, "intermediate_size", t->intermediate_size,
	                 "layer_norm_eps", (double)t->layer_norm_eps,
	                 "max_position_embeddings", t->max_position_embeddings,
	                 "model_type", "clip_text_model",
	                 "num_attention_heads", t->num_attention_heads,
	                 "num_hidden_layers", t->num_hidden_layers, "pad_token_id", t->pad_token_id,
	                 "projection_dim", t->projection_dim, "torch_dtype", "float32",
	                 "transformers_version", "4.40.0", "vocab_size", t->vocab_size);
}

static json_t *scheduler_json(void)
{
	return json_pack("{s:s, s:s, s:f, s:s, s:f, s:b, s:i, s:s, s:b, s:f, s:i, s:b, s:b, "
	                 "s:s, s:n}",
	                 "_class_name", "DDIMScheduler", "_diffusers_version", DIFFUSERS_VERSION,
	                 "beta_end", 0.012, "beta_schedule", "scaled_linear", "beta_start", 0.00085,
	                 "clip_sample", 0, "num_train_timesteps", 1000,
	                 "prediction_type", "epsilon", "set_alpha_to_one", 0,
	                 "clip_sample_range", 1.0, "steps_offset", 1, "thresholding", 0,
	                 "rescale_betas_zero_snr", 0, "timestep_spacing", "leading",
	                 "trained_betas");
}

static json_t *index_json(void)
{
	return json_pack("{s:s, s:s, s:[n,n], s:[n,n], s:b, s:[s,s], s:[s,s], s:[s,s], s:[s,s], "
	                 "s:[s,s]}",
	                 "_class_name", "StableDiffusionPipeline", "_diffusers_version", DIFFUSERS_VERSION,
	                 "feature_extractor", "safety_checker", "requires_safety_checker", 0,
	                 "scheduler", "diffusers", "DDIMScheduler",
	                 "text_encoder", "transformers", "CLIPTextModel",
	                 "tokenizer", "transformers", "CLIPTokenizer",
	                 "unet", "diffusers", "UNet2DConditionModel",
	                 "vae", "diffusers", "AutoencoderKL");
}

/* ---- weights ------------------------------------------------------------------------- */

struct gtensor {
	char *name;
	enum diff_tensor_kind kind;
	uint64_t n, fan_in;
	bool i64;              /* position ids: 0, 1, 2, ... */
};

struct gen {
	struct st_writer *w;
	struct gtensor *t;
	size_t n, cap;
	uint64_t seed;
	bool f16;
};

static int gen_add(struct gen *g, const char *name, const char *dtype, uint32_t nd,
                   const int64_t *shape, enum diff_tensor_kind kind, bool i64)
{
	int rc = st_writer_add_tensor(g->w, name, dtype, nd, shape);
	if (rc < 0)
		return rc;
	if (g->n == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 256;
		struct gtensor *p = realloc(g->t, cap * sizeof *p);
		if (p == NULL)
			return -ENOMEM;
		g->t = p;
		g->cap = cap;
	}
	struct gtensor *t = &g->t[g->n];
	*t = (struct gtensor){ .kind = kind, .n = 1, .fan_in = 1, .i64 = i64 };
	for (uint32_t d = 0; d < nd; d++) {
		t->n *= (uint64_t)shape[d];
		if (d)
			t->fan_in *= (uint64_t)shape[d];
	}
	if ((t->name = strdup(name)) == NULL)
		return -ENOMEM;
	g->n++;
	return 0;
}

static int plan_cb(const char *name, const char *alt, uint32_t nd, const int64_t *shape,
                   enum diff_tensor_kind kind, void *arg)
{
	struct gen *g = arg;
	(void)alt; /* the generator writes the current names */
	return gen_add(g, name, g->f16 ? "F16" : "F32", nd, shape, kind, false);
}

static int fill(size_t idx, void *buf, size_t nbytes, void *arg)
{
	const struct gen *g = arg;
	const struct gtensor *t = &g->t[idx];
	uint8_t *out = buf;
	if (t->i64) {
		for (uint64_t i = 0; i < t->n; i++)
			for (int b = 0; b < 8; b++)
				out[8 * i + (uint64_t)b] = (uint8_t)(i >> (8 * b));
		return 0;
	}
	if (nbytes != t->n * (g->f16 ? 2 : 4))
		return -EINVAL;
	uint64_t s = g->seed ^ fnv1a64(t->name);
	s = splitmix64(&s);
	double sd = 1.0, mean = 0.0;
	switch (t->kind) {
	case DIFF_TENSOR_WEIGHT: sd = 1.0 / sqrt((double)t->fan_in); break;
	case DIFF_TENSOR_BIAS: sd = 0.02; break;
	case DIFF_TENSOR_NORM: sd = 0.02; mean = 1.0; break;
	case DIFF_TENSOR_EMBED: sd = 1.0; break;
	}
	for (uint64_t i = 0; i < t->n; i++) {
		float v = (float)(mean + sd * normal(&s));
		if (g->f16) {
			uint16_t h = dtype_f32_to_f16(v);
			out[2 * i] = (uint8_t)h;
			out[2 * i + 1] = (uint8_t)(h >> 8);
		} else {
			memcpy(out + 4 * i, &v, 4);
		}
	}
	return 0;
}

/* Writes one weight file: the walk's tensors, plus CLIP's I64 position ids. */
static int write_weights(const struct dopts *o, const char *part, const char *file,
                         int (*walk)(const void *, diff_tensor_fn, void *), const void *cfg,
                         int position_ids)
{
	struct gen g = { .seed = o->seed, .f16 = o->f16 };
	char path[4096], err[512];
	int rc = -ENOMEM;
	path_of(path, sizeof path, o->out, part, file);
	if ((g.w = st_writer_new()) == NULL || st_writer_add_meta(g.w, "format", "pt") < 0)
		goto out;
	if ((rc = walk(cfg, plan_cb, &g)) < 0)
		goto out;
	if (position_ids) {
		int64_t shape[2] = { 1, position_ids };
		if ((rc = gen_add(&g, "text_model.embeddings.position_ids", "I64", 2, shape,
		                  DIFF_TENSOR_EMBED, true)) < 0)
			goto out;
	}
	if ((rc = st_writer_write(g.w, path, fill, &g, err, sizeof err)) < 0) {
		fprintf(stderr, "inferd-mkmodel: %s\n", err);
		goto done;
	}
out:
	if (rc < 0)
		fprintf(stderr, "inferd-mkmodel: %s: %s\n", path, strerror(-rc));
done:
	for (size_t i = 0; i < g.n; i++)
		free(g.t[i].name);
	free(g.t);
	st_writer_free(g.w);
	return rc;
}

static int walk_unet(const void *c, diff_tensor_fn fn, void *arg) { return diff_unet_tensors(c, fn, arg); }
static int walk_vae(const void *c, diff_tensor_fn fn, void *arg) { return diff_vae_tensors(c, fn, arg); }
static int walk_clip(const void *c, diff_tensor_fn fn, void *arg) { return diff_clip_tensors(c, fn, arg); }

/* ---- tokenizer ----------------------------------------------------------------------- */

static const char *const words[] = {
	"a", "photo", "of", "the", "cat", "dog", "red", "blue", "green", "tree", "house", "sky",
	"in", "on", "with", "and", "painting", "portrait", "city", "street", "night", "sun",
	"forest", "mountain", "river", "sea", "beach", "flower", "garden", "car", "bird", "man",
	"woman", "girl", "boy", "face", "light", "dark", "art", "style", "high", "quality",
	"detailed", "digital", "oil", "watercolor", "sketch", "anime", "cinematic", "lighting",
	"sunset", "snow", "rain", "cloud", "castle", "dragon", "robot", "space", "star", "moon",
	"astronaut", "horse", "riding", "by", "an", "old", "young", "small", "big", "beautiful",
	"white", "black", "yellow", "orange", "purple", "golden", "wooden", "stone", "glass",
};

struct vocab {
	char **tok;            /* id -> token */
	size_t n, cap;
	char (*merges)[2][48]; /* rank -> pair */
	size_t n_merges;
};

static long vocab_find(const struct vocab *v, const char *s)
{
	for (size_t i = v->n; i-- > 0;)
		if (strcmp(v->tok[i], s) == 0)
			return (long)i;
	return -1;
}

static int vocab_add(struct vocab *v, const char *s)
{
	if (v->n == v->cap)
		return -ENOSPC;
	return (v->tok[v->n++] = strdup(s)) ? 0 : -ENOMEM;
}

/* GPT-2 byte-to-unicode: printable bytes stand for themselves, the others are
 * mapped in order to U+0100 upwards. Symbol of byte b as UTF-8 into out. */
static void byte_symbol(unsigned b, char *out)
{
	unsigned cp = b;
	if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174))) {
		unsigned n = 0;
		for (unsigned x = 0; x < b; x++)
			if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174)))
				n++;
		cp = 256 + n;
	}
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = '\0';
	} else {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		out[2] = '\0';
	}
}

/* Merges "prefix last" for the prefixes of word (ASCII letters), the last
 * character carrying </w>. */
static int add_word(struct vocab *v, size_t n_target, const char *word)
{
	char prefix[96] = "", piece[16], joined[96];
	size_t len = strlen(word);
	if (len == 0 || len > 30)
		return 0;
	prefix[0] = word[0];
	prefix[1] = '\0';
	if (len == 1)
		return 0;
	for (size_t i = 1; i < len && v->n < n_target; i++) {
		snprintf(piece, sizeof piece, "%c%s", word[i], i == len - 1 ? "</w>" : "");
		snprintf(joined, sizeof joined, "%s%s", prefix, piece);
		if (vocab_find(v, joined) < 0) {
			int rc = vocab_add(v, joined);
			if (rc < 0)
				return rc;
			snprintf(v->merges[v->n_merges][0], 48, "%.40s", prefix);
			snprintf(v->merges[v->n_merges][1], 48, "%s", piece);
			v->n_merges++;
		}
		snprintf(prefix, sizeof prefix, "%s", joined);
	}
	return 0;
}

static void vocab_fini(struct vocab *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->tok[i]);
	free(v->tok);
	free(v->merges);
}

static int vocab_build(struct vocab *v, size_t size)
{
	char sym[8], w[48];
	int rc = 0;
	memset(v, 0, sizeof *v);
	v->cap = size;
	v->tok = calloc(size, sizeof *v->tok);
	v->merges = calloc(size, sizeof *v->merges);
	if (v->tok == NULL || v->merges == NULL)
		return -ENOMEM;
	/* byte symbols in the dict order of bytes_to_unicode(): printable ranges first */
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned b = 0; b < 256; b++) {
			bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
			if (printable != (pass == 0))
				continue;
			byte_symbol(b, sym);
			if ((rc = vocab_add(v, sym)) < 0)
				return rc;
		}
	}
	for (size_t i = 0; i < 256; i++) {
		snprintf(w, sizeof w, "%s</w>", v->tok[i]);
		if ((rc = vocab_add(v, w)) < 0)
			return rc;
	}
	size_t n_target = size - 2;
	for (size_t i = 0; i < sizeof words / sizeof words[0] && rc == 0; i++)
		rc = add_word(v, n_target, words[i]);
	/* then made-up syllable words until the vocabulary is full */
	static const char cons[] = "bcdfghklmnprstvz", vow[] = "aeiou";
	uint64_t s = 12345;
	while (rc == 0 && v->n < n_target) {
		size_t len = 2 + splitmix64(&s) % 4, k = 0;
		for (size_t i = 0; i < len; i++) {
			w[k++] = cons[splitmix64(&s) % 16];
			w[k++] = vow[splitmix64(&s) % 5];
		}
		w[k] = '\0';
		rc = add_word(v, n_target, w);
	}
	if (rc == 0 && (rc = vocab_add(v, "<|startoftext|>")) == 0)
		rc = vocab_add(v, "<|endoftext|>");
	return rc;
}

static int write_tokenizer(const struct dopts *o, const struct diff_clip_config *t)
{
	struct vocab v;
	char path[4096];
	int rc = vocab_build(&v, (size_t)t->vocab_size);
	json_t *j = rc == 0 ? json_object() : NULL;
	for (size_t i = 0; j && i < v.n; i++)
		json_object_set_new(j, v.tok[i], json_integer((json_int_t)i));
	if (j == NULL || json_object_size(j) != v.n) {
		fprintf(stderr, "inferd-mkmodel: cannot build the CLIP vocabulary\n");
		json_decref(j);
		vocab_fini(&v);
		return -1;
	}
	path_of(path, sizeof path, o->out, "tokenizer", "vocab.json");
	rc = json_dump_file(j, path, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(j);
	if (rc == 0) {
		path_of(path, sizeof path, o->out, "tokenizer", "merges.txt");
		FILE *f = fopen(path, "w");
		rc = f ? 0 : -1;
		if (f) {
			fprintf(f, "#version: 0.2\n");
			for (size_t i = 0; i < v.n_merges; i++)
				fprintf(f, "%s %s\n", v.merges[i][0], v.merges[i][1]);
			rc = fclose(f) == 0 ? 0 : -1;
		}
	}
	vocab_fini(&v);
	if (rc < 0) {
		fprintf(stderr, "inferd-mkmodel: cannot write %s\n", path);
		return -1;
	}
	rc = write_json(o->out, "tokenizer", "tokenizer_config.json",
	                json_pack("{s:b, s:s, s:b, s:s, s:s, s:i, s:s, s:s, s:s}",
	                          "add_prefix_space", 0, "bos_token", "<|startoftext|>",
	                          "do_lower_case", 1, "eos_token", "<|endoftext|>", "errors", "replace",
	                          "model_max_length", t->max_position_embeddings,
	                          "pad_token", "<|endoftext|>", "tokenizer_class", "CLIPTokenizer",
	                          "unk_token", "<|endoftext|>"));
	if (rc == 0)
		rc = write_json(o->out, "tokenizer", "special_tokens_map.json",
		                json_pack("{s:s, s:s, s:s, s:s}", "bos_token", "<|startoftext|>",
		                          "eos_token", "<|endoftext|>", "pad_token", "<|endoftext|>",
		                          "unk_token", "<|endoftext|>"));
	return rc;
}

/* ---- command line ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: inferd-mkmodel diffusion --out DIR [--seed N] [--size tiny|small]\n"
	        "           [--dtype f32|f16]\n"
	        "Writes a diffusers-layout Stable Diffusion pipeline with random weights\n"
	        "(deterministic for a seed) into DIR. Defaults: --size tiny --dtype f32 --seed 1.\n");
}

static int bad(const char *msg, const char *arg)
{
	fprintf(stderr, "inferd-mkmodel: diffusion: ");
	fprintf(stderr, msg, arg);
	fprintf(stderr, "\nTry 'inferd-mkmodel diffusion --help'.\n");
	return 2;
}

int mkmodel_diffusion_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "out", required_argument, NULL, 'o' }, { "seed", required_argument, NULL, 's' },
		{ "size", required_argument, NULL, 'S' }, { "dtype", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	struct dopts o = { .seed = 1 };
	struct diff_unet_config u;
	struct diff_vae_config v;
	struct diff_clip_config t;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
		switch (c) {
		case 'o': o.out = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'S':
			if (strcmp(optarg, "tiny") != 0 && strcmp(optarg, "small") != 0)
				return bad("--size: '%s' is not tiny or small", optarg);
			o.small = strcmp(optarg, "small") == 0;
			break;
		case 't':
			if (strcmp(optarg, "f32") != 0 && strcmp(optarg, "f16") != 0)
				return bad("--dtype: '%s' is not f32 or f16", optarg);
			o.f16 = strcmp(optarg, "f16") == 0;
			break;
		case 's': {
			char *end;
			errno = 0;
			o.seed = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end || optarg[0] == '-')
				return bad("--seed: '%s' is not an unsigned integer", optarg);
			break;
		}
		case ':': return bad("option %s needs a value", argv[optind - 1]);
		default: return bad("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bad("unexpected argument '%s'", argv[optind]);
	if (o.out == NULL)
		return bad("%s", "--out DIR is required");

	sizes(&o, &u, &v, &t);
	static const char *const parts[] = { "", "scheduler", "text_encoder", "tokenizer", "unet", "vae" };
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		char path[4096];
		path_of(path, sizeof path, o.out, parts[i], "");
		if (make_dir(path) < 0)
			return 1;
	}
	if (write_json(o.out, "", "model_index.json", index_json()) < 0 ||
	    write_json(o.out, "scheduler", "scheduler_config.json", scheduler_json()) < 0 ||
	    write_json(o.out, "text_encoder", "config.json", clip_json(&t)) < 0 ||
	    write_json(o.out, "unet", "config.json", unet_json(&u)) < 0 ||
	    write_json(o.out, "vae", "config.json", vae_json(&v)) < 0 ||
	    write_tokenizer(&o, &t) < 0 ||
	    write_weights(&o, "text_encoder", "model.safetensors", walk_clip, &t,
	                  t.max_position_embeddings) < 0 ||
	    write_weights(&o, "unet", "diffusion_pytorch_model.safetensors", walk_unet, &u, 0) < 0 ||
	    write_weights(&o, "vae", "diffusion_pytorch_model.safetensors", walk_vae, &v, 0) < 0)
		return 1;
	return 0;
}
