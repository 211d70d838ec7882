/* image_io: JPEG decode through libjpeg-turbo's libjpeg API (libjpeg62-turbo).
 *
 * The libjpeg API rather than TurboJPEG: it lets the size be checked between reading the
 * header and allocating anything for the pixels, bounds libjpeg's own memory
 * (max_memory_to_use, which caps a progressive file's coefficient buffers) and its number of
 * scans (a progress monitor, as djpeg -maxscans), tells the warning "premature end of file"
 * apart from harmless ones, and converts CMYK/YCCK the way PIL does. Errors come back through
 * an error manager that longjmps out of libjpeg instead of exit(). */
#include "image_io-internal.h"

#include <errno.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

/* A progressive file may have any number of scans, each a full pass over the coefficients:
 * thousands of tiny scans make a small file decode for minutes (libjpeg-turbo's advice). */
#define JPEG_MAX_SCANS 500

struct jpeg_guard {
	struct jpeg_error_mgr pub;     /* first: libjpeg hands back a pointer to it */
	struct jpeg_progress_mgr progress;
	jmp_buf jump;
	int code;                      /* our errno-style code for the failure */
	char message[JMSG_LENGTH_MAX + 64];
};

static struct jpeg_guard *guard_of(j_common_ptr cinfo)
{
	return (struct jpeg_guard *)(void *)cinfo->err;
}

static void on_error_exit(j_common_ptr cinfo)
{
	struct jpeg_guard *g = guard_of(cinfo);
	char msg[JMSG_LENGTH_MAX];

	(*cinfo->err->format_message)(cinfo, msg);
	switch (cinfo->err->msg_code) {
	case JERR_OUT_OF_MEMORY: g->code = -ENOMEM; break;
	case JERR_NO_BACKING_STORE:
		g->code = -E2BIG;
		snprintf(msg, sizeof(msg), "decoding needs more memory than the limit");
		break;
	case JERR_IMAGE_TOO_BIG: g->code = -E2BIG; break; /* a side over 65500 */
	case JERR_BAD_PRECISION: g->code = -ENOTSUP; break;
	default: g->code = -EBADMSG;
	}
	snprintf(g->message, sizeof(g->message), "%s", msg);
	longjmp(g->jump, 1);
}

/* Warnings (level -1) are corrupt-data notes that libjpeg recovers from; PIL ignores them
 * too, except the end of the data arriving early, which PIL calls a truncated file. Trace
 * messages (level >= 0) are dropped. */
static void on_message(j_common_ptr cinfo, int level)
{
	struct jpeg_guard *g = guard_of(cinfo);

	if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
		g->code = -EBADMSG;
		snprintf(g->message, sizeof(g->message), "truncated JPEG (premature end of data)");
		longjmp(g->jump, 1);
	}
	if (level == -1)
		cinfo->err->num_warnings++;
}

static void on_progress(j_common_ptr cinfo)
{
	struct jpeg_guard *g = guard_of(cinfo);

	if (cinfo->is_decompressor &&
	    ((j_decompress_ptr)(void *)cinfo)->input_scan_number > JPEG_MAX_SCANS) {
		g->code = -EBADMSG;
		snprintf(g->message, sizeof(g->message), "JPEG has more than %d scans",
		         JPEG_MAX_SCANS);
		longjmp(g->jump, 1);
	}
}

/* CMYK (or YCCK decoded to CMYK) -> RGB as PIL's convert("RGB"): R = (255 - C)(255 - K) / 255
 * in ink amounts. Files with an Adobe APP14 marker (Photoshop and PIL write one) store the
 * channels inverted, 255 = no ink. */
static void cmyk_to_rgb(const uint8_t *in, uint8_t *out, unsigned width, int inverted)
{
	for (unsigned x = 0; x < width; x++, in += 4, out += 3) {
		unsigned k = inverted ? in[3] : 255u - in[3];
		for (int c = 0; c < 3; c++) {
			unsigned v = inverted ? in[c] : 255u - in[c];
			out[c] = (uint8_t)((v * k + 127) / 255);
		}
	}
}

