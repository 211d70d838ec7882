/* Helpers of the diffusion-operator tests: a seeded generator and a tolerance check that
 * reports the worst element. */
#ifndef INFERD_TESTS_DIFFOPS_UTIL_H
#define INFERD_TESTS_DIFFOPS_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct du_rng {
	uint64_t s;
};

static inline float du_uniform(struct du_rng *r) /* [-1, 1) */
{
	r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((double)(r->s >> 40) / (double)(1ULL << 23) - 1.0);
}

static inline void du_fill(struct du_rng *r, float *x, int64_t n, float scale, float offset)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = du_uniform(r) * scale + offset;
}

static inline float *du_alloc(int64_t n)
{
	return calloc((size_t)(n > 0 ? n : 1), sizeof(float));
}

/* 1 when |got - want| <= atol + rtol |want| everywhere; else prints the worst and gives 0. */
static inline int du_close(const char *what, const float *got, const double *want, int64_t n,
                           double atol, double rtol)
{
	int64_t worst = -1;
	double wexcess = 0.0;
	for (int64_t i = 0; i < n; i++) {
		double e = fabs((double)got[i] - want[i]) - (atol + rtol * fabs(want[i]));
		if (!(e <= 0.0) && (worst < 0 || !(e <= wexcess))) {
			worst = i;
			wexcess = e;
		}
	}
	if (worst >= 0)
		fprintf(stderr, "%s: element %lld got %.8g want %.8g\n", what, (long long)worst,
		        (double)got[worst], want[worst]);
	return worst < 0;
}

#endif
