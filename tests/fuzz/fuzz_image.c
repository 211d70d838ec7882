/* libFuzzer target: image_decode_limited() on arbitrary bytes (PNG and JPEG, told apart by
 * the signature) must return cleanly: 0 with width * height * 3 readable pixels, or a
 * negative code with a reason and no pixels. A decoded image must survive a PNG round trip
 * unchanged and a resize. The limit is 4 megapixels so that a header asking for the full
 * IMAGE_MAX_PIXELS does not spend the fuzzer's time and memory on one input.
 *   ./fuzz_image -max_total_time=60 -rss_limit_mb=2048 corpus/
 * Seeds: any small PNG and JPEG files (e.g. those tests/reference/image_ref.py gen writes). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size heap copy so that ASan catches any read past the end */
	uint8_t *copy = malloc(size ? size : 1);
	struct image_rgb8 img, back, small;
	char err[256];
	void *png = NULL;
	size_t png_len = 0;
	int rc;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	rc = image_decode_limited(copy, size, 4ll << 20, &img, err, sizeof(err));
	if (rc != 0) {
		if (img.pixels || !err[0])
			abort(); /* an error leaves no pixels and gives a reason */
		free(copy);
		return 0;
	}
	if (img.width < 1 || img.height < 1 || (long long)img.width * img.height > (4ll << 20))
		abort();
	for (size_t i = 0; i < (size_t)img.width * img.height * 3; i += 4093)
		sink += img.pixels[i];
	sink += img.pixels[(size_t)img.width * img.height * 3 - 1];
	if ((long long)img.width * img.height <= (1 << 16)) {
		if (image_encode_png(&img, NULL, &png, &png_len, err, sizeof(err)) != 0)
			abort();
		if (image_decode(png, png_len, &back, err, sizeof(err)) != 0 ||
		    back.width != img.width || back.height != img.height ||
		    memcmp(back.pixels, img.pixels, (size_t)img.width * img.height * 3) != 0)
			abort();
		image_rgb8_free(&back);
		free(png);
	}
	if (image_resize(&img, 1 + img.width % 37, 1 + img.height % 29, &small) != 0)
		abort();
	image_rgb8_free(&small);
	image_rgb8_free(&img);
	free(copy);
	return 0;
}
