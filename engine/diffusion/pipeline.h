/* Diffusers-layout Stable Diffusion pipelines (SD 1.x / 2.x): the folder, its
 * config files and its weight files.
 *
 *   DIR/model_index.json
 *   DIR/scheduler/scheduler_config.json
 *   DIR/text_encoder/config.json + model.safetensors
 *   DIR/tokenizer/vocab.json + merges.txt
 *   DIR/unet/config.json + diffusion_pytorch_model.safetensors
 *   DIR/vae/config.json + diffusion_pytorch_model.safetensors
 * Weight files may also be the fp16 variant (model.fp16.safetensors,
 * diffusion_pytorch_model.fp16.safetensors); weights are F32, F16 or BF16.
 *
 * Conventions: 0 or a negative errno-style code; diff_pipeline_open() writes a
 * one-line reason naming the file and the key or tensor at fault into err.
 * Config keys: unknown keys are ignored; the keys that size the architecture
 * (listed in engine/README.md) are required; every other key takes diffusers'
 * (or transformers') default. Values outside what this engine runs (another
 * block type, activation, embedding type...) are -ENOTSUP with the key named.
 * Every tensor the configs imply (names as diffusers writes them, listed by
 * diff_*_tensors()) must be present with its exact shape; extra tensors are
 * ignored.
 */
#ifndef INFERD_ENGINE_DIFFUSION_PIPELINE_H
#define INFERD_ENGINE_DIFFUSION_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

#define DIFF_MAX_BLOCKS 8
#define DIFF_NAME_MAX 64

enum diff_block {
	DIFF_BLOCK_DOWN,            /* DownBlock2D: resnets + downsampler */
	DIFF_BLOCK_CROSS_ATTN_DOWN, /* CrossAttnDownBlock2D: resnets, transformers, downsampler */
	DIFF_BLOCK_UP,              /* UpBlock2D */
	DIFF_BLOCK_CROSS_ATTN_UP,   /* CrossAttnUpBlock2D */
	DIFF_BLOCK_DOWN_ENCODER,    /* VAE DownEncoderBlock2D */
	DIFF_BLOCK_UP_DECODER,      /* VAE UpDecoderBlock2D */
};

/* unet/config.json (UNet2DConditionModel) */
struct diff_unet_config {
	int in_channels, out_channels;              /* 4, 4 */
	int n_blocks;                               /* len(block_out_channels) */
	int block_out_channels[DIFF_MAX_BLOCKS];    /* (320, 640, 1280, 1280) */
	enum diff_block down_blocks[DIFF_MAX_BLOCKS];
	enum diff_block up_blocks[DIFF_MAX_BLOCKS];
	int layers_per_block;                       /* resnets per down block; up blocks have +1 */
	/* Heads per block. diffusers reads attention_head_dim as the number of
	 * heads when num_attention_heads is absent (SD 1.5: 8 heads of 40, 80, 160;
	 * SD 2: [5, 10, 20, 20] heads of 64); head dim = channels / heads. */
	int attention_heads[DIFF_MAX_BLOCKS];
	int transformer_layers[DIFF_MAX_BLOCKS];    /* transformer_layers_per_block, 1 */
	int cross_attention_dim;                    /* 768 (SD 1.x), 1024 (SD 2.x) */
	int sample_size;                            /* latent side: 64 (512 px), 96 (SD 2 768 px) */
	int norm_num_groups;                        /* 32 */
	float norm_eps;                             /* 1e-5 */
	bool use_linear_projection;                 /* proj_in/out Linear (SD 2) or 1x1 conv (SD 1) */
	bool upcast_attention;
	bool flip_sin_to_cos;                       /* true */
	int freq_shift;                             /* 0 */
	bool center_input_sample;
	int downsample_padding;                     /* 1 */
	float mid_block_scale_factor;               /* 1 */
	bool has_mid_block;                         /* mid_block_type UNetMidBlock2DCrossAttn (not null) */
	int time_cond_proj_dim;                     /* 0 = none; LCM-distilled UNets: 256 */
	int time_embed_dim;                         /* derived: 4 * block_out_channels[0] */
};

