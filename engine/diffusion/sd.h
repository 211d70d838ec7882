/* Stable Diffusion sampling over a diffusers folder: text-to-image and image-to-image with
 * classifier-free guidance, on the CPU.
 *
 * A `struct sd_model` bundles what one folder holds (pipeline.h): the CLIP tokenizer and text
 * encoder, the UNet, the VAE and the scheduler config. A request becomes a `struct sd_job`:
 *
 *   sd_job_new()     validates, encodes the prompt and the negative prompt (one CLIP forward),
 *                    draws the initial latents (text-to-image: seeded noise scaled by the
 *                    scheduler's init sigma; image-to-image: the VAE posterior of the init
 *                    image, sampled, then noised to the strength's first step)
 *   sd_step_jobs()   one denoising step of several jobs in ONE UNet call: each job puts
 *                    2 x num_images items in the batch (unconditional + conditional; 1 x when
 *                    guidance is off or the UNet is guidance-distilled), every item at its own
 *                    timestep, so jobs at different steps share a batch (stream batch). Then
 *                    per image: eps = eps_u + g (eps_c - eps_u) and the scheduler's step.
 *   sd_job_decode()  the VAE decode of the finished latents -> images (3, H, W) in [-1, 1],
 *                    one image at a time (the decoder's activations are the largest buffers)
 *
 * Every image k of a job has its own generator seeded seed + k (initial noise, then the
 * scheduler's noise), so image k of a batch equals the single image made with seed + k.
 * Noise order per image (tests/reference/sd_ref.py does the same): text-to-image: the latent
 * noise (C*h*w normals); image-to-image: the posterior sample's noise, then the added noise;
 * then whatever the scheduler draws step by step.
 *
 * Guidance-distilled UNets (time_cond_proj_dim > 0, LCM): no negative pass; the UNet gets
 * the guidance-scale embedding of w = guidance - 1 (diffusers' get_guidance_scale_embedding).
 *
 * Conventions: 0 or a negative errno code; -EINVAL with a reason in err for bad parameters
 * (the serving layer maps it to INVALID_ARGUMENT). A model is immutable once open and may be
 * shared by threads; a job belongs to one thread at a time.
 */
#ifndef INFERD_ENGINE_DIFFUSION_SD_H
#define INFERD_ENGINE_DIFFUSION_SD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image_io.h"
#include "noise_sched.h"

struct sd_model; /* opaque */
struct sd_job;   /* opaque */

#define SD_MAX_IMAGES 16      /* images per request */
#define SD_MAX_STEPS 1000
#define SD_MAX_SIDE 2048      /* pixels */
#define SD_MAX_PIXELS (2048 * 2048) /* width x height x num_images of one request */

struct sd_open_params {
	bool with_encoder;        /* build the VAE encoder (image-to-image); default true */
	int n_threads;            /* for loading; 0 = OpenMP default */
};

/* Opens the diffusers folder dir. @return 0 and *out (free with sd_model_free()), or a
 * negative errno with a reason naming the file. */
int sd_model_open(const char *dir, const struct sd_open_params *p, struct sd_model **out,
                  char *err, size_t errlen);
void sd_model_free(struct sd_model *m); /* accepts NULL */

struct sd_model_info {
	int default_width, default_height;   /* unet sample_size x VAE scale (512 for SD 1.5) */
	int size_multiple;                    /* width/height must be multiples (8 x UNet's) */
	int default_steps;                    /* 20 (LCM: 4) */
	float default_guidance;               /* 7.5 (LCM: 8.5) */
	enum nsched_kind default_scheduler;   /* from scheduler_config.json's class */
	bool has_encoder;                     /* image-to-image available */
	bool guidance_embedded;               /* UNet with time_cond_proj_dim (LCM) */
	uint64_t n_params;                    /* text encoder + UNet + VAE */
	char dtype[8];                        /* the UNet file's weight type, "F16", ... */
	char arch[32];                        /* "sd-unet" + block widths, e.g. "sd-unet-320" */
	int ctx_len;                          /* text tokens (77) */
	int latent_channels;
};
void sd_model_get_info(const struct sd_model *m, struct sd_model_info *info);

struct sd_params {
	const char *prompt;                   /* required (may be "") */
	const char *negative_prompt;          /* NULL = "" */
	int width, height;                    /* 0 = default; multiples of size_multiple */
	int steps;                            /* 0 = default; 1..SD_MAX_STEPS */
	float guidance;                       /* 0 = default; <= 1 turns guidance off */
	uint64_t seed;
	const char *scheduler;                /* NULL/"" = default; ddim, euler, euler_a, dpmpp_2m,
	                                       * lcm (and the aliases of nsched_kind_from_name) */
	const struct image_rgb8 *init;        /* image-to-image when not NULL: resized to width x
	                                       * height when its size differs */
	float strength;                       /* image-to-image: (0, 1]; 0 = 0.8 */
	int num_images;                       /* 0 = 1; at most SD_MAX_IMAGES */
	int clip_skip;                        /* 0 = last layer */
};

/* Checks p against the model without computing anything: what sd_job_new would reject, but
 * for decoding the init image. img2img: check as image-to-image even though p->init is not
 * there yet (the serving layer decodes it later, on the worker). @return 0 or -EINVAL with a
 * reason. */
int sd_params_check(const struct sd_model *m, const struct sd_params *p, bool img2img,
                    char *err, size_t errlen);

/* Makes a job (see above). n_threads for its CLIP and VAE-encoder work. */
int sd_job_new(struct sd_model *m, const struct sd_params *p, int n_threads,
               struct sd_job **out, char *err, size_t errlen);
void sd_job_free(struct sd_job *j); /* accepts NULL */

int sd_job_total_steps(const struct sd_job *j);   /* steps this job runs (img2img: fewer) */
int sd_job_steps_done(const struct sd_job *j);
bool sd_job_denoised(const struct sd_job *j);     /* all steps done */
int sd_job_unet_items(const struct sd_job *j);    /* UNet batch items per step */
int sd_job_width(const struct sd_job *j);
int sd_job_height(const struct sd_job *j);
int sd_job_num_images(const struct sd_job *j);
uint64_t sd_job_seed(const struct sd_job *j, int k); /* seed of image k */

/* One step of each of the n jobs (none denoised, all of model m) in one UNet forward of
 * sum(sd_job_unet_items) items. Jobs of different sizes are stepped in groups of one size.
 * @return 0, -EINVAL, -ENOMEM, or the UNet's / scheduler's error. */
int sd_step_jobs(struct sd_model *m, struct sd_job *const *jobs, int n, int n_threads);

/* Decodes a denoised job's latents. @return 0 and *images: num_images x (3, height, width)
 * floats owned by the job, -EINVAL when not denoised. */
int sd_job_decode(struct sd_job *j, int n_threads, const float **images);

/* The whole of one request on the calling thread: job, steps, decode. progress (may be NULL)
 * is called after each step. images: as sd_job_decode's, copied into *out (malloc'd,
 * num_images * 3 * h * w floats, free() it). */
int sd_generate(struct sd_model *m, const struct sd_params *p, int n_threads,
                void (*progress)(int done, int total, void *arg), void *arg, float **out,
                char *err, size_t errlen);

#endif
