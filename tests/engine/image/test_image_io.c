/* image_io: PNG round trips, decoding of files made and decoded by Pillow (every PNG colour
 * type and bit depth, baseline/progressive/greyscale/CMYK JPEG), text chunks that Pillow
 * reads back, corrupt, truncated and oversized files, tensor conversions and resizing.
 *
 * The Pillow cases run tests/reference/image_ref.py (a venv with a pinned Pillow in the build
 * folder, made on first use) and are skipped with the reason when it cannot be had. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <jpeglib.h>

#include "image_io.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	cr_assert(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n ? (size_t)n : 1);
	cr_assert(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void write_all(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	cr_assert(f, "cannot write %s", path);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

static void random_image(struct image_rgb8 *img, int w, int h, uint32_t seed)
{
	img->width = w;
	img->height = h;
	img->pixels = malloc((size_t)w * h * 3);
	cr_assert(img->pixels);
	for (size_t i = 0; i < (size_t)w * h * 3; i++) {
		seed = seed * 1664525u + 1013904223u;
		img->pixels[i] = (uint8_t)(seed >> 24);
	}
}

static void encode(const struct image_rgb8 *img, const char *const *text, void **png,
                   size_t *len)
{
	char err[256];
	int rc = image_encode_png(img, text, png, len, err, sizeof(err));
	cr_assert_eq(rc, 0, "encode %dx%d: %d %s", img->width, img->height, rc, err);
	cr_assert_gt(*len, 8);
}

/* A small JPEG made with libjpeg's compressor (for the corruption tests, which must run
 * offline too); *jpg is malloc'd. */
static void make_jpeg(int w, int h, int progressive, uint8_t **jpg, size_t *len)
{
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr jerr;
	struct image_rgb8 img;
	unsigned char *buf = NULL;
	unsigned long size = 0;

	random_image(&img, w, h, 7);
	for (int i = 0; i < w * h * 3; i++) /* smooth it a little */
		img.pixels[i] = (uint8_t)(img.pixels[i] / 4 + (i % (w * 3)));
	c.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&c);
	jpeg_mem_dest(&c, &buf, &size);
	c.image_width = (JDIMENSION)w;
	c.image_height = (JDIMENSION)h;
	c.input_components = 3;
	c.in_color_space = JCS_RGB;
	jpeg_set_defaults(&c);
	jpeg_set_quality(&c, 85, TRUE);
	if (progressive)
		jpeg_simple_progression(&c);
	jpeg_start_compress(&c, TRUE);
	while (c.next_scanline < c.image_height) {
		JSAMPROW row = img.pixels + (size_t)c.next_scanline * w * 3;
		jpeg_write_scanlines(&c, &row, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	image_rgb8_free(&img);
	*jpg = malloc(size);
	cr_assert(*jpg);
	memcpy(*jpg, buf, size);
	free(buf);
	*len = size;
}

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
	}
	return c ^ 0xffffffffu;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- PNG round trips ---------------------------------------------------------------------- */

