/* Stable Diffusion runs over an inferd-mkmodel folder against tests/reference/sd_ref.py (numpy,
 * float64, assembled from the component references): a 4-step DDIM text-to-image run with
 * guidance and a negative prompt, a batch of two images, the Euler ancestral and DPM-Solver++
 * schedulers, image-to-image with a strength, guidance off. Then: jobs stepped together in one
 * UNet batch (at different steps, different sizes) equal each job stepped alone; parameter
 * errors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sd.h"

/* Relative to the largest reference value: float32 through the text encoder, UNet steps and
 * the VAE against float64. Measured (2026-12): 0.6e-6 to 2.9e-6 over the cases below. */
#define TOL 5e-5

static char dir[256];
static struct sd_model *model;

static void setup_model(void)
{
	const char *mk = getenv("INFERD_MKMODEL"), *t = getenv("TMPDIR");
	char cmd[1024], err[512];
	cr_assert_not_null(mk, "INFERD_MKMODEL is not set");
	snprintf(dir, sizeof dir, "%s/inferd-sd-test-XXXXXX", t ? t : "/tmp");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(cmd, sizeof cmd, "'%s' diffusion --out '%s/p' --seed 5 >/dev/null", mk, dir);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	snprintf(cmd, sizeof cmd, "%s/p", dir);
	cr_assert_eq(sd_model_open(cmd, NULL, &model, err, sizeof err), 0, "%s", err);
}

static void teardown_model(void)
{
	char cmd[300];
	sd_model_free(model);
	model = NULL;
	if (dir[0]) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
}

TestSuite(sd, .init = setup_model, .fini = teardown_model, .timeout = 300);

/* Runs the reference; NULL (and a skip) without python3 + numpy. */
static double *reference(const struct sd_params *p, const char *init_path, size_t n)
{
	const char *py = getenv("INFERD_PYTHON"), *ref = getenv("INFERD_REF_DIR");
	char cmd[2048], out[300];
	if (!py || !ref || access(py, X_OK) != 0 ||
	    system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0)
		return NULL;
	snprintf(out, sizeof out, "%s/ref.f64", dir);
	int len = snprintf(cmd, sizeof cmd, "'%s' '%s/sd_ref.py' run '%s/p' '%s' --prompt '%s' "
	                   "--negative '%s' --width %d --height %d --steps %d --guidance %g "
	                   "--seed %llu --scheduler %s --num-images %d", py, ref, dir, out, p->prompt,
	                   p->negative_prompt ? p->negative_prompt : "", p->width, p->height,
	                   p->steps, (double)p->guidance, (unsigned long long)p->seed,
	                   p->scheduler, p->num_images ? p->num_images : 1);
	if (init_path)
		snprintf(cmd + len, sizeof cmd - (size_t)len, " --init '%s' --strength %g", init_path,
		         (double)p->strength);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	FILE *f = fopen(out, "rb");
	cr_assert_not_null(f);
	double *r = malloc(n * sizeof(double));
	cr_assert_eq(fread(r, sizeof(double), n, f), n, "short reference output");
	fclose(f);
	return r;
}

static void compare(const float *got, const double *want, size_t n, const char *what)
{
	double max_ref = 0, max_err = 0;
	for (size_t i = 0; i < n; i++) {
		max_ref = fmax(max_ref, fabs(want[i]));
		max_err = fmax(max_err, fabs((double)got[i] - want[i]));
	}
	fprintf(stderr, "%s: max error %.3g of max %.3g (relative %.3g)\n", what, max_err, max_ref,
	        max_err / max_ref);
	cr_assert_lt(max_err, TOL * fmax(max_ref, 1.0), "%s: max error %g, max value %g", what,
	             max_err, max_ref);
}

static void run_case(struct sd_params p, const struct image_rgb8 *init, const char *what)
{
	char err[512], init_path[300];
	float *img = NULL;
	int k = p.num_images ? p.num_images : 1;
	size_t n = (size_t)k * 3 * (size_t)p.width * (size_t)p.height;
	if (init) {
		snprintf(init_path, sizeof init_path, "%s/init.rgb", dir);
		FILE *f = fopen(init_path, "wb");
		cr_assert_not_null(f);
		fwrite(init->pixels, 3, (size_t)init->width * (size_t)init->height, f);
		fclose(f);
		p.init = init;
	}
	double *ref = reference(&p, init ? init_path : NULL, n);
	if (!ref)
		cr_skip_test("no /usr/bin/python3 with numpy: the reference was not run");
	cr_assert_eq(sd_generate(model, &p, 2, NULL, NULL, &img, err, sizeof err), 0, "%s", err);
	compare(img, ref, n, what);
	free(img);
	free(ref);
}

