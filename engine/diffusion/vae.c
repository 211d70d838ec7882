/* The VAE's decoder and encoder graphs (see vae.h) over three rotating scratch buffers
 * (struct vae_run in vae-internal.h), sized per call for the largest activation. */
#include "vae-internal.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion_ops.h"

#define VAE_MAX_SIDE (1 << 20) /* pixels, either side */

/* *acc = max(*acc, a * b * c * d) without overflow. @return false on overflow. */
static bool size_max(uint64_t *acc, int64_t a, int64_t b, int64_t c, int64_t d)
{
	uint64_t p;
	if (__builtin_mul_overflow((uint64_t)a, (uint64_t)b, &p) ||
	    __builtin_mul_overflow(p, (uint64_t)c, &p) || __builtin_mul_overflow(p, (uint64_t)d, &p))
		return false;
	if (p > *acc)
		*acc = p;
	return true;
}

/* Floats per scratch buffer: the largest activation (one image) the decoder (or encoder, with
 * h, w the image size) makes, times batch. @return false when it does not fit in memory. */
static bool plan(const struct diff_vae_config *c, bool decoder, int64_t batch, int64_t h,
                 int64_t w, uint64_t *cap)
{
	const int n = c->n_blocks, *ch = c->block_out_channels, top = ch[n - 1];
	uint64_t m = 0;
	bool ok = true;
	if (decoder) {
		ok = size_max(&m, c->latent_channels, h, w, 1) &&
		     size_max(&m, top, h, w, c->mid_block_add_attention ? 3 : 1);
		for (int i = 0, cin = top; ok && i < n; i++) {
			const int64_t hi = h << i, wi = w << i, cout = ch[n - 1 - i];
			ok = size_max(&m, cin, hi, wi, 1) && size_max(&m, cout, hi, wi, 1) &&
			     (i == n - 1 || size_max(&m, cout, 2 * hi, 2 * wi, 1));
			cin = (int)cout;
		}
	} else {
		for (int i = 0, cin = ch[0]; ok && i < n; i++) {
			const int64_t hi = h >> i, wi = w >> i;
			ok = size_max(&m, cin, hi, wi, 1) && size_max(&m, ch[i], hi, wi, 1);
			cin = ch[i];
		}
		const int64_t hn = h >> (n - 1), wn = w >> (n - 1);
		ok = ok && size_max(&m, top, hn, wn, c->mid_block_add_attention ? 3 : 1) &&
		     size_max(&m, 2 * c->latent_channels, hn, wn, 1);
	}
	ok = ok && size_max(&m, (int64_t)m, batch, 1, 1);
	*cap = m;
	return ok && m <= SIZE_MAX / 3 / sizeof(float);
}

static int run_alloc(struct vae_run *r, uint64_t cap)
{
	size_t bytes = ((size_t)cap * sizeof(float) + 63) & ~(size_t)63;
	for (int i = 0; i < 3; i++) {
		r->bufs[i] = aligned_alloc(64, bytes);
		if (r->bufs[i] == NULL)
			return -ENOMEM;
	}
	return 0;
}

static void run_free(struct vae_run *r)
{
	for (int i = 0; i < 3; i++)
		free(r->bufs[i]);
}

static int mid_run(struct vae_run *r, const struct vae_mid *m)
{
	int rc = vae_resnet_run(r, &m->r0);
	if (rc == 0 && m->attn != NULL)
		rc = vae_attn_run(r, m->attn);
	if (rc == 0)
		rc = vae_resnet_run(r, &m->r1);
	return rc;
}

/* Sets the calling thread's OpenMP team size (the convolutions use it) for one call. */
static int threads_enter(int n_threads, int *saved)
{
	*saved = omp_get_max_threads();
	if (n_threads > 0)
		omp_set_num_threads(n_threads);
	return n_threads > 0 ? n_threads : *saved;
}

static void threads_leave(int n_threads, int saved)
{
	if (n_threads > 0)
		omp_set_num_threads(saved);
}

/* ---- decoder --------------------------------------------------------------------------- */

