/* The CLIP text encoder of Stable Diffusion (HF CLIPTextModel), on the CPU in f32.
 *
 *   x = token_embedding[ids] + position_embedding[0..n_ctx)
 *   per layer:  x += out_proj(causal_attention(q_proj, k_proj, v_proj of layer_norm1(x)))
 *               x += fc2(act(fc1(layer_norm2(x))))            act: quick_gelu or gelu
 *   out = final_layer_norm(x after layer n_layers - skip)
 *
 * Attention is causal (token i sees 0..i) with no padding mask, as SD uses it; q is scaled by
 * head_dim^-1/2. Weights come in through struct clip_weights (pointers to F32, F16 or BF16
 * data in PyTorch layout, e.g. straight from a safetensors file); clip_text_new() copies them
 * to f32, so the caller may release its data afterwards.
 *
 * Conventions: 0 or a negative errno code; constructors write a reason into err. A model is
 * immutable after creation: threads may run forwards at the same time.
 */
#ifndef INFERD_ENGINE_CLIP_TEXT_H
#define INFERD_ENGINE_CLIP_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

struct st_file;

enum clip_act {
	CLIP_ACT_QUICK_GELU = 0, /* x * sigmoid(1.702 x): hidden_act "quick_gelu" (SD 1.x) */
	CLIP_ACT_GELU = 1,       /* 0.5 x (1 + erf(x / sqrt 2)): "gelu" (SD 2.x) */
};

struct clip_text_config {
	int n_vocab;        /* vocab_size (49408) */
	int n_ctx;          /* max_position_embeddings (77) */
	int width;          /* hidden_size (768 SD 1.x, 1024 SD 2.x) */
	int n_layers;       /* num_hidden_layers */
	int n_heads;        /* num_attention_heads; width % n_heads == 0 */
	int ffn;            /* intermediate_size */
	float ln_eps;       /* layer_norm_eps (1e-5) */
	enum clip_act act;  /* hidden_act */
};

/* One tensor: data in PyTorch (row-major) layout, shape implied by its use. */
struct clip_weight {
	enum dtype type;    /* DTYPE_F32, DTYPE_F16 or DTYPE_BF16 */
	const void *data;
};

struct clip_layer_weights {
	struct clip_weight ln1_w, ln1_b;   /* (width) */
	struct clip_weight q_w, q_b;       /* (width, width) [out][in], (width) */
	struct clip_weight k_w, k_b;       /* same */
	struct clip_weight v_w, v_b;       /* same */
	struct clip_weight o_w, o_b;       /* same */
	struct clip_weight ln2_w, ln2_b;   /* (width) */
	struct clip_weight fc1_w, fc1_b;   /* (ffn, width), (ffn) */
	struct clip_weight fc2_w, fc2_b;   /* (width, ffn), (width) */
};

struct clip_weights {
	struct clip_weight tok_emb;        /* (n_vocab, width) */
	struct clip_weight pos_emb;        /* (n_ctx, width) */
	const struct clip_layer_weights *layers; /* (n_layers) */
	struct clip_weight final_ln_w, final_ln_b; /* (width) */
};

struct clip_text; /* opaque */

/* Builds the model (copies and converts the weights to f32).
 * @return 0 and *out (free with clip_text_free()), -EINVAL (bad config, NULL data, unsupported
 * dtype), -ENOMEM; err (may be NULL) gets a reason. */
int clip_text_new(const struct clip_text_config *cfg, const struct clip_weights *w,
                  struct clip_text **out, char *err, size_t errlen);
void clip_text_free(struct clip_text *m); /* accepts NULL */
const struct clip_text_config *clip_text_get_config(const struct clip_text *m);

/* Text embeddings of B prompts.
 * ids: (B, n_ctx) token ids in [0, n_vocab); out: (B, n_ctx, width) floats.
 * skip: 0 = last layer (the SD default); k > 0 = the output of layer n_layers - k ("clip
 * skip", diffusers' clip_skip = k), with the final layer norm applied as diffusers does.
 * n_threads: 0 = OpenMP default. Scratch is allocated per call (about 4 + ffn/width times the
 * output size). @return 0, -EINVAL (B < 1, bad skip, id out of range), -ENOMEM, or a matmul
 * error. */
int clip_text_forward(const struct clip_text *m, const int32_t *ids, int B, int skip, float *out,
                      int n_threads);

/* Fills cfg (sizes from the tensors' shapes; n_heads, ln_eps and act must be set by the caller
 * from config.json) and w from a diffusers text_encoder/model.safetensors (tensor names
 * "text_model.embeddings.token_embedding.weight", "text_model.encoder.layers.N.self_attn.q_proj
 * .weight", ...). layers: room for max_layers entries. Weights point into f (keep it open until
 * clip_text_new() returns). @return 0, -EINVAL (missing tensor, wrong shape or dtype) with the
 * tensor's name in err, -E2BIG (more than max_layers layers). */
int clip_text_weights_from_st(const struct st_file *f, struct clip_text_config *cfg,
                              struct clip_weights *w, struct clip_layer_weights *layers,
                              int max_layers, char *err, size_t errlen);

#endif
