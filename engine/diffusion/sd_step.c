/* Denoising steps of several jobs in one UNet batch (stream batch), guidance, the VAE decode,
 * and sd_generate() for one request on the calling thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd-internal.h"

/* The batch of one size class: inputs gathered from the jobs, the UNet's output. */
struct step_batch {
	float *x, *t, *ctx, *tcond, *out, *eps;
};

static void batch_free(struct step_batch *b)
{
	free(b->x);
	free(b->t);
	free(b->ctx);
	free(b->tcond);
	free(b->out);
	free(b->eps);
}

/* One step of n jobs of one size. */
static int step_group(struct sd_model *m, struct sd_job *const *jobs, int n, int n_threads)
{
	struct step_batch b = { 0 };
	const struct sd_job *j0 = jobs[0];
	size_t ln = j0->latent_n, ctx_n = (size_t)m->info.ctx_len * (size_t)m->ctx_dim;
	int items = 0, rc = 0;

	for (int i = 0; i < n; i++)
		items += sd_job_unet_items(jobs[i]);
	b.x = malloc((size_t)items * ln * sizeof(float));
	b.t = malloc((size_t)items * sizeof(float));
	b.ctx = malloc((size_t)items * ctx_n * sizeof(float));
	b.out = malloc((size_t)items * ln * sizeof(float));
	b.eps = malloc(ln * sizeof(float));
	if (m->tcond_dim > 0)
		b.tcond = malloc((size_t)items * (size_t)m->tcond_dim * sizeof(float));
	if (!b.x || !b.t || !b.ctx || !b.out || !b.eps || (m->tcond_dim > 0 && !b.tcond)) {
		rc = -ENOMEM;
		goto out;
	}
	/* Gather: per job and image, [unconditional,] conditional. */
	int it = 0;
	for (int i = 0; i < n; i++) {
		struct sd_job *j = jobs[i];
		int per = j->cfg ? 2 : 1;
		for (int k = 0; k < j->n_images; k++) {
			const float *lat = j->latents + (size_t)k * ln;
			float t = (float)nsched_timesteps(j->sched[k])[j->cur];
			for (int c = 0; c < per; c++, it++) {
				if ((rc = nsched_scale_input(j->sched[k], j->cur, lat, b.x + (size_t)it * ln,
				                             ln)) < 0)
					goto out;
				b.t[it] = t;
				memcpy(b.ctx + (size_t)it * ctx_n, j->ctx + (size_t)c * ctx_n,
				       ctx_n * sizeof(float));
				if (b.tcond)
					memcpy(b.tcond + (size_t)it * (size_t)m->tcond_dim, j->tcond,
					       (size_t)m->tcond_dim * sizeof(float));
			}
		}
	}
	struct unet_input in = {
		.x = b.x, .batch = items, .h = j0->lh, .w = j0->lw, .t = b.t, .ctx = b.ctx,
		.ctx_len = m->info.ctx_len, .t_cond = b.tcond,
	};
	if ((rc = unet_forward(m->unet, &in, b.out, n_threads)) < 0)
		goto out;
	/* Guidance and the scheduler step, per image. */
	it = 0;
	for (int i = 0; i < n; i++) {
		struct sd_job *j = jobs[i];
		for (int k = 0; k < j->n_images; k++) {
			const float *e;
			if (j->cfg) {
				const float *u = b.out + (size_t)it * ln, *c = u + ln;
				float g = j->guidance;
				for (size_t q = 0; q < ln; q++)
					b.eps[q] = u[q] + g * (c[q] - u[q]);
				e = b.eps;
				it += 2;
			} else {
				e = b.out + (size_t)it * ln;
				it += 1;
			}
			rc = nsched_step(j->sched[k], j->cur, e, j->latents + (size_t)k * ln, ln,
			                 &j->rng[k], NULL);
			if (rc < 0)
				goto out;
		}
		j->cur++;
	}
out:
	batch_free(&b);
	return rc;
}

int sd_step_jobs(struct sd_model *m, struct sd_job *const *jobs, int n, int n_threads)
{
	struct sd_job **group;
	bool *done;
	int rc = 0;

	if (!m || !jobs || n < 1)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		if (!jobs[i] || jobs[i]->m != m || sd_job_denoised(jobs[i]))
			return -EINVAL;
	group = malloc((size_t)n * sizeof(*group));
	done = calloc((size_t)n, sizeof(*done));
	if (!group || !done) {
		free(group);
		free(done);
		return -ENOMEM;
	}
	for (int i = 0; rc == 0 && i < n; i++) {
		int g = 0;
		if (done[i])
			continue;
		for (int k = i; k < n; k++)
			if (!done[k] && jobs[k]->lh == jobs[i]->lh && jobs[k]->lw == jobs[i]->lw) {
				group[g++] = jobs[k];
				done[k] = true;
			}
		rc = step_group(m, group, g, n_threads);
	}
	free(group);
	free(done);
	return rc;
}

int sd_job_decode(struct sd_job *j, int n_threads, const float **images)
{
	int rc;
	if (!j || !sd_job_denoised(j))
		return -EINVAL;
	if (!j->images) {
		size_t n = (size_t)j->n_images * 3 * (size_t)j->width * (size_t)j->height;
		if (!(j->images = malloc(n * sizeof(float))))
			return -ENOMEM;
		/* One image at a time: the decoder's activations (128 channels at full resolution
		 * for SD) are the largest buffers of a request; this bounds them to one image. */
		size_t per = 3 * (size_t)j->width * (size_t)j->height;
		rc = 0;
		for (int k = 0; k < j->n_images && rc == 0; k++)
			rc = vae_decode(j->m->vae, j->latents + (size_t)k * j->latent_n, 1, j->lh, j->lw,
			                j->images + (size_t)k * per, n_threads);
		if (rc < 0) {
			free(j->images);
			j->images = NULL;
			return rc;
		}
	}
	*images = j->images;
	return 0;
}

int sd_generate(struct sd_model *m, const struct sd_params *p, int n_threads,
                void (*progress)(int done, int total, void *arg), void *arg, float **out,
                char *err, size_t errlen)
{
	struct sd_job *j = NULL;
	const float *img;
	int rc;

	*out = NULL;
	if ((rc = sd_job_new(m, p, n_threads, &j, err, errlen)) < 0)
		return rc;
	while (!sd_job_denoised(j)) {
		if ((rc = sd_step_jobs(m, &j, 1, n_threads)) < 0) {
			snprintf(err, errlen, "denoising step %d: %s", sd_job_steps_done(j) + 1,
			         strerror(-rc));
			goto out;
		}
		if (progress)
			progress(sd_job_steps_done(j), sd_job_total_steps(j), arg);
	}
	if ((rc = sd_job_decode(j, n_threads, &img)) < 0) {
		snprintf(err, errlen, "VAE decode: %s", strerror(-rc));
		goto out;
	}
	size_t n = (size_t)j->n_images * 3 * (size_t)j->width * (size_t)j->height;
	if (!(*out = malloc(n * sizeof(float)))) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	memcpy(*out, img, n * sizeof(float));
out:
	sd_job_free(j);
	return rc;
}
