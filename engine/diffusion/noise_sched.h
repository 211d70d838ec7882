/* Noise schedulers of the diffusion sampler (diffusers' formulas, own code): DDIM (eta 0),
 * Euler, Euler ancestral, DPM-Solver++ 2M and LCM, plus the seeded Gaussian noise generator.
 *
 * Use, per request (a scheduler holds per-request state: DPM-Solver++'s history):
 *
 *   struct nsched_config c; nsched_config_default(&c);     // SD 1.5's scheduler_config.json
 *   nsched_new(NSCHED_EULER, &c, n_steps, &s);
 *   latents = normal(rng) * nsched_init_noise_sigma(s);    // txt2img
 *   for (i = nsched_start_index(...) or 0; i < nsched_n_steps(s); i++) {
 *       nsched_scale_input(s, i, latents, unet_in, n);     // UNet input at timestep t[i]
 *       eps = unet(unet_in, nsched_timesteps(s)[i], text) (with guidance)
 *       nsched_step(s, i, eps, latents, n, &rng);          // latents -> next step's latents
 *   }
 *
 * Schedule: betas (linear, scaled_linear, squaredcos_cap_v2), alphas_cumprod = cumprod(1 -
 * beta); sigma(t) = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t]). Timestep spacing:
 *   leading   t_i = (n-1-i) * (T / n) + steps_offset         (T / n integer division)
 *   trailing  t_i = round(T - i * T / n) - 1                  (exactly n steps)
 *   linspace  t_i = linspace(0, T-1, n) reversed (rounded except for Euler's, which keep the
 *             fraction and interpolate sigma linearly between integer timesteps)
 * DPM-Solver++ spaces n + 1 points and drops the last (leading: T / (n+1)), as diffusers.
 * Everything is computed in double (diffusers rounds its tables to float32: differences are
 * of order 1e-7 relative). Not implemented: thresholding, Karras sigmas,
 * Euler's s_churn, DPM-Solver's other orders and algorithm types.
 *
 * Latents are n floats (any batch and layout: every element is independent), updated in
 * place. Conventions: 0 or a negative errno code (-EINVAL for bad arguments).
 */