static struct sd_params base(void)
{
	return (struct sd_params){ .prompt = "an astronaut riding a horse on the moon",
	                           .negative_prompt = "blurry, low quality", .width = 32,
	                           .height = 32, .steps = 4, .guidance = 7.5f, .seed = 42,
	                           .scheduler = "ddim" };
}

Test(sd, ddim_four_steps_with_guidance_matches_the_reference)
{
	run_case(base(), NULL, "ddim 4 steps");
}

Test(sd, a_batch_of_two_non_square_images_matches_the_reference)
{
	struct sd_params p = base();
	p.num_images = 2;
	p.width = 48;
	p.height = 24;
	run_case(p, NULL, "ddim batch of 2, 48x24");
}

Test(sd, euler_ancestral_and_dpmpp_match_the_reference)
{
	struct sd_params p = base();
	p.scheduler = "euler_a";
	p.steps = 5;
	run_case(p, NULL, "euler_a 5 steps");
	p.scheduler = "dpmpp_2m";
	p.guidance = 1.0f; /* guidance off: no negative pass */
	run_case(p, NULL, "dpmpp_2m 5 steps, guidance off");
}

Test(sd, image_to_image_matches_the_reference)
{
	struct image_rgb8 init = { .width = 32, .height = 32 };
	init.pixels = malloc(32 * 32 * 3);
	for (int i = 0; i < 32 * 32 * 3; i++)
		init.pixels[i] = (uint8_t)((i * 37 + (i / 96) * 11) & 0xff);
	struct sd_params p = base();
	p.steps = 6;
	p.strength = 0.5f;
	run_case(p, &init, "img2img strength 0.5 of 6 ddim steps");
	free(init.pixels);
}

/* ---- stream batch: stepping jobs together equals stepping them alone --------------------- */

static float *run_alone(const struct sd_params *p)
{
	char err[512];
	float *img = NULL;
	cr_assert_eq(sd_generate(model, p, 2, NULL, NULL, &img, err, sizeof err), 0, "%s", err);
	return img;
}

Test(sd, jobs_at_different_steps_in_one_batch_equal_each_alone)
{
	struct sd_params p[3] = { base(), base(), base() };
	p[1].seed = 7;
	p[1].scheduler = "euler";
	p[1].steps = 6;
	p[2].seed = 9;
	p[2].scheduler = "dpmpp_2m";
	p[2].width = 16; /* another size: stepped in its own group of the same call */
	p[2].steps = 3;
	struct sd_job *j[3];
	char err[512];
	for (int i = 0; i < 3; i++)
		cr_assert_eq(sd_job_new(model, &p[i], 2, &j[i], err, sizeof err), 0, "%s", err);
	/* Job 0 starts alone for two steps, then the others join: a stream batch. */
	cr_assert_eq(sd_step_jobs(model, j, 1, 2), 0);
	cr_assert_eq(sd_step_jobs(model, j, 1, 2), 0);
	for (;;) {
		struct sd_job *live[3];
		int n = 0;
		for (int i = 0; i < 3; i++)
			if (!sd_job_denoised(j[i]))
				live[n++] = j[i];
		if (!n)
			break;
		cr_assert_eq(sd_step_jobs(model, live, n, 2), 0);
	}
	for (int i = 0; i < 3; i++) {
		const float *img;
		cr_assert_eq(sd_job_steps_done(j[i]), p[i].steps);
		cr_assert_eq(sd_job_decode(j[i], 2, &img), 0);
		float *alone = run_alone(&p[i]);
		size_t n = 3 * (size_t)p[i].width * (size_t)p[i].height;
		double max_err = 0, max_ref = 0;
		for (size_t q = 0; q < n; q++) {
			max_err = fmax(max_err, fabs((double)img[q] - alone[q]));
			max_ref = fmax(max_ref, fabs((double)alone[q]));
		}
		/* Only float rounding differs (other GEMM shapes in a batch). */
		cr_assert_lt(max_err, 1e-4 * fmax(max_ref, 1.0), "job %d: batched differs by %g", i,
		             max_err);
		free(alone);
		sd_job_free(j[i]);
	}
}

