/* A Stable Diffusion request as a job: parameter checks, the text embeddings and the initial
 * latents (text-to-image noise, or the noised VAE posterior of an init image). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd-internal.h"

#define DEFAULT_STRENGTH 0.8f

/* Settings of p with the model's defaults filled in. */
struct resolved {
	int width, height, steps, n_images;
	float guidance, strength;
	enum nsched_kind kind;
	bool cfg;
};

static int resolve(const struct sd_model *m, const struct sd_params *p, bool img2img,
                   struct resolved *r,
                   char *err, size_t errlen)
{
	const struct sd_model_info *in = &m->info;

	if (!p || !p->prompt) {
		snprintf(err, errlen, "a prompt is required");
		return -EINVAL;
	}
	r->width = p->width ? p->width : in->default_width;
	r->height = p->height ? p->height : in->default_height;
	if (r->width < 0 || r->height < 0 || r->width > SD_MAX_SIDE || r->height > SD_MAX_SIDE) {
		snprintf(err, errlen, "width and height must be in 1..%d (got %dx%d)", SD_MAX_SIDE,
		         r->width, r->height);
		return -EINVAL;
	}
	if (r->width % in->size_multiple || r->height % in->size_multiple) {
		snprintf(err, errlen, "width and height must be multiples of %d (got %dx%d)",
		         in->size_multiple, r->width, r->height);
		return -EINVAL;
	}
	r->kind = in->default_scheduler;
	if (p->scheduler && p->scheduler[0] && nsched_kind_from_name(p->scheduler, &r->kind) < 0) {
		snprintf(err, errlen, "unknown scheduler '%s' (ddim, euler, euler_a, dpmpp_2m, lcm)",
		         p->scheduler);
		return -EINVAL;
	}
	r->steps = p->steps ? p->steps : (r->kind == NSCHED_LCM ? 4 : in->default_steps);
	if (r->steps < 1 || r->steps > SD_MAX_STEPS) {
		snprintf(err, errlen, "steps must be in 1..%d (got %d)", SD_MAX_STEPS, r->steps);
		return -EINVAL;
	}
	if (r->kind == NSCHED_LCM && r->steps > m->sched.original_inference_steps) {
		snprintf(err, errlen, "the lcm scheduler runs at most %d steps (got %d)",
		         m->sched.original_inference_steps, r->steps);
		return -EINVAL;
	}
	r->guidance = p->guidance != 0 ? p->guidance : in->default_guidance;
	if (!isfinite(r->guidance) || r->guidance < 0 || r->guidance > 100) {
		snprintf(err, errlen, "guidance scale must be in 0..100 (got %g)", (double)r->guidance);
		return -EINVAL;
	}
	r->cfg = !in->guidance_embedded && r->guidance > 1.0f;
	r->n_images = p->num_images ? p->num_images : 1;
	if (r->n_images < 1 || r->n_images > SD_MAX_IMAGES) {
		snprintf(err, errlen, "num_images must be in 1..%d (got %d)", SD_MAX_IMAGES,
		         r->n_images);
		return -EINVAL;
	}
	if ((int64_t)r->width * r->height * r->n_images > SD_MAX_PIXELS) {
		snprintf(err, errlen, "width x height x num_images must be at most %d pixels (got %dx%d "
		         "x %d)", SD_MAX_PIXELS, r->width, r->height, r->n_images);
		return -EINVAL;
	}
	r->strength = p->strength != 0 ? p->strength : DEFAULT_STRENGTH;
	if (!(r->strength >= 0 && r->strength <= 1)) {
		snprintf(err, errlen, "strength must be in [0, 1] (got %g)", (double)p->strength);
		return -EINVAL;
	}
	if (img2img && !in->has_encoder) {
		snprintf(err, errlen, "image-to-image needs the VAE encoder, which this model did not "
		         "load");
		return -EINVAL;
	}
	if (p->init && (!p->init->pixels || p->init->width < 1 || p->init->height < 1)) {
		snprintf(err, errlen, "the init image is empty");
		return -EINVAL;
	}
	int n_layers = clip_text_get_config(m->text)->n_layers;
	if (p->clip_skip < 0 || p->clip_skip >= n_layers) {
		snprintf(err, errlen, "clip_skip must be in 0..%d (got %d)", n_layers - 1, p->clip_skip);
		return -EINVAL;
	}
	if (img2img) {
		/* The first step of a strength; a strength so small that no step is left is an
		 * error rather than the init image returned as it is. */
		struct nsched *s = NULL;
		int start = 0, rc = nsched_new(r->kind, &m->sched, r->steps, &s);
		if (rc == 0)
			rc = nsched_start_index(s, r->strength, &start);
		int n = s ? nsched_n_steps(s) : 0;
		nsched_free(s);
		if (rc < 0) {
			snprintf(err, errlen, "scheduler: %s", strerror(-rc));
			return rc;
		}
		if (start >= n) {
			snprintf(err, errlen, "strength %g leaves no denoising step of %d", (double)r->strength,
			         r->steps);
			return -EINVAL;
		}
	}
	return 0;
}

