/* Benchmark of the VAE decoder: vae_decode() against the sum of its convolutions run alone
 * through oneDNN (conv2d objects with the same shapes and random weights, the same input
 * sizes), interleaved repetitions, medians, the ratio printed.
 *
 *   bench_vae [--quick] [--sd | --only-sd] [--sd-latent N] [--layouts] [--reps N]
 *
 * The baseline runs each convolution in the faster of its two layouts (conv2d's NCHW
 * activations or CONV2D_BLOCKED_IO), timed per conv in the warm-up; --layouts prints that
 * table.
 *
 * Models: inferd-mkmodel diffusion --size tiny (32x32 latents -> 64x64) and --size small
 * (64x64 latents -> 256x256); with --sd also an SD 1.x-size decoder ([128, 256, 512, 512],
 * 2 layers per block, random weights written here) at 32x32 latents -> 256x256 (--sd-latent
 * 64: 512x512). Needs
 * INFERD_MKMODEL (meson sets it). */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "conv.h"
#include "vae_util.h"
#include "../bench_util.h"

/* ---- the decoder's convolutions alone ---------------------------------------------------- */

struct bconv {
	struct conv2d *c;
	int in, out, k;
	int64_t h, w;
	float *x, *y;
	double flops;
};

struct convset {
	struct bconv *v;
	int n, cap;
	unsigned flags;   /* conv2d flags of every layer */
	double flops;
};