#ifndef INFERD_ENGINE_NOISE_SCHED_H
#define INFERD_ENGINE_NOISE_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- seeded noise -------------------------------------------------------------------------
 * splitmix64 (state += 0x9e3779b97f4a7c15, then Stafford's mix 13) gives 64-bit words; a
 * uniform is ((word >> 11) + 0.5) * 2^-53 in (0, 1); Box-Muller turns two uniforms u1, u2
 * into r cos(2 pi u2) then r sin(2 pi u2), r = sqrt(-2 ln u1), the second kept for the next
 * draw. The same seed gives the same numbers on every machine with the same libm
 * (tests/reference/noise_sched_ref.py implements it too). One generator per request (or per
 * image, seeded seed + k, for a batch of images). */
struct nsched_rng {
	uint64_t state;
	double spare;
	bool has_spare;
};

void nsched_rng_init(struct nsched_rng *r, uint64_t seed);
uint64_t nsched_rng_u64(struct nsched_rng *r);
double nsched_rng_normal1(struct nsched_rng *r);
/* out[0..n) = standard normal draws, as float. */
void nsched_rng_normal(struct nsched_rng *r, float *out, size_t n);

/* ---- configuration ------------------------------------------------------------------------ */

enum nsched_kind {
	NSCHED_DDIM = 0,
	NSCHED_EULER = 1,
	NSCHED_EULER_A = 2,   /* Euler ancestral: needs an rng */
	NSCHED_DPMPP_2M = 3,  /* DPM-Solver++ 2M, midpoint, lower order final */
	NSCHED_LCM = 4,       /* latent consistency: needs an rng (all steps but the last) */
};

enum nsched_beta {
	NSCHED_BETA_LINEAR = 0,
	NSCHED_BETA_SCALED_LINEAR = 1, /* linspace(sqrt(start), sqrt(end))^2: SD */
	NSCHED_BETA_SQUAREDCOS = 2,    /* squaredcos_cap_v2 (max beta 0.999) */
};

enum nsched_spacing {
	NSCHED_SPACING_LEADING = 0,
	NSCHED_SPACING_TRAILING = 1,
	NSCHED_SPACING_LINSPACE = 2,
};

enum nsched_pred {
	NSCHED_PRED_EPSILON = 0,
	NSCHED_PRED_V = 1,             /* v_prediction (SD 2.x 768) */
};

struct nsched_config {
	int num_train_timesteps;       /* T, 1000 */
	double beta_start, beta_end;   /* 0.00085, 0.012 */
	enum nsched_beta beta_schedule;
	enum nsched_spacing spacing;
	int steps_offset;              /* added to leading timesteps (1 in SD configs) */
	enum nsched_pred prediction;
	bool set_alpha_to_one;         /* DDIM/LCM: alphas_cumprod before t=0 is 1, else [0] */
	bool clip_sample;              /* DDIM/LCM: clamp predicted x0 to +-clip_sample_range */
	double clip_sample_range;      /* 1 */
	int original_inference_steps;  /* LCM: 50 */
	double timestep_scaling;       /* LCM: 10 */
};

/* SD 1.5's values: T 1000, scaled_linear 0.00085..0.012, leading, offset 1, epsilon,
 * set_alpha_to_one false, clip_sample false (range 1), LCM 50 / 10. */
void nsched_config_default(struct nsched_config *c);

/* Names as in diffusers' scheduler_config.json and the protocol. @return 0 or -EINVAL. */
int nsched_kind_from_name(const char *name, enum nsched_kind *out); /* ddim, euler, euler_a
                                     (euler_ancestral), dpmpp_2m (dpm++2m, dpmsolver++), lcm */
const char *nsched_kind_name(enum nsched_kind k);
int nsched_beta_from_name(const char *name, enum nsched_beta *out);
int nsched_spacing_from_name(const char *name, enum nsched_spacing *out);
int nsched_pred_from_name(const char *name, enum nsched_pred *out);

/* ---- scheduler ---------------------------------------------------------------------------- */

struct nsched; /* opaque */

/* @return 0 and *out (free with nsched_free()), -EINVAL (bad config, n_steps < 1 or > T,
 * LCM n_steps > original_inference_steps), -ENOMEM. */
int nsched_new(enum nsched_kind kind, const struct nsched_config *c, int n_steps,
               struct nsched **out);
void nsched_free(struct nsched *s); /* accepts NULL */

enum nsched_kind nsched_get_kind(const struct nsched *s);
int nsched_n_steps(const struct nsched *s);
/* (n_steps) the UNet's timestep at step i (fractional only for Euler with linspace). */
const double *nsched_timesteps(const struct nsched *s);
/* (n_steps + 1) sigma at each step's timestep, then 0. */
const double *nsched_sigmas(const struct nsched *s);
/* Standard deviation of the initial noise: 1, or for Euler (ancestral) the largest sigma
 * (trailing, linspace) or sqrt(sigma_max^2 + 1) (leading). */
double nsched_init_noise_sigma(const struct nsched *s);

/* out = the UNet input for latents x at step i (Euler: x / sqrt(sigma_i^2 + 1), else x);
 * out may equal x. */
int nsched_scale_input(const struct nsched *s, int i, const float *x, float *out, size_t n);

/* One denoising step: latents (n) at step i become the latents of step i + 1, given the
 * model's output (n, epsilon or v by the config's prediction). Steps of one scheduler run in
 * order; DPM-Solver++ restarts its history when i is not the previous step + 1.
 * rng: needed by Euler ancestral and LCM, else may be NULL. x0 (may be NULL): the predicted
 * clean latents (n) for previews. @return 0, -EINVAL (i out of range, NULL rng where needed, n
 * changed within a DPM-Solver++ run), -ENOMEM. */
int nsched_step(struct nsched *s, int i, const float *model_out, float *latents, size_t n,
                struct nsched_rng *rng, float *x0);

/* Image-to-image: the first step for a strength in [0, 1] (diffusers: n - min(int(n *
 * strength), n)); n_steps when the strength is too small for one step. @return 0 or -EINVAL. */
int nsched_start_index(const struct nsched *s, double strength, int *start);
/* out = clean latents x0 noised to step i's level (Euler: x0 + sigma_i noise; others:
 * sqrt(a) x0 + sqrt(1 - a) noise, a = alphas_cumprod[t_i]); out may equal x0. */
int nsched_add_noise(const struct nsched *s, int i, const float *x0, const float *noise,
                     float *out, size_t n);

#endif
