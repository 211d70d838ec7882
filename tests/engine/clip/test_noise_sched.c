/* Noise schedulers against tests/reference/noise_sched_ref.py (numpy, float64): timesteps,
 * sigmas, init_noise_sigma, a full run on a fixed "model", img2img noising; seeded noise;
 * bad arguments. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "clip_util.h"
#include "noise_sched.h"

#define N_ELEMS 64

struct case_p { /* no pointers: criterion copies parameters into each test process */
	enum nsched_kind kind;
	enum nsched_beta beta;
	enum nsched_spacing spacing;
	enum nsched_pred pred;
	int steps;
	int offset;
	int alpha_one;
	double strength;
	double clip_sample;  /* range; 0 = off */
};

static const char *beta_names[] = { "linear", "scaled_linear", "squaredcos_cap_v2" };
static const char *spacing_names[] = { "leading", "trailing", "linspace" };
static const char *pred_names[] = { "epsilon", "v_prediction" };

ParameterizedTestParameters(noise_sched, matches_reference)
{
	static struct case_p cases[] = {
		{ NSCHED_DDIM, NSCHED_BETA_SCALED_LINEAR, NSCHED_SPACING_LEADING, NSCHED_PRED_EPSILON, 10, 1, 0, 0.6, 0 },
		{ NSCHED_DDIM, NSCHED_BETA_LINEAR, NSCHED_SPACING_TRAILING, NSCHED_PRED_V, 7, 0, 1, 0.5, 0 },
		{ NSCHED_DDIM, NSCHED_BETA_SQUAREDCOS, NSCHED_SPACING_LINSPACE, NSCHED_PRED_EPSILON, 5, 0, 0, 1.0, 0 },
		{ NSCHED_DDIM, NSCHED_BETA_SCALED_LINEAR, NSCHED_SPACING_TRAILING, NSCHED_PRED_EPSILON, 61, 0, 0, 0.3, 0 },
		{ NSCHED_EULER, NSCHED_BETA_SCALED_LINEAR, NSCHED_SPACING_LEADING, NSCHED_PRED_EPSILON, 10, 1, 0, 0.75, 0 },
		{ NSCHED_EULER, NSCHED_BETA_SCALED_LINEAR, NSCHED_SPACING_LINSPACE, NSCHED_PRED_V, 7, 0, 0, 0.6, 0 },
		{ NSCHED_EULER, NSCHED_BETA_LINEAR, NSCHED_SPACING_TRAILING, NSCHED_PRED_EPSILON, 6, 0, 0, 0.05, 0 },
		{ NSCHED_EULER_A, NSCHED_BETA_SCALED_LINEAR, NSCHED_SPACING_LEADING, NSCHED_PRED_EPSILON, 8, 1, 0, 0.6, 0 },
		{ NSCHED_EULER_A, NSCHED_BETA_SQUAREDCOS, NSCHED_SPACING_TRAILING, NSCHED_PRED_V, 5, 0, 0, 0.9, 0 },
		{ NSCHED_DPMPP_2M, NSCHED_BETA_SCALED_LINEAR, NSCHED_SPACING_LEADING, NSCHED_PRED_EPSILON, 10, 1, 0, 0.6, 0 },
		{ NSCHED_DPMPP_2M, NSCHED_BETA_SCALED_LINEAR, NSCHED_SPACING_LINSPACE, NSCHED_PRED_V, 20, 0, 0, 0.5, 0 },
		{ NSCHED_DPMPP_2M, NSCHED_BETA_LINEAR, NSCHED_SPACING_TRAILING, NSCHED_PRED_EPSILON, 4, 0, 0, 0.75, 0 },
		{ NSCHED_LCM, NSCHED_BETA_SCALED_LINEAR, NSCHED_SPACING_LEADING, NSCHED_PRED_EPSILON, 4, 1, 0, 0.5, 0 },
		{ NSCHED_LCM, NSCHED_BETA_SCALED_LINEAR, NSCHED_SPACING_LEADING, NSCHED_PRED_V, 6, 1, 1, 0.0, 0 },
		{ NSCHED_DDIM, NSCHED_BETA_LINEAR, NSCHED_SPACING_LEADING, NSCHED_PRED_EPSILON, 8, 1, 1, 0.6, 1.0 },
		{ NSCHED_LCM, NSCHED_BETA_SCALED_LINEAR, NSCHED_SPACING_LEADING, NSCHED_PRED_EPSILON, 4, 1, 0, 0.5, 0.5 },
	};
	return cr_make_param_array(struct case_p, cases, sizeof cases / sizeof cases[0]);
}

/* Max of |a - b| / max(1, |b|): the absolute difference for values up to 1, the relative one
 * above (squaredcos_cap_v2 at t = 999 has alphas_cumprod near 0 and latents near 1e4, where an
 * f32 ulp is 1e-3). */
static double maxdiff_f(const float *a, const double *b, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(a[i] - b[i]) / fmax(1.0, fabs(b[i])));
	return m;
}