int vae_decode(const struct vae *v, const float *z, int64_t batch, int64_t h, int64_t w,
               float *img, int n_threads)
{
	if (v == NULL || z == NULL || img == NULL || batch < 1 || h < 1 || w < 1 ||
	    n_threads < 0)
		return -EINVAL;
	const struct diff_vae_config *c = &v->cfg;
	const int f = vae_downscale(v);
	if (h > VAE_MAX_SIDE / f || w > VAE_MAX_SIDE / f)
		return -EINVAL;
	uint64_t cap;
	if (!plan(c, true, batch, h, w, &cap))
		return -ENOMEM;
	struct vae_run r = { .n = batch, .c = c->latent_channels, .h = h, .w = w,
	                     .groups = c->norm_num_groups };
	int saved, rc = run_alloc(&r, cap);
	r.nt = threads_enter(n_threads, &saved);
	if (rc != 0)
		goto done;

	/* into the VAE's latent space */
	const int64_t count = batch * c->latent_channels * h * w;
	const float inv = 1.0f / c->scaling_factor, shift = c->shift_factor;
	float *x = r.bufs[0];
	for (int64_t i = 0; i < count; i++)
		x[i] = z[i] * inv + shift;
	const struct vae_coder *d = &v->dec;
	if (d->quant != NULL && (rc = vae_conv_run(&r, d->quant, c->latent_channels)) != 0)
		goto done;
	if ((rc = vae_conv_run(&r, d->conv_in, c->block_out_channels[c->n_blocks - 1])) != 0 ||
	    (rc = mid_run(&r, &d->mid)) != 0)
		goto done;
	for (int i = 0; i < d->n_levels; i++) {
		const struct vae_level *lv = &d->levels[i];
		for (int j = 0; j < lv->n_res; j++)
			if ((rc = vae_resnet_run(&r, &lv->res[j])) != 0)
				goto done;
		if (lv->resample != NULL && (rc = vae_upsample_run(&r, lv->resample)) != 0)
			goto done;
	}
	if ((rc = vae_norm_silu_run(&r, &d->norm_out)) != 0)
		goto done;
	rc = conv2d_run(d->conv_out, vae_run_x(&r), batch, r.h, r.w, img);
done:
	threads_leave(n_threads, saved);
	run_free(&r);
	return rc;
}

/* ---- encoder --------------------------------------------------------------------------- */

int vae_encode(const struct vae *v, const float *img, int64_t batch, int64_t H, int64_t W,
               float *mean, float *std, int n_threads)
{
	if (v == NULL || img == NULL || mean == NULL || std == NULL || batch < 1 || H < 1 ||
	    W < 1 || n_threads < 0 || !v->enc.built)
		return -EINVAL;
	const struct diff_vae_config *c = &v->cfg;
	const int f = vae_downscale(v);
	if (H % f != 0 || W % f != 0 || H > VAE_MAX_SIDE || W > VAE_MAX_SIDE)
		return -EINVAL;
	uint64_t cap;
	if (!plan(c, false, batch, H, W, &cap))
		return -ENOMEM;
	const struct vae_coder *e = &v->enc;
	const int lat = c->latent_channels, top = c->block_out_channels[c->n_blocks - 1];
	struct vae_run r = { .n = batch, .c = c->block_out_channels[0], .h = H, .w = W,
	                     .groups = c->norm_num_groups };
	int saved, rc = run_alloc(&r, cap);
	r.nt = threads_enter(n_threads, &saved);
	if (rc != 0 || (rc = conv2d_run(e->conv_in, img, batch, H, W, r.bufs[0])) != 0)
		goto done;
	for (int i = 0; i < e->n_levels; i++) {
		const struct vae_level *lv = &e->levels[i];
		for (int j = 0; j < lv->n_res; j++)
			if ((rc = vae_resnet_run(&r, &lv->res[j])) != 0)
				goto done;
		if (lv->resample != NULL && (rc = vae_conv_run(&r, lv->resample, lv->cout)) != 0)
			goto done;
	}
	if (r.c != top || r.h != H / f || r.w != W / f) {
		rc = -EINVAL; /* not reached: sizes are multiples of f */
		goto done;
	}
	if ((rc = mid_run(&r, &e->mid)) != 0 || (rc = vae_norm_silu_run(&r, &e->norm_out)) != 0 ||
	    (rc = vae_conv_run(&r, e->conv_out, 2 * lat)) != 0 ||
	    (e->quant != NULL && (rc = vae_conv_run(&r, e->quant, 2 * lat)) != 0))
		goto done;

	/* (mean, logvar) -> the UNet's space */
	const int64_t hw = r.h * r.w;
	const float s = c->scaling_factor, shift = c->shift_factor;
	const float *x = vae_run_x(&r);
	for (int64_t b = 0; b < batch; b++) {
		const float *mb = x + b * 2 * lat * hw, *lb = mb + lat * hw;
		float *mo = mean + b * lat * hw, *so = std + b * lat * hw;
		for (int64_t i = 0; i < lat * hw; i++) {
			float lv = fminf(fmaxf(lb[i], -30.0f), 20.0f);
			mo[i] = (mb[i] - shift) * s;
			so[i] = expf(0.5f * lv) * s;
		}
	}
done:
	threads_leave(n_threads, saved);
	run_free(&r);
	return rc;
}
