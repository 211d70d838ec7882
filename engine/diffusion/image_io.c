/* image_io: format detection, limits and the error helpers shared by the PNG and JPEG code. */
#include "image_io-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int image_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

int image_check_size(long long width, long long height, long long max_pixels, char *err,
                     size_t errlen)
{
	if (width <= 0 || height <= 0)
		return image_fail(err, errlen, -EBADMSG, "image has a zero size (%lldx%lld)", width,
		                  height);
	/* both sides are below 2^32 (PNG and JPEG header fields): the product fits */
	if (width * height > max_pixels)
		return image_fail(err, errlen, -E2BIG,
		                  "image is %lldx%lld (%lld pixels), more than the limit of %lld",
		                  width, height, width * height, max_pixels);
	return 0;
}

void image_rgb8_free(struct image_rgb8 *img)
{
	if (!img)
		return;
	free(img->pixels);
	memset(img, 0, sizeof(*img));
}

int image_decode_limited(const void *data, size_t len, long long max_pixels,
                         struct image_rgb8 *out, char *err, size_t errlen)
{
	static const unsigned char png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	const unsigned char *p = data;

	if (err && errlen)
		err[0] = '\0';
	if (!out)
		return image_fail(err, errlen, -EINVAL, "no output image");
	memset(out, 0, sizeof(*out));
	if (!data && len)
		return image_fail(err, errlen, -EINVAL, "no input data");
	if (max_pixels < 1)
		return image_fail(err, errlen, -EINVAL, "pixel limit %lld is below 1", max_pixels);
	if (max_pixels > IMAGE_MAX_PIXELS)
		max_pixels = IMAGE_MAX_PIXELS;
	if (len >= 8 && memcmp(p, png_sig, 8) == 0)
		return image_decode_png(data, len, max_pixels, out, err, errlen);
	if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return image_decode_jpeg(data, len, max_pixels, out, err, errlen);
	if (len == 0)
		return image_fail(err, errlen, -EBADMSG, "empty image file");
	if (len >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
		return image_fail(err, errlen, -ENOTSUP, "GIF images are not supported (PNG or JPEG)");
	if (len >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
		return image_fail(err, errlen, -ENOTSUP, "WebP images are not supported (PNG or JPEG)");
	if (len >= 2 && p[0] == 'B' && p[1] == 'M')
		return image_fail(err, errlen, -ENOTSUP, "BMP images are not supported (PNG or JPEG)");
	return image_fail(err, errlen, -EBADMSG, "not a PNG or JPEG file (unknown signature)");
}

int image_decode(const void *data, size_t len, struct image_rgb8 *out, char *err, size_t errlen)
{
	return image_decode_limited(data, len, IMAGE_MAX_PIXELS, out, err, errlen);
}
