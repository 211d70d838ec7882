/* Pieces of image_io shared between its files (image_io.c, image_io_png.c, image_io_jpeg.c,
 * image_io_pixels.c); not part of the engine's public interface. */
#ifndef INFERD_ENGINE_DIFFUSION_IMAGE_IO_INTERNAL_H
#define INFERD_ENGINE_DIFFUSION_IMAGE_IO_INTERNAL_H

#include <stddef.h>

#include "image_io.h"

/* Writes a formatted reason into err (when err is not NULL) and @return code. */
int image_fail(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Checks a decoded size against max_pixels. @return 0, -EBADMSG (a zero side) or -E2BIG. */
int image_check_size(long long width, long long height, long long max_pixels, char *err,
                     size_t errlen);

/* Decoders behind image_decode_limited(): same contract, the format already recognised. */
int image_decode_png(const void *data, size_t len, long long max_pixels, struct image_rgb8 *out,
                     char *err, size_t errlen);
int image_decode_jpeg(const void *data, size_t len, long long max_pixels,
                      struct image_rgb8 *out, char *err, size_t errlen);

#endif
