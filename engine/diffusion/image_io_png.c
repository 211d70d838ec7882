/* image_io: PNG decode (every colour type and bit depth -> 8-bit RGB) and encode (8-bit RGB
 * with text chunks), through libspng. */
#include "image_io-internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <spng.h>

/* Limits on what a PNG's ancillary chunks may make libspng hold: one chunk (text, ICC
 * profile, EXIF, decompressed zTXt/iCCP included) and all of them together. The image data
 * (IDAT) is not counted: its size follows from the header, checked against max_pixels.
 * libspng's own limit of 1000 chunks (SPNG_CHUNK_COUNT_LIMIT) stays as it is: 0.7.3 does not
 * accept setting it on a decoder. */
#define PNG_CHUNK_MAX (8u << 20)
#define PNG_CHUNK_CACHE_MAX (32u << 20)
#define PNG_TEXT_MAX 1000    /* text entries written at most */

static int spng_code(int e)
{
	switch (e) {
	case SPNG_EMEM: return -ENOMEM;
	case SPNG_EWIDTH: case SPNG_EHEIGHT: case SPNG_EUSER_WIDTH: case SPNG_EUSER_HEIGHT:
		return -E2BIG;
	case SPNG_ECHUNK_LIMITS: case SPNG_ECHUNK_STDLEN: return -E2BIG;
	default: return -EBADMSG;
	}
}

/* ---- decode -------------------------------------------------------------------------------- */

int image_decode_png(const void *data, size_t len, long long max_pixels, struct image_rgb8 *out,
                     char *err, size_t errlen)
{
	struct spng_ihdr ihdr;
	spng_ctx *ctx;
	size_t size = 0;
	uint8_t *pixels = NULL;
	int e, rc;

	if (!(ctx = spng_ctx_new(0)))
		return image_fail(err, errlen, -ENOMEM, "out of memory (PNG decoder)");
	if ((e = spng_set_chunk_limits(ctx, PNG_CHUNK_MAX, PNG_CHUNK_CACHE_MAX)) != 0 ||
	    (e = spng_set_png_buffer(ctx, data, len)) != 0) {
		rc = image_fail(err, errlen, -ENOMEM, "PNG decoder set-up: %s", spng_strerror(e));
		goto done;
	}
	if ((e = spng_get_ihdr(ctx, &ihdr)) != 0) {
		rc = image_fail(err, errlen, spng_code(e), "bad PNG header: %s", spng_strerror(e));
		goto done;
	}
	if ((rc = image_check_size(ihdr.width, ihdr.height, max_pixels, err, errlen)) != 0)
		goto done;
	if ((e = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &size)) != 0 ||
	    size != (size_t)ihdr.width * ihdr.height * 3) {
		rc = image_fail(err, errlen, e ? spng_code(e) : -EBADMSG, "PNG %ux%u: %s",
		                ihdr.width, ihdr.height,
		                e ? spng_strerror(e) : "unexpected decoded size");
		goto done;
	}
	if (!(pixels = malloc(size))) {
		rc = image_fail(err, errlen, -ENOMEM, "out of memory for a %ux%u image", ihdr.width,
		                ihdr.height);
		goto done;
	}
	/* flags 0: no tRNS (alpha is dropped anyway), no gamma correction, as PIL */
	if ((e = spng_decode_image(ctx, pixels, size, SPNG_FMT_RGB8, 0)) != 0) {
		rc = image_fail(err, errlen, spng_code(e), "corrupt PNG (%ux%u, colour type %u, %u-bit): %s",
		                ihdr.width, ihdr.height, ihdr.color_type, ihdr.bit_depth,
		                spng_strerror(e));
		goto done;
	}
	out->pixels = pixels;
	out->width = (int)ihdr.width;
	out->height = (int)ihdr.height;
	pixels = NULL;
	rc = 0;
done:
	free(pixels);
	spng_ctx_free(ctx);
	return rc;
}

/* ---- encode -------------------------------------------------------------------------------- */

/* PNG's keyword rule: 1-79 printable Latin-1 bytes, no leading/trailing/double spaces. */
static bool key_ok(const char *k)
{
	size_t n = strlen(k);

	if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)k[i];
		if (!((c >= 32 && c <= 126) || c >= 161))
			return false;
		if (c == ' ' && k[i + 1] == ' ')
			return false;
	}
	return true;
}