Test(image_png, round_trips_exactly_at_odd_sizes)
{
	static const int sizes[][2] = { { 1, 1 }, { 1, 7 }, { 7, 1 }, { 3, 5 }, { 37, 23 },
	                                { 257, 3 }, { 64, 64 } };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct image_rgb8 img, back;
		void *png;
		size_t len;
		char err[256];

		random_image(&img, sizes[i][0], sizes[i][1], (uint32_t)i + 1);
		encode(&img, NULL, &png, &len);
		cr_assert_eq(image_decode(png, len, &back, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(back.width, img.width);
		cr_assert_eq(back.height, img.height);
		cr_assert_arr_eq(back.pixels, img.pixels, (size_t)img.width * img.height * 3,
		                 "%dx%d", img.width, img.height);
		image_rgb8_free(&back);
		image_rgb8_free(&img);
		free(png);
	}
}

Test(image_png, text_entries_are_written_and_pixels_kept)
{
	static const char *const text[] = { "parameters", "a cat\nSteps: 20, Seed: 42",
	                                    "Comment", "", NULL };
	struct image_rgb8 img, back;
	void *png;
	size_t len;

	random_image(&img, 5, 4, 3);
	encode(&img, text, &png, &len);
	cr_assert(memmem(png, len, "tEXtparameters", 14), "no tEXt chunk");
	cr_assert(memmem(png, len, "Seed: 42", 8));
	cr_assert_null(memmem(png, len, "Comment", 7), "an empty value is left out");
	cr_assert_eq(image_decode(png, len, &back, NULL, 0), 0);
	cr_assert_arr_eq(back.pixels, img.pixels, 5 * 4 * 3);
	image_rgb8_free(&back);
	image_rgb8_free(&img);
	free(png);
}

Test(image_png, encode_rejects_bad_arguments)
{
	static const char *const bad_keys[][3] = {
		{ "", "v", NULL }, { " lead", "v", NULL }, { "trail ", "v", NULL },
		{ "two  spaces", "v", NULL },
		{ "a-key-of-eighty-characters-is-one-too-long-for-png-text-chunks-xxxxxxxxxxxxxxxxx",
		  "v", NULL },
		{ "tab\tkey", "v", NULL }, { "novalue", NULL, NULL },
	};
	struct image_rgb8 img, empty = { 0 };
	void *png = (void *)1;
	size_t len = 1;
	char err[256];

	random_image(&img, 2, 2, 1);
	for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
		const char *const *t = bad_keys[i];
		const char *const one[] = { t[0], t[1], t[1] ? NULL : NULL, NULL };
		cr_assert_eq(image_encode_png(&img, one, &png, &len, err, sizeof(err)), -EINVAL,
		             "key '%s'", t[0]);
		cr_assert_null(png);
		cr_assert_gt(strlen(err), 0);
	}
	cr_assert_eq(image_encode_png(&empty, NULL, &png, &len, err, sizeof(err)), -EINVAL);
	cr_assert_eq(image_encode_png(NULL, NULL, &png, &len, NULL, 0), -EINVAL);
	cr_assert_eq(image_encode_png(&img, NULL, NULL, &len, NULL, 0), -EINVAL);
	image_rgb8_free(&img);
	image_rgb8_free(NULL);
}

/* ---- bad input ------------------------------------------------------------------------------ */

static void expect_error(const void *data, size_t len, int want, const char *what)
{
	struct image_rgb8 out = { .width = 99 };
	char err[256] = "";
	int rc = image_decode(data, len, &out, err, sizeof(err));

	if (want)
		cr_assert_eq(rc, want, "%s: got %d (%s)", what, rc, err);
	else
		cr_assert_lt(rc, 0, "%s: decoded", what);
	cr_assert_null(out.pixels, "%s", what);
	cr_assert_eq(out.width, 0, "%s", what);
	cr_assert_gt(strlen(err), 0, "%s: no reason", what);
}

Test(image_bad, unknown_and_empty_inputs_are_errors)
{
	expect_error("", 0, -EBADMSG, "empty");
	expect_error("hello world, not an image", 25, -EBADMSG, "text");
	expect_error("GIF89a\x01\x00\x01\x00", 10, -ENOTSUP, "gif");
	expect_error("\x89PNG\r\n\x1a\n", 8, 0, "png signature only");
	expect_error("\xff\xd8\xff", 3, -EBADMSG, "jpeg SOI only");
	cr_assert_eq(image_decode("x", 1, NULL, NULL, 0), -EINVAL);
}

Test(image_bad, truncated_png_at_every_length_is_an_error)
{
	struct image_rgb8 img, out;
	void *png;
	size_t len;

	random_image(&img, 19, 11, 5);
	encode(&img, (const char *const[]){ "k", "v", NULL }, &png, &len);
	/* libspng has all pixels at the end of the zlib stream in IDAT and accepts a file cut
	 * after it (in the IDAT's CRC, a later chunk or IEND): then the pixels must be right */
	size_t idat_end = 0;
	for (size_t i = 12; i + 4 <= len; i++)
		if (memcmp((uint8_t *)png + i, "IDAT", 4) == 0) {
			const uint8_t *l = (uint8_t *)png + i - 4;
			idat_end = i + 4 + ((size_t)l[0] << 24 | (size_t)l[1] << 16 | (size_t)l[2] << 8 | l[3]) + 4;
		}
	cr_assert_gt(idat_end, 0);
	for (size_t n = 0; n < len; n++) {
		uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees a read past the end */
		char err[256];
		int rc;
		memcpy(copy, png, n);
		rc = image_decode(copy, n, &out, err, sizeof(err));
		if (n < idat_end - 4)
			cr_assert_lt(rc, 0, "prefix of %zu/%zu bytes decoded", n, len);
		if (rc == 0) {
			cr_assert_arr_eq(out.pixels, img.pixels, 19 * 11 * 3);
			image_rgb8_free(&out);
		} else {
			cr_assert_null(out.pixels);
		}
		free(copy);
	}
	image_rgb8_free(&img);
	free(png);
}