ParameterizedTest(struct case_p *p, noise_sched, matches_reference, .timeout = 60,
                  .fini = clip_tmpdir_remove)
{
	const char *d = clip_tmpdir();
	char out[512], args[1024];
	cr_assert_not_null(d);
	snprintf(out, sizeof out, "%s/ref.bin", d);
	snprintf(args, sizeof args, "--kind %s --beta %s --spacing %s --offset %d --pred %s "
	         "--steps %d --alpha-one %d --n %d --strength %.17g --clip-sample %.17g '%s'",
	         nsched_kind_name(p->kind), beta_names[p->beta], spacing_names[p->spacing],
	         p->offset, pred_names[p->pred], p->steps, p->alpha_one, N_ELEMS, p->strength,
	         p->clip_sample, out);
	int rc = clip_run_ref("noise_sched_ref.py", args);
	if (rc == -ENOENT)
		cr_skip_test("no python3 with numpy: reference not run");
	cr_assert_eq(rc, 0, "noise_sched_ref.py %s failed", args);
	size_t len = 0;
	double *ref = (double *)clip_read_all(out, &len);
	cr_assert_not_null(ref);
	const int n = p->steps;
	const size_t want = 1 + (size_t)n + (size_t)n + 1 + 3 * (size_t)n * N_ELEMS + 1 + N_ELEMS + 8;
	cr_assert_eq(len, want * sizeof(double), "reference wrote %zu bytes", len);

	struct nsched_config c;
	nsched_config_default(&c);
	c.beta_schedule = p->beta;
	c.spacing = p->spacing;
	c.prediction = p->pred;
	c.steps_offset = p->offset;
	c.set_alpha_to_one = p->alpha_one != 0;
	c.clip_sample = p->clip_sample > 0;
	c.clip_sample_range = p->clip_sample > 0 ? p->clip_sample : 1.0;
	struct nsched *s = NULL;
	cr_assert_eq(nsched_new(p->kind, &c, n, &s), 0);
	cr_assert_eq(nsched_n_steps(s), n);

	const double *r = ref;
	double md_sched = fabs(nsched_init_noise_sigma(s) - *r++);
	for (int i = 0; i < n; i++)
		md_sched = fmax(md_sched, fabs(nsched_timesteps(s)[i] - *r++));
	for (int i = 0; i <= n; i++)
		md_sched = fmax(md_sched, fabs(nsched_sigmas(s)[i] - *r++));
	cr_assert_lt(md_sched, 1e-9, "timesteps/sigmas/init sigma differ by %.3g", md_sched);

	float x[N_ELEMS], xin[N_ELEMS], m[N_ELEMS], x0[N_ELEMS], noise[N_ELEMS];
	struct nsched_rng rng, mrng;
	nsched_rng_init(&rng, 1);
	nsched_rng_normal(&rng, x, N_ELEMS);
	for (int k = 0; k < N_ELEMS; k++)
		x[k] = (float)(x[k] * nsched_init_noise_sigma(s));
	nsched_rng_init(&rng, 42);
	double md = 0;
	for (int i = 0; i < n; i++) {
		cr_assert_eq(nsched_scale_input(s, i, x, xin, N_ELEMS), 0);
		md = fmax(md, maxdiff_f(xin, r, N_ELEMS));
		r += N_ELEMS;
		nsched_rng_init(&mrng, 1000 + (uint64_t)i);
		nsched_rng_normal(&mrng, m, N_ELEMS);
		for (int k = 0; k < N_ELEMS; k++)
			m[k] = 0.3f * xin[k] + 0.7f * m[k];
		cr_assert_eq(nsched_step(s, i, m, x, N_ELEMS, &rng, x0), 0);
		md = fmax(md, maxdiff_f(x0, r, N_ELEMS));
		r += N_ELEMS;
		double mdx = maxdiff_f(x, r, N_ELEMS);
		cr_assert_lt(mdx, 1e-5, "%s step %d: latents differ by %.3g", nsched_kind_name(p->kind),
		             i, mdx);
		md = fmax(md, mdx);
		r += N_ELEMS;
	}
	cr_log_info("%s %s %s %s n=%d clip %g: max diff %.3g", nsched_kind_name(p->kind),
	            beta_names[p->beta], spacing_names[p->spacing], pred_names[p->pred], n,
	            p->clip_sample, md);
	cr_assert_lt(md, 1e-5, "max diff %.3g", md);

	int start = -1;
	cr_assert_eq(nsched_start_index(s, p->strength, &start), 0);
	cr_assert_eq(start, (int)*r++, "start index %d, reference %g", start, r[-1]);
	if (start < n) {
		nsched_rng_init(&rng, 7);
		nsched_rng_normal(&rng, x, N_ELEMS);
		nsched_rng_init(&rng, 8);
		nsched_rng_normal(&rng, noise, N_ELEMS);
		cr_assert_eq(nsched_add_noise(s, start, x, noise, x, N_ELEMS), 0);
		double mda = maxdiff_f(x, r, N_ELEMS);
		cr_assert_lt(mda, 1e-5, "add_noise differs by %.3g", mda);
	}
	r += N_ELEMS;
	nsched_rng_init(&rng, 12345);
	for (int k = 0; k < 8; k++) {
		double v = nsched_rng_normal1(&rng);
		cr_assert_lt(fabs(v - r[k]), 1e-12, "normal %d: %.17g, reference %.17g", k, v, r[k]);
	}
	nsched_free(s);
	free(ref);
}