/* tEXt holds Latin-1 text; plain printable ASCII (and newlines) reads the same either way. */
static bool plain_ascii(const char *v)
{
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (!((c >= 32 && c <= 126) || c == '\n'))
			return false;
	}
	return true;
}

int image_encode_png(const struct image_rgb8 *img, const char *const *text, void **png,
                     size_t *png_len, char *err, size_t errlen)
{
	struct spng_ihdr ihdr = { 0 };
	struct spng_text *chunks = NULL;
	spng_ctx *ctx = NULL;
	size_t n_text = 0, n_chunks = 0, size, len = 0;
	void *buf;
	int e, rc;

	if (err && errlen)
		err[0] = '\0';
	if (!png || !png_len)
		return image_fail(err, errlen, -EINVAL, "no output buffer");
	*png = NULL;
	*png_len = 0;
	if (!img || !img->pixels || img->width < 1 || img->height < 1)
		return image_fail(err, errlen, -EINVAL, "no image to encode");
	if ((long long)img->width * img->height > IMAGE_MAX_PIXELS)
		return image_fail(err, errlen, -E2BIG, "image %dx%d is over the size limit",
		                  img->width, img->height);
	size = (size_t)img->width * img->height * 3;
	while (text && text[2 * n_text]) {
		if (!text[2 * n_text + 1])
			return image_fail(err, errlen, -EINVAL, "text key '%s' has no value",
			                  text[2 * n_text]);
		if (!key_ok(text[2 * n_text]))
			return image_fail(err, errlen, -EINVAL,
			                  "bad PNG text key '%.100s' (1-79 printable characters, "
			                  "no leading, trailing or double spaces)", text[2 * n_text]);
		n_text++;
	}
	if (n_text > PNG_TEXT_MAX)
		return image_fail(err, errlen, -EINVAL, "too many text entries (%zu)", n_text);
	if (n_text && !(chunks = calloc(n_text, sizeof(*chunks))))
		return image_fail(err, errlen, -ENOMEM, "out of memory");
	if (!(ctx = spng_ctx_new(SPNG_CTX_ENCODER))) {
		rc = image_fail(err, errlen, -ENOMEM, "out of memory (PNG encoder)");
		goto done;
	}
	ihdr.width = (uint32_t)img->width;
	ihdr.height = (uint32_t)img->height;
	ihdr.bit_depth = 8;
	ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
	if ((e = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1)) != 0 ||
	    (e = spng_set_option(ctx, SPNG_IMG_COMPRESSION_LEVEL, 6)) != 0 ||
	    (e = spng_set_ihdr(ctx, &ihdr)) != 0) {
		rc = image_fail(err, errlen, -EINVAL, "PNG encoder set-up: %s", spng_strerror(e));
		goto done;
	}
	for (size_t i = 0; i < n_text; i++) {
		const char *v = text[2 * i + 1];
		struct spng_text *c = &chunks[n_chunks];
		if (!*v)
			continue; /* libspng writes no empty text; a reader sees no entry */
		/* key_ok() bounded the key to 79 bytes; keyword[] has 80 */
		memcpy(c->keyword, text[2 * i], strlen(text[2 * i]) + 1);
		c->type = plain_ascii(v) ? SPNG_TEXT : SPNG_ITXT;
		c->length = strlen(v);
		c->text = (char *)v; /* libspng only reads it */
		c->language_tag = (char *)"";
		c->translated_keyword = (char *)"";
		n_chunks++;
	}
	if (n_chunks && (e = spng_set_text(ctx, chunks, (uint32_t)n_chunks)) != 0) {
		rc = image_fail(err, errlen, -EINVAL, "PNG text entries: %s", spng_strerror(e));
		goto done;
	}
	if ((e = spng_encode_image(ctx, img->pixels, size, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE))) {
		rc = image_fail(err, errlen, spng_code(e) == -ENOMEM ? -ENOMEM : -EINVAL,
		                "PNG encoding failed: %s", spng_strerror(e));
		goto done;
	}
	if (!(buf = spng_get_png_buffer(ctx, &len, &e)) || e) {
		free(buf);
		rc = image_fail(err, errlen, -ENOMEM, "PNG encoding failed: %s", spng_strerror(e));
		goto done;
	}
	*png = buf;
	*png_len = len;
	rc = 0;
done:
	spng_ctx_free(ctx);
	free(chunks);
	return rc;
}