Test(image_bad, corrupt_bytes_never_crash)
{
	struct image_rgb8 img, out;
	void *png;
	uint8_t *jpg, *copy;
	size_t len, jlen;

	random_image(&img, 23, 9, 9);
	encode(&img, NULL, &png, &len);
	make_jpeg(40, 24, 1, &jpg, &jlen);
	copy = malloc(len > jlen ? len : jlen);
	for (int which = 0; which < 2; which++) {
		const uint8_t *src = which ? jpg : png;
		size_t n = which ? jlen : len;
		for (size_t i = 0; i < n; i++) {
			for (int bit = 0; bit < 8; bit += 3) {
				memcpy(copy, src, n);
				copy[i] ^= (uint8_t)(1u << bit);
				if (image_decode(copy, n, &out, NULL, 0) == 0) {
					cr_assert_not_null(out.pixels);
					image_rgb8_free(&out);
				} else {
					cr_assert_null(out.pixels);
				}
			}
		}
	}
	free(copy);
	free(jpg);
	free(png);
	image_rgb8_free(&img);
}

Test(image_bad, truncated_jpeg_is_an_error)
{
	uint8_t *jpg;
	size_t len;
	struct image_rgb8 out;
	char err[256];

	for (int prog = 0; prog < 2; prog++) {
		make_jpeg(48, 32, prog, &jpg, &len);
		cr_assert_eq(image_decode(jpg, len, &out, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(out.width, 48);
		cr_assert_eq(out.height, 32);
		image_rgb8_free(&out);
		for (size_t n = 0; n + 2 < len; n += (n < 700 ? 1 : 7)) {
			uint8_t *copy = malloc(n ? n : 1);
			memcpy(copy, jpg, n);
			int rc = image_decode(copy, n, &out, err, sizeof(err));
			cr_assert_lt(rc, 0, "%s prefix of %zu/%zu bytes decoded", prog ? "progressive" :
			             "baseline", n, len);
			cr_assert_null(out.pixels);
			free(copy);
		}
		free(jpg);
	}
}

Test(image_bad, huge_png_header_is_refused_before_allocating)
{
	/* signature, IHDR 100000x100000 8-bit RGB, a tiny IDAT, IEND */
	uint8_t png[8 + 25 + 12 + 12 + 4] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	uint8_t *p = png + 8;
	put_be32(p, 13);
	memcpy(p + 4, "IHDR", 4);
	put_be32(p + 8, 100000);
	put_be32(p + 12, 100000);
	p[16] = 8;
	p[17] = 2;
	put_be32(p + 21, crc32_png(p + 4, 17));
	p += 25;
	put_be32(p, 0);
	memcpy(p + 4, "IDAT", 4);
	put_be32(p + 8, crc32_png(p + 4, 4));
	p += 12;
	put_be32(p, 0);
	memcpy(p + 4, "IEND", 4);
	put_be32(p + 8, crc32_png(p + 4, 4));
	expect_error(png, sizeof(png) - 4, -E2BIG, "100000x100000 PNG");
}

Test(image_bad, huge_jpeg_header_is_refused_before_allocating)
{
	uint8_t *jpg;
	size_t len, sof = 0;

	make_jpeg(16, 16, 0, &jpg, &len);
	for (size_t i = 2; i + 9 < len; i++)
		if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
			sof = i;
			break;
		}
	cr_assert_gt(sof, 0, "no SOF0 marker");
	/* FF C0, length (2), precision (1), height (2), width (2): 65000 x 65000 passes
	 * libjpeg's own limit (65500) and not ours; 65535 x 65535 is over both */
	jpg[sof + 5] = jpg[sof + 7] = 0xfd;
	jpg[sof + 6] = jpg[sof + 8] = 0xe8;
	expect_error(jpg, len, -E2BIG, "65000x65000 JPEG");
	jpg[sof + 5] = jpg[sof + 6] = jpg[sof + 7] = jpg[sof + 8] = 0xff;
	expect_error(jpg, len, -E2BIG, "65535x65535 JPEG");
	free(jpg);
}

Test(image_bad, limited_decode_refuses_larger_images)
{
	struct image_rgb8 img, out;
	void *png;
	size_t len;
	char err[256];

	random_image(&img, 30, 20, 2);
	encode(&img, NULL, &png, &len);
	cr_assert_eq(image_decode_limited(png, len, 599, &out, err, sizeof(err)), -E2BIG);
	cr_assert(strstr(err, "limit"), "%s", err);
	cr_assert_eq(image_decode_limited(png, len, 600, &out, err, sizeof(err)), 0, "%s", err);
	image_rgb8_free(&out);
	cr_assert_eq(image_decode_limited(png, len, 0, &out, err, sizeof(err)), -EINVAL);
	image_rgb8_free(&img);
	free(png);
}

/* ---- tensors and resizing ------------------------------------------------------------------ */

Test(image_pixels, chw_round_trip_of_every_value)
{
	struct image_rgb8 img = { .width = 256, .height = 2 }, back;
	float *chw = malloc(sizeof(float) * 3 * 512);

	img.pixels = malloc(256 * 2 * 3);
	for (int i = 0; i < 256 * 2 * 3; i++)
		img.pixels[i] = (uint8_t)((i / 3 + (i % 3) * 85) & 255);
	cr_assert_eq(image_to_chw(&img, chw), 0);
	/* channel planes: the red of pixel 1 is chw[1], its green chw[512 + 1] */
	cr_assert_float_eq(chw[0], -1.0f, 1e-6);
	cr_assert_float_eq(chw[255], 1.0f, 1e-6);
	cr_assert_float_eq(chw[512 + 1], (float)img.pixels[4] / 127.5f - 1.0f, 1e-6);
	cr_assert_eq(image_from_chw(chw, 256, 2, &back), 0);
	cr_assert_arr_eq(back.pixels, img.pixels, 256 * 2 * 3);
	image_rgb8_free(&back);
	image_rgb8_free(&img);
	free(chw);
}

Test(image_pixels, from_chw_clamps_and_rounds)
{
	float chw[3 * 4] = { -5.0f, 5.0f, NAN, 0.0f,   -1.0f, 1.0f, 0.5f, -0.5f,
	                     INFINITY, -INFINITY, 1.0f / 255.0f, -1.0f / 255.0f };
	struct image_rgb8 out;

	cr_assert_eq(image_from_chw(chw, 2, 2, &out), 0);
	const uint8_t want[12] = { 0, 0, 255,  255, 255, 0,  0, 191, 128,  128, 64, 127 };
	cr_assert_arr_eq(out.pixels, want, 12);
	image_rgb8_free(&out);
	cr_assert_eq(image_from_chw(chw, 0, 2, &out), -EINVAL);
	cr_assert_eq(image_from_chw(chw, 1 << 16, 1 << 16, &out), -E2BIG);
	cr_assert_null(out.pixels);
}

static void fill(struct image_rgb8 *img, int w, int h, uint8_t r, uint8_t g, uint8_t b)
{
	img->width = w;
	img->height = h;
	img->pixels = malloc((size_t)w * h * 3);
	for (int i = 0; i < w * h; i++) {
		img->pixels[3 * i] = r;
		img->pixels[3 * i + 1] = g;
		img->pixels[3 * i + 2] = b;
	}
}

Test(image_pixels, resize_keeps_a_constant_image_constant)
{
	static const int sizes[][2] = { { 64, 64 }, { 5, 3 }, { 1, 1 }, { 512, 7 }, { 3, 200 },
	                                { 38, 23 } };
	struct image_rgb8 img, out;

	fill(&img, 37, 23, 200, 7, 128);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		cr_assert_eq(image_resize(&img, sizes[s][0], sizes[s][1], &out), 0);
		cr_assert_eq(out.width, sizes[s][0]);
		cr_assert_eq(out.height, sizes[s][1]);
		for (int i = 0; i < out.width * out.height; i++) {
			cr_assert_eq(out.pixels[3 * i], 200, "%dx%d px %d", out.width, out.height, i);
			cr_assert_eq(out.pixels[3 * i + 1], 7);
			cr_assert_eq(out.pixels[3 * i + 2], 128);
		}
		image_rgb8_free(&out);
	}
	image_rgb8_free(&img);
}