/* vae/config.json (AutoencoderKL) */
struct diff_vae_config {
	int in_channels, out_channels;              /* 3, 3 */
	int n_blocks;
	int block_out_channels[DIFF_MAX_BLOCKS];    /* (128, 256, 512, 512) */
	int layers_per_block;                       /* encoder; decoder has +1. 1 (SD: 2) */
	int latent_channels;                        /* 4 */
	int norm_num_groups;                        /* 32 */
	int sample_size;                            /* image side, 32 (SD 1.5: 512) */
	float scaling_factor;                       /* 0.18215 */
	float shift_factor;                         /* 0 */
	bool use_quant_conv, use_post_quant_conv;   /* true, true */
	bool mid_block_add_attention;               /* true */
	bool force_upcast;
};

/* text_encoder/config.json (transformers CLIPTextModel) */
enum diff_act { DIFF_ACT_QUICK_GELU, DIFF_ACT_GELU };

struct diff_clip_config {
	int hidden_size;                /* 768 (SD 1.x), 1024 (SD 2.x) */
	int intermediate_size;          /* 3072 */
	int num_hidden_layers;          /* 12 */
	int num_attention_heads;        /* 12 */
	int max_position_embeddings;    /* 77 */
	int vocab_size;                 /* 49408 */
	enum diff_act hidden_act;       /* quick_gelu (SD 1.x), gelu (SD 2.x) */
	float layer_norm_eps;           /* 1e-5 */
	int bos_token_id, eos_token_id, pad_token_id; /* as in the config (often not the tokenizer's) */
	int projection_dim;             /* unused by the text model */
};

/* scheduler/scheduler_config.json. Absent keys take DDIMScheduler's defaults. */
struct diff_scheduler_config {
	char class_name[DIFF_NAME_MAX];       /* "PNDMScheduler", "DDIMScheduler", ... */
	int num_train_timesteps;              /* 1000 */
	float beta_start, beta_end;           /* 0.0001, 0.02 (SD: 0.00085, 0.012) */
	char beta_schedule[DIFF_NAME_MAX];    /* "linear", "scaled_linear", "squaredcos_cap_v2" */
	char prediction_type[DIFF_NAME_MAX];  /* "epsilon", "v_prediction", "sample" */
	bool set_alpha_to_one;                /* true */
	int steps_offset;                     /* 0 (SD: 1) */
	char timestep_spacing[DIFF_NAME_MAX]; /* "leading", "trailing", "linspace" */
	bool clip_sample;                     /* true (SD: false) */
	float clip_sample_range;              /* 1 */
	bool thresholding;                    /* false */
	bool rescale_betas_zero_snr;          /* false */
};

/* model_index.json */
struct diff_model_index {
	char class_name[DIFF_NAME_MAX];       /* "StableDiffusionPipeline" */
	char diffusers_version[DIFF_NAME_MAX];
	char scheduler_class[DIFF_NAME_MAX];  /* the scheduler entry's class */
};

/* ---- config files (usable alone, e.g. by tests and the generator) ----------------- */

/* Each parses one config file; path names it in messages.
 * @return 0, -ENOENT (missing file), -EBADMSG (bad JSON, missing key, wrong
 * type or value), -ENOTSUP (a value this engine does not run). */
int diff_unet_config_load(const char *path, struct diff_unet_config *c, char *err, size_t errlen);
int diff_vae_config_load(const char *path, struct diff_vae_config *c, char *err, size_t errlen);
int diff_clip_config_load(const char *path, struct diff_clip_config *c, char *err, size_t errlen);
int diff_scheduler_config_load(const char *path, struct diff_scheduler_config *c, char *err,
                               size_t errlen);
int diff_model_index_load(const char *path, struct diff_model_index *c, char *err, size_t errlen);