int sd_params_check(const struct sd_model *m, const struct sd_params *p, bool img2img,
                    char *err, size_t errlen)
{
	struct resolved r;
	return resolve(m, p, img2img || (p && p->init), &r, err, errlen);
}

void sd_guidance_embedding(float w, int dim, float *out)
{
	int half = dim / 2;
	double scale = half > 1 ? log(10000.0) / (half - 1) : 0.0;
	float wf = w * 1000.0f;
	for (int i = 0; i < half; i++) {
		float f = (float)exp(-scale * i);
		out[i] = sinf(wf * f);
		out[half + i] = cosf(wf * f);
	}
	if (dim % 2)
		out[dim - 1] = 0.0f;
}

/* ctx (n_prompts, ctx_len, ctx_dim) = text embeddings of the prompts. */
static int encode_text(struct sd_model *m, const char *const *prompts, int n_prompts,
                       int clip_skip, float *ctx, int n_threads, char *err, size_t errlen)
{
	int n_ctx = m->info.ctx_len;
	int32_t *ids = malloc(sizeof(*ids) * (size_t)n_ctx * (size_t)n_prompts);
	int rc = ids ? 0 : -ENOMEM;

	for (int i = 0; rc == 0 && i < n_prompts; i++)
		rc = clip_tok_encode(m->tok, prompts[i], strlen(prompts[i]), m->pad_id,
		                     ids + (size_t)i * (size_t)n_ctx, n_ctx, NULL);
	if (rc == 0)
		rc = clip_text_forward(m->text, ids, n_prompts, clip_skip, ctx, n_threads);
	if (rc < 0)
		snprintf(err, errlen, "text encoder: %s", strerror(-rc));
	free(ids);
	return rc;
}

/* Image-to-image start: the VAE posterior of the init image (resized to the job's size when
 * needed), one sample per image from its generator, noised to step j->start. */
static int init_from_image(struct sd_job *j, const struct image_rgb8 *init, int n_threads,
                           char *err, size_t errlen)
{
	struct image_rgb8 resized = { 0 };
	const struct image_rgb8 *img = init;
	size_t n = j->latent_n, npx = 3 * (size_t)j->width * (size_t)j->height;
	float *chw = NULL, *mean = NULL, *std = NULL, *noise = NULL;
	int rc = 0;

	if (init->width != j->width || init->height != j->height) {
		if ((rc = image_resize(init, j->width, j->height, &resized)) < 0)
			goto out;
		img = &resized;
	}
	chw = malloc(npx * sizeof(float));
	mean = malloc(n * sizeof(float));
	std = malloc(n * sizeof(float));
	noise = malloc(n * sizeof(float));
	if (!chw || !mean || !std || !noise) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = image_to_chw(img, chw)) < 0 ||
	    (rc = vae_encode(j->m->vae, chw, 1, j->height, j->width, mean, std, n_threads)) < 0)
		goto out;
	for (int k = 0; k < j->n_images; k++) {
		float *lat = j->latents + (size_t)k * n;
		nsched_rng_normal(&j->rng[k], noise, n);
		for (size_t i = 0; i < n; i++)
			lat[i] = mean[i] + std[i] * noise[i];
		nsched_rng_normal(&j->rng[k], noise, n);
		if ((rc = nsched_add_noise(j->sched[k], j->start, lat, noise, lat, n)) < 0)
			goto out;
	}