Test(image_pixels, resize_to_the_same_size_is_a_copy)
{
	struct image_rgb8 img, out;

	random_image(&img, 31, 17, 4);
	cr_assert_eq(image_resize(&img, 31, 17, &out), 0);
	cr_assert_neq(out.pixels, img.pixels);
	cr_assert_arr_eq(out.pixels, img.pixels, 31 * 17 * 3);
	image_rgb8_free(&out);
	image_rgb8_free(&img);
}

Test(image_pixels, shrinking_a_checkerboard_averages_it)
{
	/* one-pixel checkerboard, 0 and 255 */
	struct image_rgb8 img, out;
	static const int targets[] = { 32, 16, 8, 5, 1 }; /* 2x bilinear, then area averaging */

	fill(&img, 64, 64, 0, 0, 0);
	for (int y = 0; y < 64; y++)
		for (int x = 0; x < 64; x++)
			if ((x + y) & 1)
				memset(img.pixels + 3 * (y * 64 + x), 255, 3);
	for (size_t t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
		int n = targets[t];
		cr_assert_eq(image_resize(&img, n, n, &out), 0);
		for (int i = 0; i < n * n * 3; i++)
			cr_assert(abs(out.pixels[i] - 128) <= (64 % n ? 8 : 1),
			          "%dx%d: sample %d is %d", n, n, i, out.pixels[i]);
		image_rgb8_free(&out);
	}
	image_rgb8_free(&img);
}

