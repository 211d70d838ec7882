/* Helpers shared by the diffusion loaders (CLIP, VAE, the pipeline checks): error messages. */
#ifndef INFERD_ENGINE_DIFFUSION_DIFF_INTERNAL_H
#define INFERD_ENGINE_DIFFUSION_DIFF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Formats into err (nothing when err is NULL or errlen 0). */
void diff_set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* "[d0, d1, ...]" of a shape of nd dims into buf. */
void diff_format_shape(char *buf, size_t len, uint32_t nd, const int64_t *shape);

#endif