out:
	if (rc < 0)
		snprintf(err, errlen, "init image: %s", strerror(-rc));
	image_rgb8_free(&resized);
	free(chw);
	free(mean);
	free(std);
	free(noise);
	return rc;
}

int sd_job_new(struct sd_model *m, const struct sd_params *p, int n_threads,
               struct sd_job **out, char *err, size_t errlen)
{
	struct resolved r;
	struct sd_job *j;
	int rc;

	*out = NULL;
	if ((rc = resolve(m, p, p && p->init, &r, err, errlen)) < 0)
		return rc;
	if (!(j = calloc(1, sizeof(*j)))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	j->m = m;
	j->width = r.width;
	j->height = r.height;
	int f = vae_downscale(m->vae);
	j->lh = r.height / f;
	j->lw = r.width / f;
	j->lc = m->info.latent_channels;
	j->latent_n = (size_t)j->lc * (size_t)j->lh * (size_t)j->lw;
	j->n_images = r.n_images;
	j->cfg = r.cfg;
	j->guidance = r.guidance;
	j->seed = p->seed;
	size_t ctx_n = (size_t)m->info.ctx_len * (size_t)m->ctx_dim;
	j->ctx = malloc((j->cfg ? 2 : 1) * ctx_n * sizeof(float));
	j->latents = malloc((size_t)j->n_images * j->latent_n * sizeof(float));
	if (m->tcond_dim > 0)
		j->tcond = malloc((size_t)m->tcond_dim * sizeof(float));
	if (!j->ctx || !j->latents || (m->tcond_dim > 0 && !j->tcond)) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	if (j->tcond)
		sd_guidance_embedding(r.guidance - 1.0f, m->tcond_dim, j->tcond);
	for (int k = 0; k < j->n_images; k++) {
		if ((rc = nsched_new(r.kind, &m->sched, r.steps, &j->sched[k])) < 0) {
			snprintf(err, errlen, "scheduler: %s", strerror(-rc));
			goto fail;
		}
		nsched_rng_init(&j->rng[k], p->seed + (uint64_t)k);
	}
	j->n_sched_steps = nsched_n_steps(j->sched[0]);
	if (p->init && (rc = nsched_start_index(j->sched[0], r.strength, &j->start)) < 0) {
		snprintf(err, errlen, "scheduler: %s", strerror(-rc));
		goto fail;
	}
	j->cur = j->start;

	const char *prompts[2] = { p->negative_prompt ? p->negative_prompt : "", p->prompt };
	if ((rc = encode_text(m, j->cfg ? prompts : prompts + 1, j->cfg ? 2 : 1, p->clip_skip,
	                      j->ctx, n_threads, err, errlen)) < 0)
		goto fail;
	if (p->init) {
		if ((rc = init_from_image(j, p->init, n_threads, err, errlen)) < 0)
			goto fail;
	} else {
		for (int k = 0; k < j->n_images; k++) {
			float *lat = j->latents + (size_t)k * j->latent_n;
			float s = (float)nsched_init_noise_sigma(j->sched[k]);
			nsched_rng_normal(&j->rng[k], lat, j->latent_n);
			for (size_t i = 0; i < j->latent_n; i++)
				lat[i] *= s;
		}
	}
	*out = j;
	return 0;
fail:
	sd_job_free(j);
	return rc;
}

void sd_job_free(struct sd_job *j)
{
	if (!j)
		return;
	for (int k = 0; k < SD_MAX_IMAGES; k++)
		nsched_free(j->sched[k]);
	free(j->ctx);
	free(j->tcond);
	free(j->latents);
	free(j->images);
	free(j);
}

int sd_job_total_steps(const struct sd_job *j) { return j->n_sched_steps - j->start; }
int sd_job_steps_done(const struct sd_job *j) { return j->cur - j->start; }
bool sd_job_denoised(const struct sd_job *j) { return j->cur >= j->n_sched_steps; }
int sd_job_unet_items(const struct sd_job *j) { return j->n_images * (j->cfg ? 2 : 1); }
int sd_job_width(const struct sd_job *j) { return j->width; }
int sd_job_height(const struct sd_job *j) { return j->height; }
int sd_job_num_images(const struct sd_job *j) { return j->n_images; }
uint64_t sd_job_seed(const struct sd_job *j, int k) { return j->seed + (uint64_t)k; }