Test(sd, a_step_of_a_finished_or_foreign_job_is_refused)
{
	struct sd_params p = base();
	struct sd_job *j;
	char err[512];
	p.steps = 1;
	cr_assert_eq(sd_job_new(model, &p, 2, &j, err, sizeof err), 0, "%s", err);
	cr_assert_eq(sd_step_jobs(model, &j, 1, 2), 0);
	cr_assert(sd_job_denoised(j));
	cr_assert_eq(sd_step_jobs(model, &j, 1, 2), -EINVAL);
	cr_assert_eq(sd_step_jobs(model, NULL, 1, 2), -EINVAL);
	sd_job_free(j);
}

/* ---- parameter checks -------------------------------------------------------------------- */

static void expect_bad(struct sd_params p, const char *text)
{
	char err[512] = "";
	cr_assert_eq(sd_params_check(model, &p, false, err, sizeof err), -EINVAL, "accepted (%s)", text);
	cr_assert(strstr(err, text), "'%s' does not say '%s'", err, text);
	struct sd_job *j = NULL;
	cr_assert_eq(sd_job_new(model, &p, 1, &j, err, sizeof err), -EINVAL);
	cr_assert_null(j);
}

Test(sd, bad_parameters_are_refused_with_a_reason)
{
	struct sd_params p = base();
	char err[256];
	struct sd_model_info in;
	sd_model_get_info(model, &in);
	cr_assert_eq(in.size_multiple, 4);
	cr_assert_eq(in.default_width, 64);
	cr_assert_eq(sd_params_check(model, &p, false, err, sizeof err), 0, "%s", err);
	p.width = 30;
	expect_bad(p, "multiples of 4");
	p = base();
	p.height = 4096;
	expect_bad(p, "width and height");
	p = base();
	p.steps = -1;
	expect_bad(p, "steps");
	p.steps = 1001;
	expect_bad(p, "steps");
	p = base();
	p.scheduler = "pndm";
	expect_bad(p, "unknown scheduler");
	p = base();
	p.scheduler = "lcm";
	p.steps = 60;
	expect_bad(p, "at most 50");
	p = base();
	p.guidance = NAN;
	expect_bad(p, "guidance");
	p = base();
	p.num_images = 17;
	expect_bad(p, "num_images");
	p = base();
	p.strength = 1.5f;
	expect_bad(p, "strength");
	p = base();
	p.width = p.height = 2048;
	p.num_images = 2;
	expect_bad(p, "at most 4194304 pixels");
	p = base();
	p.clip_skip = 5;
	expect_bad(p, "clip_skip");
	p = base();
	p.prompt = NULL;
	expect_bad(p, "prompt");
	struct image_rgb8 init = { .pixels = (uint8_t[12]){ 0 }, .width = 2, .height = 2 };
	p = base();
	p.init = &init;
	p.steps = 4;
	p.strength = 0.1f;
	expect_bad(p, "no denoising step");
	/* The same checked before the init image is there (the daemon decodes it later). */
	p.init = NULL;
	err[0] = 0;
	cr_assert_eq(sd_params_check(model, &p, true, err, sizeof err), -EINVAL);
	cr_assert(strstr(err, "no denoising step"), "%s", err);
	cr_assert_eq(sd_params_check(model, &p, false, err, sizeof err), 0, "%s", err);
}

Test(sd, the_defaults_come_from_the_folder)
{
	struct sd_params p = { .prompt = "x", .seed = 1 };
	struct sd_job *j;
	char err[256];
	cr_assert_eq(sd_job_new(model, &p, 2, &j, err, sizeof err), 0, "%s", err);
	cr_assert_eq(sd_job_width(j), 64);
	cr_assert_eq(sd_job_height(j), 64);
	cr_assert_eq(sd_job_total_steps(j), 20);
	cr_assert_eq(sd_job_unet_items(j), 2, "guidance 7.5: a negative item");
	cr_assert_eq(sd_job_num_images(j), 1);
	sd_job_free(j);
}
