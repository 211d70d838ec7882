/* Image files of the diffusion path: PNG in and out (libspng), JPEG in (libjpeg-turbo), and
 * the conversions between 8-bit pixels and the models' float tensors.
 *
 * Pixels are 8-bit RGB, rows top to bottom, no padding (width * 3 bytes a row). Decoding
 * accepts every PNG colour type and bit depth, interlaced or not (grey, palette; an alpha
 * channel or tRNS transparency is dropped, as PIL's convert("RGB") does for diffusers'
 * pipelines; 16-bit samples keep their high byte; no gamma or colour-profile conversion) and
 * baseline/progressive JPEG (greyscale, YCbCr, CMYK/YCCK converted to RGB as
 * R = (255 - C)(255 - K) / 255; EXIF orientation is not applied). Anything else, a truncated
 * or corrupt file, or a size over the limit is an error with a reason, never a crash; the
 * size is checked from the header before any pixel memory is allocated. JPEG data that
 * libjpeg only warns about (stray bytes before a marker) decodes as libjpeg decodes it, as in
 * PIL; a JPEG that ends early is an error (PIL: "image file is truncated").
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

/* Decodes a PNG or JPEG file held in memory (told apart by its signature) into out, at most
 * IMAGE_MAX_PIXELS pixels. On error out is zeroed. Thread-safe (no shared state). */
int image_decode(const void *data, size_t len, struct image_rgb8 *out, char *err, size_t errlen);

/* The same with a smaller limit on width * height (max_pixels in [1, IMAGE_MAX_PIXELS]; larger
 * values are taken as IMAGE_MAX_PIXELS), e.g. for a server's init images or a fuzzer. */
int image_decode_limited(const void *data, size_t len, long long max_pixels,
                         struct image_rgb8 *out, char *err, size_t errlen);

/* Encodes img as an 8-bit RGB PNG (zlib level 6, adaptive filters); *png is malloc'd (free()
 * it), *png_len its size. text: optional text entries (key, value pairs, NULL-terminated list
 * of 2n strings, or NULL), e.g. "parameters" with the prompt and seed, as image tools show
 * them. A key is 1-79 printable Latin-1 characters without leading, trailing or double spaces
 * (PNG's rule; -EINVAL otherwise); a value that is plain ASCII goes into a tEXt chunk, any
 * other value (UTF-8) into an uncompressed iTXt chunk, and both read back as text in PIL; an
 * entry with an empty value is left out (libspng writes no empty text chunk). */
int image_encode_png(const struct image_rgb8 *img, const char *const *text, void **png,
                     size_t *png_len, char *err, size_t errlen);

/* Tensor (3, h, w) floats in [-1, 1] (values outside are clamped, NaN gives 0) -> pixels:
 * round((x + 1) * 127.5), ties to even as numpy's round() in diffusers. out->pixels is
 * allocated (free with image_rgb8_free()); -EINVAL for a size < 1, -E2BIG over
 * IMAGE_MAX_PIXELS. */
int image_from_chw(const float *chw, int width, int height, struct image_rgb8 *out);

/* Pixels -> tensor (3, h, w): x = p / 127.5 - 1. chw has room for 3 * width * height. */
int image_to_chw(const struct image_rgb8 *img, float *chw);

/* Resizes img to width x height (bilinear over 8-bit samples, pixel centres aligned, edges
 * clamped; an axis shrunk by more than 2x is area-averaged instead), into out (allocated; free
 * with image_rgb8_free()). The same size gives an exact copy. Used for init images whose size
 * is not the requested one. -EINVAL for a size < 1, -E2BIG over IMAGE_MAX_PIXELS. */
int image_resize(const struct image_rgb8 *img, int width, int height, struct image_rgb8 *out);

#endif
