/* image_io: 8-bit pixels <-> the models' float tensors, and resizing. */
#include "image_io-internal.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int check_dims(int width, int height)
{
	if (width < 1 || height < 1)
		return -EINVAL;
	if ((long long)width * height > IMAGE_MAX_PIXELS)
		return -E2BIG;
	return 0;
}

static int alloc_image(int width, int height, struct image_rgb8 *out)
{
	int rc = check_dims(width, height);

	if (rc)
		return rc;
	if (!(out->pixels = malloc((size_t)width * height * 3)))
		return -ENOMEM;
	out->width = width;
	out->height = height;
	return 0;
}

/* ---- tensors ------------------------------------------------------------------------------- */

int image_from_chw(const float *chw, int width, int height, struct image_rgb8 *out)
{
	size_t plane;
	int rc;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!chw)
		return -EINVAL;
	if ((rc = alloc_image(width, height, out)) != 0)
		return rc;
	plane = (size_t)width * height;
	for (int c = 0; c < 3; c++) {
		const float *src = chw + c * plane;
		uint8_t *dst = out->pixels + c;
		for (size_t i = 0; i < plane; i++, dst += 3) {
			float x = src[i];
			/* written so that NaN fails both tests and ends at -1 */
			x = x > -1.0f ? x : -1.0f;
			x = x < 1.0f ? x : 1.0f;
			*dst = (uint8_t)lrintf((x + 1.0f) * 127.5f);
		}
	}
	return 0;
}

int image_to_chw(const struct image_rgb8 *img, float *chw)
{
	float lut[256];
	size_t plane;

	if (!img || !img->pixels || !chw || check_dims(img->width, img->height))
		return -EINVAL;
	for (int p = 0; p < 256; p++)
		lut[p] = (float)p / 127.5f - 1.0f;
	plane = (size_t)img->width * img->height;
	for (int c = 0; c < 3; c++) {
		const uint8_t *src = img->pixels + c;
		float *dst = chw + c * plane;
		for (size_t i = 0; i < plane; i++, src += 3)
			dst[i] = lut[*src];
	}
	return 0;
}

/* ---- resizing -------------------------------------------------------------------------------
 * Separable: every output index of an axis is a weighted sum of a run of input indices (two
 * for bilinear, about in/out for area averaging); the rows are filtered first into floats,
 * then the columns, rounded once at the end. */

struct taps {
	int *first;    /* (out) first input index */
	int *count;    /* (out) number of inputs */
	float *w;      /* (out, max) weights, summing to 1 */
	int max;
};

static void taps_free(struct taps *t)
{
	free(t->first);
	free(t->count);
	free(t->w);
}

static int taps_make(int n_in, int n_out, struct taps *t)
{
	double scale = (double)n_in / n_out;
	int area = scale > 2.0;

	memset(t, 0, sizeof(*t));
	t->max = area ? (int)ceil(scale) + 1 : 2;
	t->first = malloc(sizeof(int) * (size_t)n_out);
	t->count = malloc(sizeof(int) * (size_t)n_out);
	t->w = calloc((size_t)n_out * (size_t)t->max, sizeof(float));
	if (!t->first || !t->count || !t->w) {
		taps_free(t);
		return -ENOMEM;
	}
	for (int o = 0; o < n_out; o++) {
		float *w = t->w + (size_t)o * t->max;
		if (area) {
			/* input interval [lo, hi) covered by this output pixel, by overlap */
			double lo = o * scale, hi = (o + 1) * scale, sum = 0;
			int a = (int)floor(lo), b = (int)ceil(hi);
			if (b > n_in)
				b = n_in;
			if (b - a > t->max)
				b = a + t->max;
			for (int i = a; i < b; i++) {
				double l = i > lo ? i : lo, h = i + 1 < hi ? i + 1 : hi;
				w[i - a] = (float)(h - l);
				sum += h - l;
			}
			for (int i = 0; i < b - a; i++)
				w[i] = (float)(w[i] / sum);
			t->first[o] = a;
			t->count[o] = b - a;
		} else {
			/* pixel centres aligned: input coordinate of output centre o */
			double x = (o + 0.5) * scale - 0.5;
			int a;
			double f;
			if (x < 0)
				x = 0;
			if (x > n_in - 1)
				x = n_in - 1;
			a = (int)floor(x);
			f = x - a;
			if (a + 1 >= n_in || f == 0) {
				t->first[o] = a;
				t->count[o] = 1;
				w[0] = 1.0f;
			} else {
				t->first[o] = a;
				t->count[o] = 2;
				w[0] = (float)(1.0 - f);
				w[1] = (float)f;
			}
		}
	}
	return 0;
}

int image_resize(const struct image_rgb8 *img, int width, int height, struct image_rgb8 *out)
{
	struct taps tx = { 0 }, ty = { 0 };
	float *mid = NULL; /* (img->height, width, 3) rows filtered horizontally */
	int rc;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!img || !img->pixels || check_dims(img->width, img->height))
		return -EINVAL;
	if ((rc = alloc_image(width, height, out)) != 0)
		return rc;
	if (width == img->width && height == img->height) {
		memcpy(out->pixels, img->pixels, (size_t)width * height * 3);
		return 0;
	}
	if ((rc = taps_make(img->width, width, &tx)) != 0 ||
	    (rc = taps_make(img->height, height, &ty)) != 0)
		goto fail;
	if (!(mid = malloc(sizeof(float) * (size_t)img->height * width * 3))) {
		rc = -ENOMEM;
		goto fail;
	}
	for (int y = 0; y < img->height; y++) {
		const uint8_t *src = img->pixels + (size_t)y * img->width * 3;
		float *dst = mid + (size_t)y * width * 3;
		for (int x = 0; x < width; x++) {
			const float *w = tx.w + (size_t)x * tx.max;
			const uint8_t *s = src + (size_t)tx.first[x] * 3;
			float r = 0, g = 0, b = 0;
			for (int k = 0; k < tx.count[x]; k++, s += 3) {
				r += w[k] * s[0];
				g += w[k] * s[1];
				b += w[k] * s[2];
			}
			dst[3 * x] = r;
			dst[3 * x + 1] = g;
			dst[3 * x + 2] = b;
		}
	}
	for (int y = 0; y < height; y++) {
		const float *w = ty.w + (size_t)y * ty.max;
		uint8_t *dst = out->pixels + (size_t)y * width * 3;
		for (int i = 0; i < width * 3; i++) {
			const float *s = mid + (size_t)ty.first[y] * width * 3 + i;
			float v = 0;
			for (int k = 0; k < ty.count[y]; k++, s += (size_t)width * 3)
				v += w[k] * *s;
			v = v < 255.0f ? v : 255.0f;
			v = v > 0.0f ? v : 0.0f;
			dst[i] = (uint8_t)(v + 0.5f);
		}
	}
	rc = 0;
	goto done;
fail:
	image_rgb8_free(out);
done:
	free(mid);
	taps_free(&tx);
	taps_free(&ty);
	return rc;
}
