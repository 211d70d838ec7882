/* Noise schedulers: model-input scaling, the solver steps and img2img noising.
 * Formulas as diffusers' DDIMScheduler, EulerDiscreteScheduler,
 * EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler (dpmsolver++, order 2,
 * midpoint, lower_order_final, final sigma 0) and LCMScheduler. Per element in double. */
#include "noise_sched-internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

static double acp_at(const struct nsched *s, double t)
{
	return t >= 0 ? s->acp[(int)t] : s->final_acp;
}

int nsched_scale_input(const struct nsched *s, int i, const float *x, float *out, size_t n)
{
	if (s == NULL || i < 0 || i >= s->n || (n > 0 && (x == NULL || out == NULL)))
		return -EINVAL;
	double f = 1.0;
	if (s->kind == NSCHED_EULER || s->kind == NSCHED_EULER_A)
		f = 1.0 / sqrt(s->sigma[i] * s->sigma[i] + 1);
	for (size_t k = 0; k < n; k++)
		out[k] = (float)(x[k] * f);
	return 0;
}

/* x0 from an epsilon / v output given sqrt(alpha_bar) a and sqrt(1 - alpha_bar) b. */
static double pred_x0(enum nsched_pred p, double a, double b, double x, double m)
{
	return p == NSCHED_PRED_V ? a * x - b * m : (x - b * m) / a;
}

/* DDIM/LCM's clip_sample on a predicted x0. */
static double clip_x0(const struct nsched *s, double x0)
{
	double r = s->cfg.clip_sample_range;
	if (!s->cfg.clip_sample)
		return x0;
	return x0 < -r ? -r : x0 > r ? r : x0;
}

static int step_ddim(const struct nsched *s, int i, const float *m, float *x, size_t n,
                     float *x0)
{
	const int T = s->cfg.num_train_timesteps;
	const double t = s->t[i], prev = t - T / s->n;
	const double at = acp_at(s, t), ap = acp_at(s, prev);
	const double a = sqrt(at), b = sqrt(1 - at), pa = sqrt(ap), pb = sqrt(1 - ap);
	for (size_t k = 0; k < n; k++) {
		double xo = clip_x0(s, pred_x0(s->cfg.prediction, a, b, x[k], m[k]));
		double eps = s->cfg.prediction == NSCHED_PRED_V ? a * m[k] + b * x[k] : m[k];
		if (x0 != NULL)
			x0[k] = (float)xo;
		x[k] = (float)(pa * xo + pb * eps);
	}
	return 0;
}

static int step_euler(const struct nsched *s, int i, const float *m, float *x, size_t n,
                      struct nsched_rng *rng, float *x0)
{
	const double sg = s->sigma[i], nx = s->sigma[i + 1];
	const bool anc = s->kind == NSCHED_EULER_A;
	double up = 0, down = nx;
	if (anc) {
		if (rng == NULL)
			return -EINVAL;
		up = sqrt(nx * nx * (sg * sg - nx * nx) / (sg * sg));
		down = sqrt(nx * nx - up * up);
	}
	const double dt = down - sg;
	for (size_t k = 0; k < n; k++) {
		double xo = s->cfg.prediction == NSCHED_PRED_V
		            ? m[k] * (-sg / sqrt(sg * sg + 1)) + x[k] / (sg * sg + 1)
		            : x[k] - sg * m[k];
		if (x0 != NULL)
			x0[k] = (float)xo;
		double v = x[k] + (x[k] - xo) / sg * dt;
		if (anc)
			v += nsched_rng_normal1(rng) * up;
		x[k] = (float)v;
	}
	return 0;
}

/* alpha_t, sigma_t of a sigma: 1 / sqrt(sigma^2 + 1), sigma * alpha_t. */
static void alpha_sigma(double sg, double *a, double *b)
{
	*a = 1 / sqrt(sg * sg + 1);
	*b = sg * *a;
}

