/* Private to engine/diffusion/unet*.c: the model's layers (built by unet_load.c), the state
 * of one forward (unet.c) and the blocks that run on it (unet_blocks.c). See unet.h. */
#ifndef INFERD_ENGINE_DIFFUSION_UNET_INTERNAL_H
#define INFERD_ENGINE_DIFFUSION_UNET_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "conv.h"
#include "matmul.h"
#include "unet.h"

/* GroupNorm eps of Transformer2DModel (fixed in diffusers, not the config's norm_eps) and
 * the LayerNorm eps of its BasicTransformerBlocks (the default norm_eps = 1e-5). */
#define UNET_TRANSFORMER_GN_EPS 1e-6f
#define UNET_LAYER_NORM_EPS 1e-5f
/* Feed-forward rows per chunk: bounds the (rows, 8c) GEGLU input buffer. */
#define UNET_FF_CHUNK 1024

struct unet_conv {
	struct conv2d *c;
	struct conv2d_desc d;
};

/* Linear layer: y (tokens, out) = x (tokens, in) w^T + b. */
struct unet_linear {
	float *w;              /* (out, in) row-major f32 (PyTorch's layout); several diffusers
	                        * weights stacked along out when fused (q|k|v, k|v) */
	float *b;              /* (out) or NULL */
	struct cpu_weight cw;
	int in, out;
};

struct unet_resnet {           /* ResnetBlock2D */
	int cin, cout;
	float *n1_w, *n1_b;        /* (cin) */
	float *n2_w, *n2_b;        /* (cout) */
	struct unet_conv conv1, conv2;
	struct unet_conv shortcut; /* 1x1, .c NULL when cin == cout */
	struct unet_linear temb;   /* time_emb_proj (cout, time_embed_dim) */
	float out_scale;           /* output_scale_factor: mid_block_scale_factor in the mid block */
};

struct unet_tlayer {           /* BasicTransformerBlock */
	float *ln1_w, *ln1_b, *ln2_w, *ln2_b, *ln3_w, *ln3_b; /* (c) */
	struct unet_linear qkv;    /* attn1 to_q | to_k | to_v: (3c, c), no bias */
	struct unet_linear o1;     /* attn1.to_out.0 (c, c) + bias */
	struct unet_linear q2;     /* attn2.to_q (c, c) */
	struct unet_linear kv2;    /* attn2 to_k | to_v: (2c, cross) */
	struct unet_linear o2;     /* attn2.to_out.0 */
	struct unet_linear ff1;    /* ff.net.0.proj (8c, c): GEGLU [hidden | gate] */
	struct unet_linear ff2;    /* ff.net.2 (c, 4c) */
};

struct unet_transformer {      /* Transformer2DModel */
	int c, heads, n_layers;
	float *gn_w, *gn_b;        /* (c) */
	bool linear_proj;          /* use_linear_projection */
	struct unet_conv proj_in_conv, proj_out_conv; /* 1x1 convs when !linear_proj */
	struct unet_linear proj_in, proj_out;         /* Linear when linear_proj */
	struct unet_tlayer *layers;                   /* (n_layers) */
};

struct unet_block {            /* one down or up block */
	enum diff_block type;
	int n_res;                 /* layers_per_block (down), + 1 (up) */
	struct unet_resnet *res;   /* (n_res) */
	struct unet_transformer *attn; /* (n_res), NULL for DownBlock2D / UpBlock2D */
	struct unet_conv sample;   /* downsampler (stride 2) / upsampler conv; .c NULL if none */
	int cout;
};

struct unet {
	struct diff_unet_config cfg;
	void **allocs;             /* every f32 weight buffer, freed with the model */
	int n_allocs, cap_allocs;

	struct unet_conv conv_in;
	struct unet_linear time1, time2;   /* time_embedding.linear_1, linear_2 */
	struct unet_linear cond_proj;      /* time_embedding.cond_proj (ch0, tcond), no bias; .w
	                                    * NULL when time_cond_proj_dim is 0 */
	struct unet_block down[DIFF_MAX_BLOCKS], up[DIFF_MAX_BLOCKS];
	struct unet_resnet mid_res[2];
	struct unet_transformer mid_attn;
	float *norm_out_w, *norm_out_b;    /* conv_norm_out (ch0) */
	struct unet_conv conv_out;

	/* sizing of the scratch of a forward, per level l (spatial size (h >> l, w >> l)) */
	int lvl_ch[DIFF_MAX_BLOCKS];   /* most channels of any NCHW activation at level l */
	int lvl_tch[DIFF_MAX_BLOCKS];  /* most channels of a transformer at level l, 0 if none */
	int max_cout;                  /* most output channels of a resnet */
	int n_skips;
	int skip_ch[1 + 2 * 64 * DIFF_MAX_BLOCKS];
	int skip_ds[1 + 2 * 64 * DIFF_MAX_BLOCKS];
};

/* State of one forward. */
struct unet_exec {
	const struct unet *u;
	int nt;                    /* threads of the element-wise operators */
	int64_t n;                 /* batch */
	float *t1, *t2;            /* NCHW temporaries, maxact floats each */
	float *work;               /* transformer scratch (q|k|v, cross k|v, GEGLU rows) */
	float *tproj;              /* (n, max_cout): a resnet's projected time embedding */
	const float *semb;         /* silu(emb) (n, time_embed_dim) */
	const float *ctx;          /* (n, ctx_len, cross_attention_dim) */
	int64_t ctx_len;
	unet_op_fn trace;
	void *trace_arg;
};

/* ---- unet_blocks.c ----------------------------------------------------------------- */

/* y (n, out_ch, oh, ow) = conv(x (n, in_ch, h, w)). */
int unet_conv_run(struct unet_exec *e, const struct unet_conv *c, const float *x, int64_t h,
                  int64_t w, float *y);
/* y (rows, out, ldy) = x (rows, in, ldx) w^T (+ b when the layer has one). */
int unet_linear_run(struct unet_exec *e, const struct unet_linear *l, const float *x,
                    int64_t ldx, int64_t rows, float *y, int64_t ldy);
/* res (rows, out, ldr) += x w^T + b, with tmp (rows, out) as scratch. */
int unet_linear_residual(struct unet_exec *e, const struct unet_linear *l, const float *x,
                         int64_t ldx, int64_t rows, float *tmp, float *res, int64_t ldr);

/* y (n, cout, h, w) = resnet(x (n, cin, h, w)); y must not overlap x, e->t1 or e->t2. */
int unet_resnet_forward(struct unet_exec *e, const struct unet_resnet *r, const float *x,
                        int64_t h, int64_t w, float *y);
/* x (n, c, h, w) = transformer(x) + x, in place; uses e->t1, e->t2, e->work. */
int unet_transformer_forward(struct unet_exec *e, const struct unet_transformer *t, float *x,
                             int64_t h, int64_t w);

#endif