static int add_conv(struct convset *s, int in, int out, int k, int64_t n, int64_t h, int64_t w)
{
	if (s->n == s->cap) {
		int cap = s->cap ? 2 * s->cap : 64;
		struct bconv *v = realloc(s->v, (size_t)cap * sizeof *v);
		if (v == NULL)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	struct conv2d_desc d = { .in_ch = in, .out_ch = out, .kh = k, .kw = k, .stride_h = 1,
	                         .stride_w = 1, .pad_t = k / 2, .pad_l = k / 2, .pad_b = k / 2,
	                         .pad_r = k / 2 };
	size_t nw = (size_t)out * in * k * k, nx = (size_t)(n * in * h * w);
	size_t ny = (size_t)(n * out * h * w);
	float *wt = malloc(nw * sizeof *wt), *b = malloc((size_t)out * sizeof *b);
	struct bconv *c = &s->v[s->n];
	memset(c, 0, sizeof *c);
	c->in = in;
	c->out = out;
	c->k = k;
	c->x = malloc(nx * sizeof *c->x);
	c->y = malloc(ny * sizeof *c->y);
	int rc = -ENOMEM;
	if (wt != NULL && b != NULL && c->x != NULL && c->y != NULL) {
		vae_fill(wt, nw, (uint64_t)s->n * 3 + 1, false);
		vae_fill(b, (size_t)out, 2, false);
		vae_fill(c->x, nx, 3, true);
		rc = conv2d_new(&d, DTYPE_F32, wt, b, s->flags, &c->c);
	}
	free(wt);
	free(b);
	c->h = h;
	c->w = w;
	c->flops = 2.0 * (double)out * in * k * k * (double)(n * h * w);
	s->flops += c->flops;
	s->n++; /* freed by convset_free even when it failed */
	return rc;
}

static void convset_free(struct convset *s)
{
	for (int i = 0; i < s->n; i++) {
		conv2d_free(s->v[i].c);
		free(s->v[i].x);
		free(s->v[i].y);
	}
	free(s->v);
}

/* Every convolution vae_decode runs, from the architecture (vae.h). */
static int decoder_convs(const struct diff_vae_config *c, int64_t n, int64_t h, int64_t w,
                         struct convset *s)
{
	const int nb = c->n_blocks, *ch = c->block_out_channels, lat = c->latent_channels;
	const int top = ch[nb - 1];
	int rc = 0;
	if (c->use_post_quant_conv)
		rc = add_conv(s, lat, lat, 1, n, h, w);
	if (rc == 0)
		rc = add_conv(s, lat, top, 3, n, h, w);
	for (int r = 0; rc == 0 && r < 4; r++) /* mid resnets: conv1, conv2 each */
		rc = add_conv(s, top, top, 3, n, h, w);
	int cin = top;
	for (int i = 0; rc == 0 && i < nb; i++) {
		const int64_t hi = h << i, wi = w << i;
		const int cout = ch[nb - 1 - i];
		for (int j = 0; rc == 0 && j < c->layers_per_block + 1; j++) {
			int ri = j == 0 ? cin : cout;
			rc = add_conv(s, ri, cout, 3, n, hi, wi);
			if (rc == 0)
				rc = add_conv(s, cout, cout, 3, n, hi, wi);
			if (rc == 0 && ri != cout)
				rc = add_conv(s, ri, cout, 1, n, hi, wi);
		}
		if (rc == 0 && i < nb - 1)
			rc = add_conv(s, cout, cout, 3, n, 2 * hi, 2 * wi);
		cin = cout;
	}
	if (rc == 0)
		rc = add_conv(s, ch[0], c->out_channels, 3, n, h << (nb - 1), w << (nb - 1));
	return rc;
}

/* Runs every conv once: the one of s[0] (NCHW) or s[1] (blocked) that pick[i] says. */
static int convs_run(struct convset *s, const int *pick, int64_t n)
{
	for (int i = 0; i < s[0].n; i++) {
		const struct bconv *c = &s[pick[i]].v[i];
		int rc = conv2d_run(c->c, c->x, n, c->h, c->w, c->y);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Median time of conv i of s over 3 runs (after a first untimed one). */
static int conv_time(struct bconv *c, int64_t n, double *t)
{
	double v[3];
	int rc = conv2d_run(c->c, c->x, n, c->h, c->w, c->y);
	for (int r = 0; rc == 0 && r < 3; r++) {
		double t0 = bench_now();
		rc = conv2d_run(c->c, c->x, n, c->h, c->w, c->y);
		v[r] = bench_now() - t0;
	}
	*t = bench_median(v, 3);
	return rc;
}

/* Times each conv in both layouts and picks the faster one for the baseline. */
static int pick_layouts(struct convset *s, int *pick, int64_t n, bool table)
{
	double sum[2] = { 0, 0 }, best = 0;
	for (int i = 0; i < s[0].n; i++) {
		double t[2];
		int rc = conv_time(&s[0].v[i], n, &t[0]);
		if (rc == 0)
			rc = conv_time(&s[1].v[i], n, &t[1]);
		if (rc != 0)
			return rc;
		pick[i] = t[1] < t[0];
		sum[0] += t[0];
		sum[1] += t[1];
		best += t[pick[i]];
		const struct bconv *c = &s[0].v[i];
		if (table)
			printf("    conv %2d: %4d -> %4d k%d at %4lldx%-4lld  nchw %8.3f ms  blocked "
			       "%8.3f ms  (%.2fx)\n", i, c->in, c->out, c->k, (long long)c->h,
			       (long long)c->w, 1e3 * t[0], 1e3 * t[1], t[0] / t[1]);
	}
	if (table)
		printf("    sum: nchw %.2f ms, blocked %.2f ms, faster of the two per conv %.2f ms\n",
		       1e3 * sum[0], 1e3 * sum[1], 1e3 * best);
	return 0;
}

/* ---- an SD 1.x-size decoder with random weights ------------------------------------------ */

struct sdw {
	int64_t *count;   /* per tensor */
	int64_t *fan_in;  /* 0 for norms and biases */
	int *kind;
	int n, cap;
	struct st_writer *w;
	int rc;
};

static int sd_add(const char *name, const char *alt, uint32_t nd, const int64_t *shape,
                  enum diff_tensor_kind kind, void *arg)
{
	struct sdw *s = arg;
	(void)alt;
	if (strncmp(name, "encoder.", 8) == 0 || strcmp(name, "quant_conv.weight") == 0 ||
	    strcmp(name, "quant_conv.bias") == 0)
		return 0; /* decoder only */
	if (s->n == s->cap) {
		int cap = s->cap ? 2 * s->cap : 256;
		int64_t *c = realloc(s->count, (size_t)cap * sizeof *c);
		if (c != NULL)
			s->count = c;
		int64_t *fi = realloc(s->fan_in, (size_t)cap * sizeof *fi);
		if (fi != NULL)
			s->fan_in = fi;
		int *k = realloc(s->kind, (size_t)cap * sizeof *k);
		if (k != NULL)
			s->kind = k;
		if (c == NULL || fi == NULL || k == NULL)
			return -ENOMEM;
		s->cap = cap;
	}
	int64_t cnt = 1, fin = 1;
	for (uint32_t i = 0; i < nd; i++) {
		cnt *= shape[i];
		if (i > 0)
			fin *= shape[i];
	}
	s->count[s->n] = cnt;
	s->fan_in[s->n] = fin;
	s->kind[s->n] = (int)kind;
	s->n++;
	return st_writer_add_tensor(s->w, name, "F32", nd, shape);
}

static int sd_fill(size_t idx, void *buf, size_t nbytes, void *arg)
{
	struct sdw *s = arg;
	float *x = buf;
	size_t n = nbytes / sizeof *x;
	vae_fill(x, n, idx * 7919 + 1, false);
	for (size_t i = 0; i < n; i++) {
		if (s->kind[idx] == DIFF_TENSOR_WEIGHT)
			x[i] *= (float)sqrt(3.0 / (double)s->fan_in[idx]);
		else if (s->kind[idx] == DIFF_TENSOR_NORM)
			x[i] = 1.0f + 0.05f * x[i];
		else
			x[i] *= 0.02f;
	}
	return 0;
}

static int write_sd_vae(const char *path, struct diff_vae_config *c)
{
	static const int ch[4] = { 128, 256, 512, 512 };
	memset(c, 0, sizeof *c);
	c->in_channels = c->out_channels = 3;
	c->n_blocks = 4;
	memcpy(c->block_out_channels, ch, sizeof ch);
	c->layers_per_block = 2;
	c->latent_channels = 4;
	c->norm_num_groups = 32;
	c->sample_size = 512;
	c->scaling_factor = 0.18215f;
	c->use_quant_conv = c->use_post_quant_conv = c->mid_block_add_attention = true;
	struct sdw s = { .w = st_writer_new() };
	char err[256] = "";
	int rc = s.w != NULL ? diff_vae_tensors(c, sd_add, &s) : -ENOMEM;
	if (rc == 0)
		rc = st_writer_write(s.w, path, sd_fill, &s, err, sizeof err);
	if (rc != 0)
		fprintf(stderr, "bench_vae: cannot write %s: %s\n", path, err);
	st_writer_free(s.w);
	free(s.count);
	free(s.fan_in);
	free(s.kind);
	return rc;
}

/* ---- one case ------------------------------------------------------------------------------ */

static int bench_case(const char *what, const struct diff_vae_config *cfg,
                      const struct st_file *f, int64_t n, int64_t h, int64_t w, int reps,
                      bool table)
{
	struct vae *v = NULL;
	struct convset cs[2] = { { .flags = 0 }, { .flags = CONV2D_BLOCKED_IO } };
	char err[512] = "";
	int *pick = NULL;
	int rc = vae_new(cfg, f, false, &v, err, sizeof err);
	if (rc != 0) {
		fprintf(stderr, "bench_vae: %s: %s\n", what, err);
		return rc;
	}
	const int fct = vae_downscale(v);
	const size_t nz = (size_t)(n * cfg->latent_channels * h * w);
	const size_t ni = (size_t)(n * cfg->out_channels * h * fct * w * fct);
	float *z = malloc(nz * sizeof *z), *img = malloc(ni * sizeof *img);
	double *td = calloc((size_t)reps, sizeof *td), *tc = calloc((size_t)reps, sizeof *tc);
	rc = -ENOMEM;
	if (z == NULL || img == NULL || td == NULL || tc == NULL)
		goto done;
	vae_fill(z, nz, 1, true);
	/* first decode before the baseline's buffers exist: the process's peak RSS after it is
	 * the decoder's (weights, scratch, conv2d's pool) plus what earlier cases left */
	double t0 = bench_now();
	if ((rc = vae_decode(v, z, n, h, w, img, 0)) != 0)
		goto done;
	double tfirst = bench_now() - t0;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("%-22s first decode %.1f ms, process peak RSS %.0f MiB\n", what, 1e3 * tfirst,
	       (double)ru.ru_maxrss / 1024.0);
	fflush(stdout);
	if ((rc = decoder_convs(cfg, n, h, w, &cs[0])) != 0 ||
	    (rc = decoder_convs(cfg, n, h, w, &cs[1])) != 0)
		goto done;
	rc = -ENOMEM;
	if ((pick = calloc((size_t)cs[0].n, sizeof *pick)) == NULL)
		goto done;
	/* warm-up of the baseline: primitives made, pages faulted in, layout per conv */
	if ((rc = pick_layouts(cs, pick, n, table)) != 0)
		goto done;
	for (int r = 0; r < reps; r++) {
		t0 = bench_now();
		if ((rc = vae_decode(v, z, n, h, w, img, 0)) != 0)
			goto done;
		double t1 = bench_now();
		if ((rc = convs_run(cs, pick, n)) != 0)
			goto done;
		double t2 = bench_now();
		td[r] = t1 - t0;
		tc[r] = t2 - t1;
	}
	double md = bench_median(td, reps), mc = bench_median(tc, reps);
	printf("%-22s B=%lld %3lldx%-3lld -> %4lldx%-4lld  decode %8.2f ms   %3d convs alone "
	       "%8.2f ms (%6.1f GFLOP, %5.1f GFLOP/s)   ratio %.3f\n", what, (long long)n,
	       (long long)h, (long long)w, (long long)(h * fct), (long long)(w * fct), 1e3 * md,
	       cs[0].n, 1e3 * mc, cs[0].flops * 1e-9, cs[0].flops * 1e-9 / mc, md / mc);
	fflush(stdout);
	rc = 0;
done:
	if (rc != 0)
		fprintf(stderr, "bench_vae: %s: error %d\n", what, rc);
	convset_free(&cs[0]);
	convset_free(&cs[1]);
	free(pick);
	free(z);
	free(img);
	free(td);
	free(tc);
	vae_free(v);
	return rc;
}

static int bench_folder(const char *what, const char *dir, int64_t n, int64_t h, int64_t w,
                        int reps, bool table)
{
	struct diff_vae_config cfg;
	struct st_file *f = NULL;
	char err[512] = "";
	int rc = vae_open_folder(dir, &cfg, &f, err, sizeof err);
	if (rc != 0) {
		fprintf(stderr, "bench_vae: %s: %s\n", dir, err);
		return rc;
	}
	rc = bench_case(what, &cfg, f, n, h, w, reps, table);
	st_free(f);
	return rc;
}

int main(int argc, char **argv)
{
	bool quick = false, sd = false, only_sd = false, table = false;
	int reps = 7, sd_latent = 32;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = true;
		else if (strcmp(argv[i], "--sd") == 0)
			sd = true;
		else if (strcmp(argv[i], "--only-sd") == 0)
			sd = only_sd = true;
		else if (strcmp(argv[i], "--layouts") == 0)
			table = true;
		else if (strcmp(argv[i], "--sd-latent") == 0 && i + 1 < argc)
			sd_latent = atoi(argv[++i]);
		else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
			reps = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: bench_vae [--quick] [--sd | --only-sd] [--sd-latent N] "
			        "[--layouts] [--reps N]\n");
			return 2;
		}
	}
	if (quick)
		reps = 3;
	if (reps < 1)
		reps = 1;
	if (sd_latent < 1 || sd_latent > 256)
		sd_latent = 32;
	char tiny[600], small[600];
	if (vae_mkmodel("tiny", "tiny", "f32", tiny, sizeof tiny) != 0 ||
	    vae_mkmodel("small", "small", "f32", small, sizeof small) != 0) {
		fprintf(stderr, "bench_vae: needs INFERD_MKMODEL (inferd-mkmodel)\n");
		vae_tmpdir_remove();
		return 1;
	}
	printf("VAE decode vs its convolutions alone (oneDNN, same shapes), %d threads, median of "
	       "%d interleaved runs\n", omp_get_max_threads(), reps);
	int rc = only_sd ? 0 : bench_folder("tiny [32,64]", tiny, 1, 32, 32, reps, table);
	if (rc == 0 && !only_sd)
		rc = bench_folder("small [64,128,128]", small, 1, 64, 64, reps, table);
	if (rc == 0 && !quick && !only_sd)
		rc = bench_folder("small [64,128,128]", small, 2, 64, 64, reps, false);
	if (rc == 0 && sd) {
		char path[700];
		struct diff_vae_config c;
		struct st_file *f = NULL;
		char err[512] = "";
		snprintf(path, sizeof path, "%s/sd-vae.safetensors", vae_tmpdir());
		rc = write_sd_vae(path, &c);
		if (rc == 0 && (rc = st_open(path, &f, err, sizeof err)) != 0)
			fprintf(stderr, "bench_vae: %s\n", err);
		if (rc == 0)
			rc = bench_case("SD [128,256,512,512]", &c, f, 1, sd_latent, sd_latent,
			                reps < 5 ? reps : 5, table);
		st_free(f);
	}
	vae_tmpdir_remove();
	return rc != 0;
}
