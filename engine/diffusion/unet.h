/* The UNet of Stable Diffusion 1.x / 2.x (diffusers' UNet2DConditionModel), on the CPU in f32.
 *
 *   emb = time_embedding(timestep_embedding(t))        (+ time_cond_proj(t_cond) for LCM UNets)
 *   h   = conv_in(center? 2x-1 : x)
 *   down blocks: resnets (+ transformers) then a stride-2 downsampler (all but the last);
 *                every resnet/transformer output and every downsampler output is a skip
 *   mid block:   resnet, transformer, resnet
 *   up blocks:   layers_per_block + 1 resnets on concat(h, skip) (+ transformers), then a
 *                nearest-2x upsampler + conv (all but the last)
 *   out = conv_out(silu(group_norm(h)))
 *
 * ResNet block: h = conv1(silu(gn1(x))) + time_emb_proj(silu(emb)); h = conv2(silu(gn2(h)));
 * out = (shortcut(x) + h) / output_scale_factor. Transformer block (Transformer2DModel):
 * gn, proj_in (1x1 conv or Linear), per layer x += attn1(ln1 x) (self), x += attn2(ln2 x, ctx)
 * (cross), x += ff(ln3 x) (GEGLU), proj_out, + residual.
 *
 * The batch is explicit and every item carries its own timestep, so one forward may mix
 * requests (and classifier-free-guidance halves) at different denoising steps: the stream
 * batch of the serving layer is one call.
 *
 * Weights: diffusers' tensor names (diff_unet_tensors() in pipeline.h), F32/F16/BF16 from a
 * safetensors file, converted to f32 at load (the caller may close the file afterwards).
 *
 * Conventions: 0 or a negative errno code; unet_new() writes a reason into err. A model is
 * immutable after creation: threads may run forwards at the same time on different inputs.
 */
#ifndef INFERD_ENGINE_DIFFUSION_UNET_H
#define INFERD_ENGINE_DIFFUSION_UNET_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline.h"

struct st_file;
struct unet; /* opaque */

/* Builds the UNet of config c from the weights in f.
 * @return 0 and *out (free with unet_free()), -EINVAL / -EBADMSG (missing tensor, wrong shape
 * or dtype: named in err), -ENOTSUP (a config this engine does not run), -ENOMEM. */
int unet_new(const struct diff_unet_config *c, const struct st_file *f, struct unet **out,
             char *err, size_t errlen);
void unet_free(struct unet *u); /* accepts NULL */
const struct diff_unet_config *unet_get_config(const struct unet *u);

/* Spatial sizes must be multiples of this (2^(n_blocks - 1)). */
int unet_size_multiple(const struct unet *u);

struct unet_input {
	const float *x;             /* (batch, in_channels, h, w) the scheduler-scaled latents */
	int64_t batch, h, w;        /* h, w > 0, multiples of unet_size_multiple() */
	const float *t;             /* (batch) timesteps, one per item (may be fractional) */
	const float *ctx;           /* (batch, ctx_len, cross_attention_dim) text embeddings */
	int64_t ctx_len;            /* 77 */
	const float *t_cond;        /* (batch, time_cond_proj_dim) or NULL; required when the
	                             * config has time_cond_proj_dim (LCM guidance embedding) */
	/* ControlNet residuals, or NULL: added to the skip connections (down_res[i] has the shape
	 * of skip i, in the order they are produced, unet_n_skips() of them) and to the mid
	 * block's output (mid_res). */
	const float *const *down_res;
	const float *mid_res;
};

/* Number of skip connections (conv_in's output included) and the channels and downscale of
 * skip i, for callers that produce down_res. */
int unet_n_skips(const struct unet *u);
int unet_skip_shape(const struct unet *u, int i, int *channels, int *downscale);

/* out (batch, out_channels, h, w) = the model output (epsilon or v). Scratch is allocated per
 * call. n_threads: 0 = the calling thread's OpenMP default.
 * @return 0, -EINVAL (sizes, NULL pointers), -ENOMEM, or an operator's error. */
int unet_forward(const struct unet *u, const struct unet_input *in, float *out, int n_threads);

/* ---- introspection (benchmarks, tests) ------------------------------------------------- */

enum unet_op_kind {
	UNET_OP_CONV,   /* a conv2d_run */
	UNET_OP_MATMUL, /* a cpu_matmul of f32 weights (Linear layers) */
	UNET_OP_ATTENTION, /* a dops_attention (self- or cross-attention) */
};

/* One convolution, matrix product or attention of a forward, with its shapes. */
struct unet_op {
	enum unet_op_kind kind;
	/* UNET_OP_CONV: the layer (as struct conv2d_desc) and its input (n, in_ch, h, w) */
	int in_ch, out_ch, kh, kw, stride;
	int pad_t, pad_l, pad_b, pad_r;
	int64_t n, h, w;
	/* UNET_OP_MATMUL: weight (rows, cols), activations (tokens, cols) */
	int64_t rows, cols, tokens;
	/* UNET_OP_ATTENTION: n items, lq queries, lk keys, heads x head_dim */
	int64_t lq, lk;
	int heads, head_dim;
};

typedef void (*unet_op_fn)(const struct unet_op *op, void *arg);

/* unet_forward() that also calls fn (when not NULL) before each convolution, matrix
 * product and attention, in the order they run. */
int unet_forward_traced(const struct unet *u, const struct unet_input *in, float *out,
                        int n_threads, unet_op_fn fn, void *arg);

#endif
