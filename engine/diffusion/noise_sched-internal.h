/* Shared by noise_sched.c (tables, timesteps) and noise_sched_step.c (the solvers). */
#ifndef INFERD_ENGINE_NOISE_SCHED_INTERNAL_H
#define INFERD_ENGINE_NOISE_SCHED_INTERNAL_H

#include "noise_sched.h"

struct nsched {
	enum nsched_kind kind;
	struct nsched_config cfg;
	int n;                    /* inference steps */
	double *acp;              /* (T) alphas_cumprod */
	double final_acp;         /* alphas_cumprod "before" t = 0 (DDIM, LCM) */
	double *t;                /* (n) timesteps */
	double *sigma;            /* (n + 1) */
	double init_sigma;
	/* DPM-Solver++ history */
	float *prev_x0;           /* (hist_n) x0 prediction of the previous step */
	size_t hist_n;
	int last_i;               /* last step run, -1 none */
	int lower_order_nums;
};

/* alphas_cumprod interpolated at a (possibly fractional) timestep, via sigma as diffusers. */
double nsched_sigma_at(const struct nsched *s, double t);

#endif
