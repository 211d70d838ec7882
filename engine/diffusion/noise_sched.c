/* Noise schedulers: the seeded noise generator, names, beta schedules and timesteps.
 * The solvers are in noise_sched_step.c. See noise_sched.h. */
#include "noise_sched-internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- seeded noise ------------------------------------------------------------------------ */

void nsched_rng_init(struct nsched_rng *r, uint64_t seed)
{
	r->state = seed;
	r->spare = 0;
	r->has_spare = false;
}

uint64_t nsched_rng_u64(struct nsched_rng *r)
{
	uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double nsched_rng_normal1(struct nsched_rng *r)
{
	if (r->has_spare) {
		r->has_spare = false;
		return r->spare;
	}
	double u1 = ((double)(nsched_rng_u64(r) >> 11) + 0.5) * 0x1p-53;
	double u2 = ((double)(nsched_rng_u64(r) >> 11) + 0.5) * 0x1p-53;
	double rad = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
	r->spare = rad * sin(a);
	r->has_spare = true;
	return rad * cos(a);
}

void nsched_rng_normal(struct nsched_rng *r, float *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (float)nsched_rng_normal1(r);
}

/* ---- names ------------------------------------------------------------------------------- */

struct name_val {
	const char *name;
	int val;
};

static int lookup(const struct name_val *t, const char *name, int *out)
{
	if (name == NULL)
		return -EINVAL;
	for (; t->name != NULL; t++)
		if (strcmp(t->name, name) == 0) {
			*out = t->val;
			return 0;
		}
	return -EINVAL;
}

static const struct name_val kinds[] = {
	{ "ddim", NSCHED_DDIM }, { "euler", NSCHED_EULER }, { "euler_a", NSCHED_EULER_A },
	{ "euler_ancestral", NSCHED_EULER_A }, { "dpmpp_2m", NSCHED_DPMPP_2M },
	{ "dpm++2m", NSCHED_DPMPP_2M }, { "dpmsolver++", NSCHED_DPMPP_2M }, { "lcm", NSCHED_LCM },
	{ NULL, 0 },
};

int nsched_kind_from_name(const char *name, enum nsched_kind *out)
{
	int v, rc = lookup(kinds, name, &v);
	if (rc == 0)
		*out = (enum nsched_kind)v;
	return rc;
}

const char *nsched_kind_name(enum nsched_kind k)
{
	static const char *const names[] = { "ddim", "euler", "euler_a", "dpmpp_2m", "lcm" };
	return (unsigned)k < 5 ? names[k] : "?";
}

int nsched_beta_from_name(const char *name, enum nsched_beta *out)
{
	static const struct name_val t[] = {
		{ "linear", NSCHED_BETA_LINEAR }, { "scaled_linear", NSCHED_BETA_SCALED_LINEAR },
		{ "squaredcos_cap_v2", NSCHED_BETA_SQUAREDCOS }, { NULL, 0 },
	};
	int v, rc = lookup(t, name, &v);
	if (rc == 0)
		*out = (enum nsched_beta)v;
	return rc;
}

int nsched_spacing_from_name(const char *name, enum nsched_spacing *out)
{
	static const struct name_val t[] = {
		{ "leading", NSCHED_SPACING_LEADING }, { "trailing", NSCHED_SPACING_TRAILING },
		{ "linspace", NSCHED_SPACING_LINSPACE }, { NULL, 0 },
	};
	int v, rc = lookup(t, name, &v);
	if (rc == 0)
		*out = (enum nsched_spacing)v;
	return rc;
}

int nsched_pred_from_name(const char *name, enum nsched_pred *out)
{
	static const struct name_val t[] = {
		{ "epsilon", NSCHED_PRED_EPSILON }, { "v_prediction", NSCHED_PRED_V }, { NULL, 0 },
	};
	int v, rc = lookup(t, name, &v);
	if (rc == 0)
		*out = (enum nsched_pred)v;
	return rc;
}

void nsched_config_default(struct nsched_config *c)
{
	*c = (struct nsched_config){
		.num_train_timesteps = 1000,
		.beta_start = 0.00085,
		.beta_end = 0.012,
		.beta_schedule = NSCHED_BETA_SCALED_LINEAR,
		.spacing = NSCHED_SPACING_LEADING,
		.steps_offset = 1,
		.prediction = NSCHED_PRED_EPSILON,
		.set_alpha_to_one = false,
		.clip_sample = false,
		.clip_sample_range = 1.0,
		.original_inference_steps = 50,
		.timestep_scaling = 10.0,
	};
}

/* ---- tables ------------------------------------------------------------------------------- */

static double alpha_bar(double t)
{
	double c = cos((t + 0.008) / 1.008 * M_PI / 2);
	return c * c;
}

static void make_acp(const struct nsched_config *c, double *acp)
{
	const int T = c->num_train_timesteps;
	double prod = 1.0;
	for (int i = 0; i < T; i++) {
		double f = T > 1 ? (double)i / (T - 1) : 0, beta;
		switch (c->beta_schedule) {
		case NSCHED_BETA_LINEAR:
			beta = c->beta_start + f * (c->beta_end - c->beta_start);
			break;
		case NSCHED_BETA_SCALED_LINEAR: {
			double s = sqrt(c->beta_start) + f * (sqrt(c->beta_end) - sqrt(c->beta_start));
			beta = s * s;
			break;
		}
		default:
			beta = 1 - alpha_bar((double)(i + 1) / T) / alpha_bar((double)i / T);
			beta = beta < 0.999 ? beta : 0.999;
			break;
		}
		prod *= 1 - beta;
		acp[i] = prod;
	}
}

double nsched_sigma_at(const struct nsched *s, double t)
{
	const int T = s->cfg.num_train_timesteps;
	t = t < 0 ? 0 : t > T - 1 ? T - 1 : t;
	int lo = (int)floor(t);
	int hi = lo + 1 < T ? lo + 1 : lo;
	double sl = sqrt((1 - s->acp[lo]) / s->acp[lo]), sh = sqrt((1 - s->acp[hi]) / s->acp[hi]);
	return sl + (t - lo) * (sh - sl);
}

/* n timesteps of a spacing over T (DPM-Solver++ passes n + 1 points for leading/linspace and
 * keeps the first n). round: numpy's round half to even (nearbyint). */
static void spacing(const struct nsched_config *c, int n_pts, int n, bool keep_fraction,
                    double *t)
{
	const int T = c->num_train_timesteps;
	if (c->spacing == NSCHED_SPACING_LEADING) {
		int ratio = T / n_pts;
		for (int i = 0; i < n; i++)
			t[i] = (double)(n_pts - 1 - i) * ratio + c->steps_offset;
	} else if (c->spacing == NSCHED_SPACING_TRAILING) {
		/* numpy's arange(T, 0, -T/n): T + k * ((T - T/n) - T) */
		double step = (double)T / n, delta = ((double)T - step) - (double)T;
		for (int i = 0; i < n; i++)
			t[i] = nearbyint((double)T + i * delta) - 1;
	} else {
		/* linspace(0, T-1, n_pts) reversed: numpy computes k * step + 0, the last point T-1 */
		double step = n_pts > 1 ? (double)(T - 1) / (n_pts - 1) : 0;
		for (int i = 0; i < n; i++) {
			int k = n_pts - 1 - i;
			double v = k == n_pts - 1 && n_pts > 1 ? (double)(T - 1) : k * step;
			t[i] = keep_fraction ? v : nearbyint(v);
		}
	}
}

static int lcm_timesteps(const struct nsched_config *c, int n, double *t)
{
	const int orig = c->original_inference_steps, k = c->num_train_timesteps / orig;
	if (orig < 1 || k < 1 || orig / n < 1)
		return -EINVAL;
	/* origin = (1..orig) * k - 1, reversed; pick floor(linspace(0, orig, n, no endpoint)) */
	for (int i = 0; i < n; i++) {
		int idx = (int)floor((double)i * ((double)orig / n));
		t[i] = (double)(orig - idx) * k - 1;
	}
	return 0;
}

int nsched_new(enum nsched_kind kind, const struct nsched_config *c, int n_steps,
               struct nsched **out)
{
	if (c == NULL || out == NULL)
		return -EINVAL;
	*out = NULL;
	const int T = c->num_train_timesteps;
	if ((unsigned)kind > NSCHED_LCM || T < 2 || T > 100000 || n_steps < 1 || n_steps > T ||
	    (unsigned)c->beta_schedule > NSCHED_BETA_SQUAREDCOS ||
	    (unsigned)c->spacing > NSCHED_SPACING_LINSPACE ||
	    (unsigned)c->prediction > NSCHED_PRED_V || c->steps_offset < 0 ||
	    c->steps_offset >= T || !(c->beta_start > 0) || !(c->beta_end >= c->beta_start) ||
	    !(c->beta_end < 1) || !(c->timestep_scaling > 0) ||
	    (c->clip_sample && !(c->clip_sample_range > 0)))
		return -EINVAL;
	struct nsched *s = calloc(1, sizeof *s);
	int rc = -ENOMEM;
	if (s == NULL)
		return -ENOMEM;
	s->kind = kind;
	s->cfg = *c;
	s->n = n_steps;
	s->last_i = -1;
	s->acp = malloc((size_t)T * sizeof *s->acp);
	s->t = malloc((size_t)n_steps * sizeof *s->t);
	s->sigma = malloc(((size_t)n_steps + 1) * sizeof *s->sigma);
	if (s->acp == NULL || s->t == NULL || s->sigma == NULL)
		goto fail;
	make_acp(c, s->acp);
	s->final_acp = c->set_alpha_to_one ? 1.0 : s->acp[0];

	rc = -EINVAL;
	if (kind == NSCHED_LCM) {
		if (lcm_timesteps(c, n_steps, s->t) != 0)
			goto fail;
	} else if (kind == NSCHED_DPMPP_2M && c->spacing != NSCHED_SPACING_TRAILING) {
		if (c->spacing == NSCHED_SPACING_LEADING && T / (n_steps + 1) < 1)
			goto fail;
		spacing(c, n_steps + 1, n_steps, false, s->t);
	} else {
		spacing(c, n_steps, n_steps, kind == NSCHED_EULER || kind == NSCHED_EULER_A, s->t);
	}
	for (int i = 0; i < n_steps; i++) {
		if (s->t[i] < 0 || s->t[i] > T - 1)
			goto fail; /* e.g. leading with a large steps_offset */
		s->sigma[i] = nsched_sigma_at(s, s->t[i]);
	}
	s->sigma[n_steps] = 0;

	s->init_sigma = 1.0;
	if (kind == NSCHED_EULER || kind == NSCHED_EULER_A) {
		double mx = 0;
		for (int i = 0; i < n_steps; i++)
			mx = s->sigma[i] > mx ? s->sigma[i] : mx;
		s->init_sigma = c->spacing == NSCHED_SPACING_LEADING ? sqrt(mx * mx + 1) : mx;
	}
	*out = s;
	return 0;
fail:
	nsched_free(s);
	return rc;
}

void nsched_free(struct nsched *s)
{
	if (s == NULL)
		return;
	free(s->acp);
	free(s->t);
	free(s->sigma);
	free(s->prev_x0);
	free(s);
}

enum nsched_kind nsched_get_kind(const struct nsched *s) { return s->kind; }
int nsched_n_steps(const struct nsched *s) { return s ? s->n : 0; }
const double *nsched_timesteps(const struct nsched *s) { return s ? s->t : NULL; }
const double *nsched_sigmas(const struct nsched *s) { return s ? s->sigma : NULL; }
double nsched_init_noise_sigma(const struct nsched *s) { return s ? s->init_sigma : 1.0; }
