/* Image files of the diffusion path: PNG in and out (libspng), JPEG in (libjpeg-turbo), and
 * the conversions between 8-bit pixels and the models' float tensors.
 *
 * Pixels are 8-bit RGB, rows top to bottom, no padding (width * 3 bytes a row). Decoding
 * accepts every PNG colour type and bit depth (grey, palette; an alpha channel is dropped, as
 * PIL's convert("RGB") does for diffusers' pipelines; 16-bit samples keep their high byte) and baseline/progressive JPEG (greyscale,
 * YCbCr, CMYK converted to RGB); anything else, a truncated or corrupt file, or a size over
 * the limit is an error with a reason, never a crash.
 *
 * Conventions: 0 or a negative errno code (-EINVAL arguments, -EBADMSG bad file, -E2BIG over
 * the size limit, -ENOTSUP a format not handled, -ENOMEM); err (may be NULL) gets a reason.
 */
#ifndef INFERD_ENGINE_DIFFUSION_IMAGE_IO_H
#define INFERD_ENGINE_DIFFUSION_IMAGE_IO_H

#include <stddef.h>
#include <stdint.h>

struct image_rgb8 {
	uint8_t *pixels;   /* width * height * 3 bytes, owned (free with image_rgb8_free()) */
	int width, height;
};

void image_rgb8_free(struct image_rgb8 *img); /* frees pixels, zeroes the struct; accepts NULL */

/* Largest width * height image_decode() accepts (about 64 megapixels). */
#define IMAGE_MAX_PIXELS (64ll << 20)

/* Decodes a PNG or JPEG file held in memory (told apart by its signature) into out. */
int image_decode(const void *data, size_t len, struct image_rgb8 *out, char *err, size_t errlen);

/* Encodes img as an 8-bit RGB PNG; *png is malloc'd (free() it), *png_len its size.
 * text: optional tEXt entries (key, value pairs, NULL-terminated list of 2n strings, or NULL),
 * e.g. "parameters" with the prompt and seed, as image tools show them. */
int image_encode_png(const struct image_rgb8 *img, const char *const *text, void **png,
                     size_t *png_len, char *err, size_t errlen);

/* Tensor (3, h, w) floats in [-1, 1] (values outside are clamped) -> pixels:
 * round((x + 1) * 127.5). out->pixels is allocated. */
int image_from_chw(const float *chw, int width, int height, struct image_rgb8 *out);

/* Pixels -> tensor (3, h, w): x = p / 127.5 - 1. chw has room for 3 * width * height. */
int image_to_chw(const struct image_rgb8 *img, float *chw);

/* Resizes img to width x height (bilinear over 8-bit samples, with area averaging when
 * shrinking by more than 2x), into out (allocated). Used for init images whose size is not
 * the requested one. */
int image_resize(const struct image_rgb8 *img, int width, int height, struct image_rgb8 *out);

#endif