int image_decode_jpeg(const void *data, size_t len, long long max_pixels,
                      struct image_rgb8 *out, char *err, size_t errlen)
{
	struct jpeg_decompress_struct cinfo;
	struct jpeg_guard g = { .code = 0 };
	uint8_t *volatile pixels = NULL;
	uint8_t *volatile row = NULL;
	volatile int cmyk = 0;
	int rc;

	memset(&cinfo, 0, sizeof(cinfo));
	cinfo.err = jpeg_std_error(&g.pub);
	g.pub.error_exit = on_error_exit;
	g.pub.emit_message = on_message;
	if (setjmp(g.jump)) {
		rc = image_fail(err, errlen, g.code ? g.code : -EBADMSG, "bad JPEG: %s", g.message);
		goto done;
	}
	jpeg_create_decompress(&cinfo);
	/* coefficient buffers of a progressive file: 2 bytes per sample, 3 full-size components
	 * at most, plus room for libjpeg's own tables */
	cinfo.mem->max_memory_to_use = (long)(max_pixels * 6 + (64l << 20));
	g.progress.progress_monitor = on_progress;
	cinfo.progress = &g.progress;
	jpeg_mem_src(&cinfo, data, (unsigned long)len);
	if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK) {
		rc = image_fail(err, errlen, -EBADMSG, "JPEG has no image (tables only)");
		goto done;
	}
	if ((rc = image_check_size(cinfo.image_width, cinfo.image_height, max_pixels, err,
	                           errlen)) != 0)
		goto done;
	switch (cinfo.jpeg_color_space) {
	case JCS_GRAYSCALE: case JCS_YCbCr: case JCS_RGB:
		cinfo.out_color_space = JCS_RGB;
		break;
	case JCS_CMYK: case JCS_YCCK:
		cinfo.out_color_space = JCS_CMYK;
		cmyk = 1;
		break;
	default:
		rc = image_fail(err, errlen, -ENOTSUP, "JPEG with %d components in an unknown colour "
		                "space is not supported", cinfo.num_components);
		goto done;
	}
	jpeg_start_decompress(&cinfo);
	if (cinfo.output_width != cinfo.image_width || cinfo.output_height != cinfo.image_height ||
	    cinfo.output_components != (cmyk ? 4 : 3)) {
		rc = image_fail(err, errlen, -EBADMSG, "unexpected JPEG output layout");
		goto done;
	}
	pixels = malloc((size_t)cinfo.output_width * cinfo.output_height * 3);
	if (cmyk)
		row = malloc((size_t)cinfo.output_width * 4);
	if (!pixels || (cmyk && !row)) {
		rc = image_fail(err, errlen, -ENOMEM, "out of memory for a %ux%u image",
		                cinfo.output_width, cinfo.output_height);
		goto done;
	}
	while (cinfo.output_scanline < cinfo.output_height) {
		uint8_t *dst = pixels + (size_t)cinfo.output_scanline * cinfo.output_width * 3;
		JSAMPROW rows[1] = { cmyk ? row : dst };
		if (jpeg_read_scanlines(&cinfo, rows, 1) != 1) {
			rc = image_fail(err, errlen, -EBADMSG, "JPEG decoding stopped early");
			goto done;
		}
		if (cmyk)
			cmyk_to_rgb(row, dst, cinfo.output_width, cinfo.saw_Adobe_marker);
	}
	jpeg_finish_decompress(&cinfo);
	out->pixels = pixels;
	out->width = (int)cinfo.output_width;
	out->height = (int)cinfo.output_height;
	pixels = NULL;
	rc = 0;
done:
	jpeg_destroy_decompress(&cinfo);
	free(row);
	free(pixels);
	return rc;
}