static int step_dpm(struct nsched *s, int i, const float *m, float *x, size_t n, float *x0)
{
	if (s->prev_x0 == NULL || s->hist_n != n) {
		if (s->prev_x0 != NULL && s->last_i >= 0 && i == s->last_i + 1)
			return -EINVAL; /* n changed within a run */
		free(s->prev_x0);
		s->prev_x0 = malloc((n ? n : 1) * sizeof *s->prev_x0);
		if (s->prev_x0 == NULL)
			return -ENOMEM;
		s->hist_n = n;
		s->last_i = -1;
	}
	if (s->last_i < 0 || i != s->last_i + 1)
		s->lower_order_nums = 0;
	const bool last = i == s->n - 1; /* lower_order_final with a final sigma of 0 */
	const bool first_order = s->lower_order_nums < 1 || last;
	double a_s0, b_s0, a_t, b_t, a_s1, b_s1;
	alpha_sigma(s->sigma[i], &a_s0, &b_s0);
	alpha_sigma(s->sigma[i + 1], &a_t, &b_t);
	alpha_sigma(i > 0 ? s->sigma[i - 1] : 1, &a_s1, &b_s1);
	const double l_s0 = log(a_s0) - log(b_s0), l_s1 = log(a_s1) - log(b_s1);
	/* sigma_t = 0 at the end: lambda_t = inf, exp(-h) = 0, the update is x0 itself */
	const double em = b_t > 0 ? exp(-((log(a_t) - log(b_t)) - l_s0)) - 1 : -1;
	const double h = b_t > 0 ? (log(a_t) - log(b_t)) - l_s0 : INFINITY;
	const double r0 = first_order ? 1 : (l_s0 - l_s1) / h;
	const double ratio = b_t / b_s0;
	for (size_t k = 0; k < n; k++) {
		double xo = pred_x0(s->cfg.prediction, a_s0, b_s0, x[k], m[k]);
		double v = ratio * x[k] - a_t * em * xo;
		if (!first_order) {
			double d1 = (xo - s->prev_x0[k]) / r0;
			v -= 0.5 * a_t * em * d1;
		}
		if (x0 != NULL)
			x0[k] = (float)xo;
		s->prev_x0[k] = (float)xo;
		x[k] = (float)v;
	}
	if (s->lower_order_nums < 2)
		s->lower_order_nums++;
	s->last_i = i;
	return 0;
}

static int step_lcm(const struct nsched *s, int i, const float *m, float *x, size_t n,
                    struct nsched_rng *rng, float *x0)
{
	const bool last = i == s->n - 1;
	if (!last && rng == NULL)
		return -EINVAL;
	const double t = s->t[i], prev = last ? t : s->t[i + 1];
	const double at = acp_at(s, t), ap = acp_at(s, prev);
	const double a = sqrt(at), b = sqrt(1 - at), pa = sqrt(ap), pb = sqrt(1 - ap);
	const double st = t * s->cfg.timestep_scaling, sd2 = 0.25; /* sigma_data 0.5 */
	const double c_skip = sd2 / (st * st + sd2), c_out = st / sqrt(st * st + sd2);
	for (size_t k = 0; k < n; k++) {
		double den = c_out * clip_x0(s, pred_x0(s->cfg.prediction, a, b, x[k], m[k])) +
		             c_skip * x[k];
		if (x0 != NULL)
			x0[k] = (float)den;
		x[k] = (float)(last ? den : pa * den + pb * nsched_rng_normal1(rng));
	}
	return 0;
}

int nsched_step(struct nsched *s, int i, const float *model_out, float *latents, size_t n,
                struct nsched_rng *rng, float *x0)
{
	if (s == NULL || i < 0 || i >= s->n || (n > 0 && (model_out == NULL || latents == NULL)))
		return -EINVAL;
	switch (s->kind) {
	case NSCHED_DDIM:
		return step_ddim(s, i, model_out, latents, n, x0);
	case NSCHED_EULER:
	case NSCHED_EULER_A:
		return step_euler(s, i, model_out, latents, n, rng, x0);
	case NSCHED_DPMPP_2M:
		return step_dpm(s, i, model_out, latents, n, x0);
	case NSCHED_LCM:
		return step_lcm(s, i, model_out, latents, n, rng, x0);
	}
	return -EINVAL;
}

int nsched_start_index(const struct nsched *s, double strength, int *start)
{
	if (s == NULL || start == NULL || !(strength >= 0 && strength <= 1))
		return -EINVAL;
	int init = (int)(s->n * strength);
	init = init < s->n ? init : s->n;
	*start = s->n - init;
	return 0;
}

int nsched_add_noise(const struct nsched *s, int i, const float *x0, const float *noise,
                     float *out, size_t n)
{
	if (s == NULL || i < 0 || i >= s->n || (n > 0 && (x0 == NULL || noise == NULL || out == NULL)))
		return -EINVAL;
	double a, b;
	if (s->kind == NSCHED_EULER || s->kind == NSCHED_EULER_A) {
		a = 1;
		b = s->sigma[i];
	} else {
		double ac = s->acp[(int)s->t[i]];
		a = sqrt(ac);
		b = sqrt(1 - ac);
	}
	for (size_t k = 0; k < n; k++)
		out[k] = (float)(a * x0[k] + b * noise[k]);
	return 0;
}
