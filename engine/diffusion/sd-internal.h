/* Shared between the sd_*.c files: the model bundle and the job. */
#ifndef INFERD_ENGINE_DIFFUSION_SD_INTERNAL_H
#define INFERD_ENGINE_DIFFUSION_SD_INTERNAL_H

#include "clip_text.h"
#include "clip_tokenizer.h"
#include "pipeline.h"
#include "sd.h"
#include "unet.h"
#include "vae.h"

struct sd_model {
	struct diff_pipeline *pl;
	struct clip_tokenizer *tok;
	struct clip_text *text;
	struct unet *unet;
	struct vae *vae;
	struct nsched_config sched;       /* from scheduler_config.json */
	struct sd_model_info info;
	int32_t pad_id;                   /* the tokenizer's pad token */
	int ctx_dim;                      /* text embedding width */
	int tcond_dim;                    /* UNet time_cond_proj_dim, 0 = none */
};

struct sd_job {
	struct sd_model *m;
	int width, height;                /* pixels */
	int lh, lw, lc;                   /* latent height, width, channels */
	size_t latent_n;                  /* lc * lh * lw */
	int n_images;
	int start, cur;                   /* scheduler step indices: first, next */
	int n_sched_steps;                /* the scheduler's n (cur runs start..n) */
	bool cfg;                         /* an unconditional item per image */
	float guidance;
	uint64_t seed;
	float *ctx;                       /* (cfg ? 2 : 1, ctx_len, ctx_dim): [uncond,] cond */
	float *tcond;                     /* (tcond_dim) guidance embedding, or NULL */
	struct nsched *sched[SD_MAX_IMAGES];
	struct nsched_rng rng[SD_MAX_IMAGES];
	float *latents;                   /* (n_images, latent_n) */
	float *images;                    /* (n_images, 3, height, width) after decode */
};

/* diffusers' get_guidance_scale_embedding of w (guidance - 1) into out (dim). */
void sd_guidance_embedding(float w, int dim, float *out);

#endif
