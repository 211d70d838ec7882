/* Private structs of the VAE (vae.h), shared by vae_load.c (building from a weight file),
 * vae_blocks.c (resnets, attention, resampling over rotating scratch buffers) and vae.c
 * (the decoder and encoder graphs). */
#ifndef INFERD_ENGINE_DIFFUSION_VAE_INTERNAL_H
#define INFERD_ENGINE_DIFFUSION_VAE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "conv.h"
#include "matmul.h"
#include "vae.h"

#define VAE_EPS 1e-6f /* every group norm of the ldm Encoder/Decoder */

/* Group norm affine parameters (f32 copies). */
struct vae_norm {
	float *w, *b;                  /* (c), (c) */
};

/* ResnetBlock2D without time embedding. */
struct vae_resnet {
	int cin, cout;
	struct vae_norm n1, n2;        /* (cin), (cout) */
	struct conv2d *conv1;          /* 3x3 cin -> cout */
	struct conv2d *conv2;          /* 3x3 cout -> cout */
	struct conv2d *shortcut;       /* 1x1 cin -> cout; NULL when cin == cout */
};

/* Mid-block attention: one head of c channels over all pixels. */
struct vae_attn {
	int c;
	struct vae_norm norm;          /* (c) */
	float *qkv_w;                  /* (3c, c): to_q, to_k, to_v rows stacked */
	float *qkv_b;                  /* (3c) */
	float *o_w, *o_b;              /* (c, c), (c) */
	struct cpu_weight qkv, o;      /* views of the arrays above */
};

/* One down (encoder) or up (decoder) block. */
struct vae_level {
	int cin, cout;
	int n_res;
	struct vae_resnet *res;        /* (n_res) */
	struct conv2d *resample;       /* downsampler (3x3 stride 2, pad (0,1,0,1)) or the conv
	                                * after the nearest-2x upsampling; NULL on the last block */
};

struct vae_mid {
	struct vae_resnet r0, r1;
	struct vae_attn *attn;         /* NULL when mid_block_add_attention is false */
};

/* Encoder or decoder. */
struct vae_coder {
	bool built;
	struct conv2d *conv_in;
	struct vae_level *levels;      /* (n_blocks): encoder's down blocks / decoder's up blocks */
	int n_levels;
	struct vae_mid mid;
	struct vae_norm norm_out;      /* (block_out_channels[0] or [n-1]) */
	struct conv2d *conv_out;
	struct conv2d *quant;          /* quant_conv (encoder) / post_quant_conv (decoder) or NULL */
};

struct vae {
	struct diff_vae_config cfg;
	struct vae_coder dec, enc;
};

/* ---- scratch: rotating activation buffers --------------------------------------------------
 * Between blocks one tensor is live, in bufs[cur]; a block reads it and uses the other two
 * buffers for its intermediates (each block leaves its result in one of the three). Every
 * buffer holds cap floats: the largest activation of the graph for the batch (and 3x the
 * mid-block activation for the attention's fused q/k/v). */
struct vae_run {
	float *bufs[3];
	int cur;
	int64_t n, c, h, w;            /* shape of the live tensor */
	int groups;
	int nt;                        /* threads for the ops */
};

static inline float *vae_run_x(struct vae_run *r) { return r->bufs[r->cur]; }
static inline int vae_run_other(const struct vae_run *r, int k) { return (r->cur + k) % 3; }

/* Block forwards (vae_blocks.c); each returns 0 or a negative errno. */
int vae_resnet_run(struct vae_run *r, const struct vae_resnet *rs);
int vae_attn_run(struct vae_run *r, const struct vae_attn *a);
/* Live tensor -> conv(it) in another buffer (any kernel/stride; shape updated). */
int vae_conv_run(struct vae_run *r, struct conv2d *c, int out_ch);
/* Nearest 2x upsampling, then the 3x3 conv. */
int vae_upsample_run(struct vae_run *r, struct conv2d *c);
/* silu(group_norm(live)) in place. */
int vae_norm_silu_run(struct vae_run *r, const struct vae_norm *nm);

/* Building (vae_load.c). */
void vae_coder_fini(struct vae_coder *c);

#endif
