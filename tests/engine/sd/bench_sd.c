/* Benchmark of the sampler's batching: images per second when four requests run one after
 * another (the baseline: batch 1), when they run as one stream batch (sd_step_jobs over the
 * four jobs: one UNet call per step for all of them, as the image worker does), and as one
 * request of four images. Interleaved repetitions, medians, ratios against the baseline of
 * the same run.
 *
 *   bench_sd [--quick] [--size tiny|small] [--px N] [--steps N] [--reps N]
 *
 * Model: inferd-mkmodel diffusion (default --size small at 128x128 pixels: a 32x32-latent
 * UNet of widths 64/128/256), guidance on (two UNet items per image). INFERD_MKMODEL is set by
 * meson. */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sd.h"
#include "../bench_util.h"

#define N_REQ 4

static struct sd_params params(int px, int steps, int k)
{
	return (struct sd_params){ .prompt = "a photograph of an astronaut riding a horse",
	                           .negative_prompt = "blurry", .width = px, .height = px,
	                           .steps = steps, .guidance = 7.5f, .seed = 100 + (uint64_t)k,
	                           .scheduler = "dpmpp_2m" };
}

/* Four requests, each run to its end before the next. */
static int run_sequential(struct sd_model *m, int px, int steps)
{
	char err[512];
	for (int k = 0; k < N_REQ; k++) {
		struct sd_params p = params(px, steps, k);
		float *img = NULL;
		int rc = sd_generate(m, &p, 0, NULL, NULL, &img, err, sizeof err);
		free(img);
		if (rc < 0) {
			fprintf(stderr, "bench_sd: %s\n", err);
			return rc;
		}
	}
	return 0;
}

/* Four requests as one stream batch: every step of all four in one UNet call. */
static int run_stream(struct sd_model *m, int px, int steps)
{
	struct sd_job *j[N_REQ] = { 0 };
	char err[512];
	int rc = 0;
	for (int k = 0; k < N_REQ && rc == 0; k++) {
		struct sd_params p = params(px, steps, k);
		rc = sd_job_new(m, &p, 0, &j[k], err, sizeof err);
	}
	while (rc == 0 && !sd_job_denoised(j[0]))
		rc = sd_step_jobs(m, j, N_REQ, 0);
	for (int k = 0; k < N_REQ && rc == 0; k++) {
		const float *img;
		rc = sd_job_decode(j[k], 0, &img);
	}
	for (int k = 0; k < N_REQ; k++)
		sd_job_free(j[k]);
	if (rc < 0)
		fprintf(stderr, "bench_sd: stream batch: %s\n", strerror(-rc));
	return rc;
}

/* One request of four images. */
static int run_one_request(struct sd_model *m, int px, int steps)
{
	struct sd_params p = params(px, steps, 0);
	float *img = NULL;
	char err[512];
	p.num_images = N_REQ;
	int rc = sd_generate(m, &p, 0, NULL, NULL, &img, err, sizeof err);
	free(img);
	if (rc < 0)
		fprintf(stderr, "bench_sd: %s\n", err);
	return rc;
}

int main(int argc, char **argv)
{
	const char *size = "small", *mk = getenv("INFERD_MKMODEL"), *t = getenv("TMPDIR");
	int px = 128, steps = 8, reps = 3;
	char dir[256], cmd[1024], err[512];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			size = "tiny";
			px = 64;
			steps = 4;
			reps = 3;
		} else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
			size = argv[++i];
		} else if (strcmp(argv[i], "--px") == 0 && i + 1 < argc) {
			px = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
			steps = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
			reps = atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: bench_sd [--quick] [--size tiny|small] [--px N] "
			        "[--steps N] [--reps N]\n");
			return 2;
		}
	}
	if (!mk) {
		fprintf(stderr, "bench_sd: INFERD_MKMODEL is not set\n");
		return 1;
	}
	if (reps < 1 || reps > 50 || steps < 1 || px < 8) {
		fprintf(stderr, "bench_sd: bad --reps, --steps or --px\n");
		return 2;
	}
	snprintf(dir, sizeof dir, "%s/inferd-bench-sd-XXXXXX", t ? t : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(cmd, sizeof cmd, "'%s' diffusion --out '%s/p' --size %s --seed 1 >/dev/null", mk,
	         dir, size);
	struct sd_model *m = NULL;
	int rc = system(cmd) == 0 ? 0 : -EIO;
	if (rc == 0) {
		snprintf(cmd, sizeof cmd, "%s/p", dir);
		rc = sd_model_open(cmd, NULL, &m, err, sizeof err);
		if (rc < 0)
			fprintf(stderr, "bench_sd: %s\n", err);
	}
	double seq[50], str[50], one[50];
	if (rc == 0) {
		printf("bench_sd: --size %s, %dx%d pixels, %d DPM++ steps, guidance on, %d threads; "
		       "%d requests of one image\n", size, px, px, steps, omp_get_max_threads(), N_REQ);
		rc = run_stream(m, px, steps); /* warm-up: primitives for every batch shape */
		if (rc == 0)
			rc = run_sequential(m, px, steps);
		if (rc == 0)
			rc = run_one_request(m, px, steps);
	}
	for (int r = 0; rc == 0 && r < reps; r++) {
		double t0 = bench_now();
		rc = run_sequential(m, px, steps);
		double t1 = bench_now();
		if (rc == 0)
			rc = run_stream(m, px, steps);
		double t2 = bench_now();
		if (rc == 0)
			rc = run_one_request(m, px, steps);
		double t3 = bench_now();
		seq[r] = t1 - t0;
		str[r] = t2 - t1;
		one[r] = t3 - t2;
	}
	if (rc == 0) {
		double s = bench_median(seq, reps), b = bench_median(str, reps), o = bench_median(one, reps);
		printf("  one after another (batch 1)   %8.3f s  %7.3f images/s\n", s, N_REQ / s);
		printf("  stream batch of %d requests    %8.3f s  %7.3f images/s  %.2fx\n", N_REQ, b,
		       N_REQ / b, s / b);
		printf("  one request of %d images       %8.3f s  %7.3f images/s  %.2fx\n", N_REQ, o,
		       N_REQ / o, s / o);
	}
	sd_model_free(m);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_sd: could not remove %s\n", dir);
	return rc < 0 ? 1 : 0;
}