Test(noise_sched, seeded_noise_is_reproducible_and_normal)
{
	enum { N = 200000 };
	float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
	struct nsched_rng r1, r2;
	nsched_rng_init(&r1, 7);
	nsched_rng_init(&r2, 7);
	nsched_rng_normal(&r1, a, N);
	nsched_rng_normal(&r2, b, 1000);            /* split draws give the same stream */
	nsched_rng_normal(&r2, b + 1000, N - 1000);
	cr_assert_eq(memcmp(a, b, N * sizeof *a), 0);
	double s = 0, s2 = 0;
	for (int i = 0; i < N; i++) {
		s += a[i];
		s2 += (double)a[i] * a[i];
	}
	cr_assert_lt(fabs(s / N), 0.01);
	cr_assert_lt(fabs(s2 / N - 1), 0.02);
	nsched_rng_init(&r2, 8);
	nsched_rng_normal(&r2, b, N);
	cr_assert_neq(memcmp(a, b, 64 * sizeof *a), 0);
	free(a);
	free(b);
}

Test(noise_sched, known_timesteps)
{
	struct nsched_config c;
	struct nsched *s = NULL;
	nsched_config_default(&c);
	cr_assert_eq(nsched_new(NSCHED_LCM, &c, 4, &s), 0);
	const double lcm4[] = { 999, 759, 499, 259 };
	for (int i = 0; i < 4; i++)
		cr_assert_eq(nsched_timesteps(s)[i], lcm4[i]);
	nsched_free(s);
	cr_assert_eq(nsched_new(NSCHED_DDIM, &c, 50, &s), 0);
	cr_assert_eq(nsched_timesteps(s)[0], 981);
	cr_assert_eq(nsched_timesteps(s)[49], 1);
	nsched_free(s);
	/* SD 1.5 Euler, 50 leading steps: init_noise_sigma = sqrt(sigma(981)^2 + 1) = 13.1585 */
	cr_assert_eq(nsched_new(NSCHED_EULER, &c, 50, &s), 0);
	cr_assert_float_eq(nsched_init_noise_sigma(s), 13.1585, 1e-3);
	nsched_free(s);
	/* trailing: the largest sigma, at t = 999: 14.6146 */
	c.spacing = NSCHED_SPACING_TRAILING;
	cr_assert_eq(nsched_new(NSCHED_EULER, &c, 50, &s), 0);
	cr_assert_eq(nsched_timesteps(s)[0], 999);
	cr_assert_float_eq(nsched_init_noise_sigma(s), 14.6146, 1e-3);
	nsched_free(s);
}

Test(noise_sched, bad_arguments_are_refused)
{
	struct nsched_config c;
	struct nsched *s = NULL;
	enum nsched_kind k;
	float x[4] = { 0 }, m[4] = { 0 };
	nsched_config_default(&c);
	cr_assert_eq(nsched_new(NSCHED_DDIM, &c, 0, &s), -EINVAL);
	cr_assert_eq(nsched_new(NSCHED_DDIM, &c, 1001, &s), -EINVAL);
	cr_assert_eq(nsched_new((enum nsched_kind)9, &c, 10, &s), -EINVAL);
	cr_assert_eq(nsched_new(NSCHED_LCM, &c, 51, &s), -EINVAL);
	c.beta_end = 2;
	cr_assert_eq(nsched_new(NSCHED_EULER, &c, 10, &s), -EINVAL);
	cr_assert_null(s);
	nsched_config_default(&c);
	cr_assert_eq(nsched_kind_from_name("euler_ancestral", &k), 0);
	cr_assert_eq(k, NSCHED_EULER_A);
	cr_assert_eq(nsched_kind_from_name("pndm", &k), -EINVAL);
	cr_assert_eq(nsched_kind_from_name(NULL, &k), -EINVAL);

	cr_assert_eq(nsched_new(NSCHED_EULER_A, &c, 4, &s), 0);
	cr_assert_eq(nsched_step(s, 0, m, x, 4, NULL, NULL), -EINVAL); /* needs an rng */
	cr_assert_eq(nsched_step(s, 4, m, x, 4, NULL, NULL), -EINVAL);
	cr_assert_eq(nsched_scale_input(s, -1, x, x, 4), -EINVAL);
	int start;
	cr_assert_eq(nsched_start_index(s, 1.5, &start), -EINVAL);
	cr_assert_eq(nsched_start_index(s, NAN, &start), -EINVAL);
	cr_assert_eq(nsched_start_index(s, 0.0, &start), 0);
	cr_assert_eq(start, 4);
	nsched_free(s);
	nsched_free(NULL);

	cr_assert_eq(nsched_new(NSCHED_DPMPP_2M, &c, 4, &s), 0);
	cr_assert_eq(nsched_step(s, 0, m, x, 4, NULL, NULL), 0);
	cr_assert_eq(nsched_step(s, 1, m, x, 3, NULL, NULL), -EINVAL); /* size changed mid-run */
	nsched_free(s);
}