const char *diff_block_name(enum diff_block b); /* "CrossAttnDownBlock2D", ... */

/* ---- expected tensors -------------------------------------------------------------- */

/* What a tensor is, so that a generator can pick a sensible random init. */
enum diff_tensor_kind {
	DIFF_TENSOR_WEIGHT,  /* linear or conv weight: fan-in scaled */
	DIFF_TENSOR_BIAS,    /* zeros-ish */
	DIFF_TENSOR_NORM,    /* norm scale: ones-ish */
	DIFF_TENSOR_EMBED,   /* embedding table */
};

/* Called once per expected tensor: name, dims in PyTorch order (shape[0] =
 * output channels/features). alt_name, when not NULL, is an older name of the
 * same tensor that real files may use instead (VAE attention: query, key,
 * value, proj_attn). Return non-zero to stop; that value is returned. */
typedef int (*diff_tensor_fn)(const char *name, const char *alt_name, uint32_t n_dims,
                              const int64_t *shape, enum diff_tensor_kind kind, void *arg);

/* Walk the tensors of each model in a fixed order. */
int diff_unet_tensors(const struct diff_unet_config *c, diff_tensor_fn fn, void *arg);
int diff_vae_tensors(const struct diff_vae_config *c, diff_tensor_fn fn, void *arg);
int diff_clip_tensors(const struct diff_clip_config *c, diff_tensor_fn fn, void *arg);

/* Checks that f holds every tensor of the walk with its shape and an F32, F16
 * or BF16 dtype. @return 0, or -EBADMSG / -ENOTSUP naming file, tensor and shapes. */
int diff_check_tensors(const struct st_file *f,
                       int (*walk)(const void *cfg, diff_tensor_fn fn, void *arg),
                       const void *cfg, char *err, size_t errlen);

/* Typed wrappers for diff_check_tensors(). */
int diff_unet_check(const struct st_file *f, const struct diff_unet_config *c, char *err,
                    size_t errlen);
int diff_vae_check(const struct st_file *f, const struct diff_vae_config *c, char *err,
                   size_t errlen);
int diff_clip_check(const struct st_file *f, const struct diff_clip_config *c, char *err,
                    size_t errlen);

/* ---- the folder ------------------------------------------------------------------- */

struct diff_pipeline; /* opaque */

/* Opens the diffusers folder dir: parses every config, opens and checks the
 * three weight files (mapped read-only) and checks the tokenizer files.
 * @return 0 and *out (free with diff_pipeline_free()), or a negative errno code
 * with a reason in err. */
int diff_pipeline_open(const char *dir, struct diff_pipeline **out, char *err, size_t errlen);
void diff_pipeline_free(struct diff_pipeline *p); /* accepts NULL */

const char *diff_pipeline_dir(const struct diff_pipeline *p);
const struct diff_model_index *diff_pipeline_index(const struct diff_pipeline *p);
const struct diff_unet_config *diff_pipeline_unet(const struct diff_pipeline *p);
const struct diff_vae_config *diff_pipeline_vae(const struct diff_pipeline *p);
const struct diff_clip_config *diff_pipeline_clip(const struct diff_pipeline *p);
const struct diff_scheduler_config *diff_pipeline_scheduler(const struct diff_pipeline *p);

/* Weight files, owned by the pipeline. */
const struct st_file *diff_pipeline_unet_weights(const struct diff_pipeline *p);
const struct st_file *diff_pipeline_vae_weights(const struct diff_pipeline *p);
const struct st_file *diff_pipeline_text_weights(const struct diff_pipeline *p);

/* Paths of tokenizer/vocab.json and tokenizer/merges.txt (owned by the pipeline);
 * the files were checked: vocab.json is an object of token -> id with ids below
 * the text encoder's vocab_size, merges.txt has "a b" lines. */
const char *diff_pipeline_vocab_path(const struct diff_pipeline *p);
const char *diff_pipeline_merges_path(const struct diff_pipeline *p);

#endif