Test(image_pixels, enlarging_interpolates_between_neighbours)
{
	struct image_rgb8 img = { .width = 2, .height = 1 }, out;
	uint8_t px[6] = { 0, 0, 0, 200, 100, 40 };

	img.pixels = px;
	cr_assert_eq(image_resize(&img, 4, 1, &out), 0);
	/* centres of 4 outputs over 2 inputs: x = -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1) */
	const uint8_t want[12] = { 0, 0, 0,  50, 25, 10,  150, 75, 30,  200, 100, 40 };
	cr_assert_arr_eq(out.pixels, want, 12);
	image_rgb8_free(&out);
	cr_assert_eq(image_resize(&img, 0, 4, &out), -EINVAL);
	cr_assert_eq(image_resize(NULL, 4, 4, &out), -EINVAL);
}

/* ---- against Pillow ---------------------------------------------------------------------- */

static const char *env_or_skip(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v)
		cr_skip_test("%s is not set (run through meson test)", name);
	return v;
}

/* Runs image_ref.py ARGS; @return its exit status; stdout into out (may be NULL). */
static int ref_run(const char *args, char *out, size_t outlen)
{
	const char *py = env_or_skip("INFERD_PYTHON"), *dir = env_or_skip("INFERD_REF_DIR");
	const char *work = env_or_skip("INFERD_IMAGE_WORK");
	char cmd[4096];
	FILE *p;
	size_t n = 0;
	int st;

	snprintf(cmd, sizeof(cmd), "'%s' '%s/image_ref.py' %s '%s/venv' %s", py, dir,
	         strncmp(args, "read", 4) == 0 ? "read" : "gen", work, args + 4);
	p = popen(cmd, "r");
	cr_assert(p, "popen %s", cmd);
	if (out) {
		n = fread(out, 1, outlen - 1, p);
		out[n] = '\0';
	} else {
		char sink[512];
		while (fread(sink, 1, sizeof(sink), p) > 0)
			;
	}
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *ref_dir(void)
{
	static char dir[2048];
	char args[2100];
	int st;

	snprintf(dir, sizeof(dir), "%s/ref", env_or_skip("INFERD_IMAGE_WORK"));
	snprintf(args, sizeof(args), "gen  '%s'", dir);
	st = ref_run(args, NULL, 0);
	if (st == 77)
		cr_skip_test("Pillow is not available (offline?): see %s/venv.log",
		             getenv("INFERD_IMAGE_WORK"));
	cr_assert_eq(st, 0, "image_ref.py gen failed (%d)", st);
	return dir;
}

static void check_cases(const char *prefix, int max_diff, double max_mean)
{
	const char *dir = ref_dir();
	char path[4096], name[256], file[256];
	int w, h, n_cases = 0;
	FILE *list;

	snprintf(path, sizeof(path), "%s/cases.txt", dir);
	list = fopen(path, "r");
	cr_assert(list, "no %s", path);
	while (fscanf(list, "%255s %255s %d %d", name, file, &w, &h) == 4) {
		struct image_rgb8 img;
		uint8_t *data, *want;
		size_t len, wlen;
		char err[256];
		long sum = 0;
		int worst = 0;

		if (strncmp(name, prefix, strlen(prefix)) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, file);
		data = read_all(path, &len);
		snprintf(path, sizeof(path), "%s/%s.rgb", dir, name);
		want = read_all(path, &wlen);
		cr_assert_eq(image_decode(data, len, &img, err, sizeof(err)), 0, "%s: %s", name, err);
		cr_assert_eq(img.width, w, "%s", name);
		cr_assert_eq(img.height, h, "%s", name);
		cr_assert_eq(wlen, (size_t)w * h * 3, "%s", name);
		for (size_t i = 0; i < wlen; i++) {
			int d = abs(img.pixels[i] - want[i]);
			sum += d;
			if (d > worst)
				worst = d;
			if (max_diff == 0)
				cr_assert_eq(d, 0, "%s: sample %zu (pixel %zu, %zu) is %d, Pillow %d", name,
				             i, i / 3 % (size_t)w, i / 3 / (size_t)w, img.pixels[i], want[i]);
		}
		cr_assert_leq(worst, max_diff, "%s: largest difference %d", name, worst);
		cr_assert_leq((double)sum / (double)wlen, max_mean, "%s: mean difference %.3f", name,
		              (double)sum / (double)wlen);
		image_rgb8_free(&img);
		free(data);
		free(want);
		n_cases++;
	}
	fclose(list);
	cr_assert_gt(n_cases, 5, "too few %s cases", prefix);
}

Test(image_pil, png_of_every_colour_type_and_depth_decodes_as_pil, .timeout = 300)
{
	check_cases("png_", 0, 0.0);
}

Test(image_pil, jpegs_decode_as_pil_within_a_small_tolerance, .timeout = 300)
{
	/* both libjpeg-turbo, islow IDCT, fancy upsampling: rounding differences at most */
	check_cases("jpeg_", 2, 0.25);
}

Test(image_pil, pil_reads_our_png_and_its_text, .timeout = 300)
{
	static const char *const text[] = { "parameters", "a cat, Steps: 20, Seed: 42\nline 2",
	                                    "prompt", "caf\xc3\xa9 \xe2\x98\x83 in UTF-8",
	                                    "Software", "inferd", NULL };
	const char *work;
	char png_path[2048], rgb_path[2048], args[4200], out[8192];
	struct image_rgb8 img;
	uint8_t *pix;
	size_t len;
	void *png;
	json_t *j, *t;
	json_error_t jerr;

	ref_dir(); /* skips when Pillow is not there */
	work = getenv("INFERD_IMAGE_WORK");
	random_image(&img, 33, 7, 11);
	encode(&img, text, &png, &len);
	snprintf(png_path, sizeof(png_path), "%s/ours.png", work);
	snprintf(rgb_path, sizeof(rgb_path), "%s/ours.rgb", work);
	write_all(png_path, png, len);
	snprintf(args, sizeof(args), "read '%s' '%s'", png_path, rgb_path);
	cr_assert_eq(ref_run(args, out, sizeof(out)), 0, "image_ref.py read: %s", out);
	j = json_loads(out, 0, &jerr);
	cr_assert(j, "not JSON: %s", out);
	cr_assert_str_eq(json_string_value(json_object_get(j, "format")), "PNG");
	cr_assert_str_eq(json_string_value(json_object_get(j, "mode")), "RGB");
	cr_assert_eq(json_integer_value(json_object_get(j, "width")), 33);
	cr_assert_eq(json_integer_value(json_object_get(j, "height")), 7);
	t = json_object_get(j, "text");
	for (int i = 0; text[i]; i += 2)
		cr_assert_str_eq(json_string_value(json_object_get(t, text[i])), text[i + 1],
		                 "text '%s'", text[i]);
	json_decref(j);
	pix = read_all(rgb_path, &len);
	cr_assert_eq(len, 33 * 7 * 3);
	cr_assert_arr_eq(pix, img.pixels, len);
	free(pix);
	free(png);
	image_rgb8_free(&img);
}
