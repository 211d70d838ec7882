/* inferd-gguf-dump: prints a GGUF file's metadata (arrays abbreviated) and its
 * tensor table, or the dequantized values of one tensor.
 *
 *   inferd-gguf-dump [--full] FILE.gguf
 *   inferd-gguf-dump --tensor NAME --values FILE.gguf   (one value per line, %.9g)
 *
 * Exit codes: 0 done, 1 the file cannot be read or parsed, 2 usage error.
 */
#include "dtype.h"
#include "gguf.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARR_SHOWN 8

static void print_str(const char *s, size_t len)
{
	putchar('"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_arr(const struct gguf_arr *a, bool full)
{
	uint64_t n = gguf_arr_len(a);
	uint64_t shown = full || n <= ARR_SHOWN ? n : ARR_SHOWN;
	enum gguf_vtype t = gguf_arr_type(a);
	printf("[%s x %" PRIu64 "] [", gguf_vtype_name(t), n);
	for (uint64_t i = 0; i < shown; i++) {
		if (i)
			printf(", ");
		const char *s;
		size_t len;
		int64_t iv;
		uint64_t uv;
		double d;
		const struct gguf_arr *sub;
		if (gguf_arr_get_str(a, i, &s, &len) == 0)
			print_str(s, len);
		else if (gguf_arr_get_uint(a, i, &uv) == 0)
			printf("%" PRIu64, uv);
		else if (gguf_arr_get_int(a, i, &iv) == 0 && t == GGUF_VTYPE_BOOL)
			printf("%s", iv ? "true" : "false");
		else if (gguf_arr_get_int(a, i, &iv) == 0)
			printf("%" PRId64, iv);
		else if (gguf_arr_get_float(a, i, &d) == 0)
			printf("%.9g", d);
		else if (gguf_arr_sub(a, i, &sub) == 0)
			print_arr(sub, full);
	}
	printf(shown < n ? ", ...]" : "]");
}

static void print_kv(const struct gguf *g, int64_t k, bool full)
{
	enum gguf_vtype t = gguf_kv_type(g, k);
	const char *s;
	size_t len;
	int64_t iv;
	uint64_t uv;
	double d;
	const struct gguf_arr *a;

	printf("  %-44s %-8s ", gguf_kv_key(g, k), gguf_vtype_name(t));
	if (t == GGUF_VTYPE_BOOL && gguf_kv_get_int(g, k, &iv) == 0)
		printf("%s", iv ? "true" : "false");
	else if (gguf_kv_get_uint(g, k, &uv) == 0)
		printf("%" PRIu64, uv);
	else if (gguf_kv_get_int(g, k, &iv) == 0)
		printf("%" PRId64, iv);
	else if (gguf_kv_get_float(g, k, &d) == 0)
		printf("%.9g", d);
	else if (gguf_kv_get_str(g, k, &s, &len) == 0)
		print_str(s, len);
	else if (gguf_kv_get_arr(g, k, &a) == 0)
		print_arr(a, full);
	putchar('\n');
}

static void dump(const struct gguf *g, const char *path, bool full)
{
	printf("%s: GGUF v%u, %" PRIu64 " bytes, alignment %u, data at %" PRIu64 "\n", path,
	       gguf_version(g), gguf_file_size(g), gguf_alignment(g), gguf_data_offset(g));
	printf("metadata (%" PRId64 " keys):\n", gguf_n_kv(g));
	for (int64_t k = 0; k < gguf_n_kv(g); k++)
		print_kv(g, k, full);
	printf("tensors (%" PRId64 "):\n", gguf_n_tensors(g));
	printf("  %-5s %-40s %-6s %-24s %12s %12s\n", "#", "name", "type", "ne", "offset", "bytes");
	for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
		const struct gguf_tensor_info *t = gguf_tensor(g, i);
		char shape[96];
		int o = 0;
		for (uint32_t d = 0; d < t->n_dims && o < (int)sizeof shape; d++)
			o += snprintf(shape + o, sizeof shape - (size_t)o, d ? " x %" PRId64 : "%" PRId64,
			              t->ne[d]);
		printf("  %-5" PRId64 " %-40s %-6s %-24s %12" PRIu64 " %12" PRIu64 "\n", i, t->name,
		       dtype_name(t->type), shape, gguf_data_offset(g) + t->offset, t->nbytes);
	}
}

static int print_values(const struct gguf *g, const char *name)
{
	const struct gguf_tensor_info *t = gguf_get_tensor(g, name);
	if (t == NULL) {
		fprintf(stderr, "inferd-gguf-dump: no tensor named '%s'\n", name);
		return 1;
	}
	if (!dtype_can_dequant(t->type)) {
		fprintf(stderr, "inferd-gguf-dump: tensor '%s': cannot dequantize type %s\n", name,
		        dtype_name(t->type));
		return 1;
	}
	int64_t ne0 = t->ne[0];
	uint64_t rows = ne0 ? t->n_elements / (uint64_t)ne0 : 0, row_bytes;
	float *row = malloc((size_t)(ne0 ? ne0 : 1) * sizeof *row);
	if (row == NULL || dtype_row_size(t->type, ne0, &row_bytes) < 0) {
		free(row);
		fprintf(stderr, "inferd-gguf-dump: out of memory\n");
		return 1;
	}
	for (uint64_t r = 0; r < rows; r++) {
		dtype_dequant_row(t->type, (const uint8_t *)t->data + r * row_bytes, row, ne0);
		for (int64_t i = 0; i < ne0; i++)
			printf("%.9g\n", row[i]);
	}
	free(row);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: inferd-gguf-dump [--full] FILE.gguf\n"
	           "       inferd-gguf-dump --tensor NAME --values FILE.gguf\n");
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "tensor", required_argument, NULL, 't' },
		{ "values", no_argument, NULL, 'v' },
		{ "full", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *tensor = NULL;
	bool values = false, full = false;
	int c;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 't': tensor = optarg; break;
		case 'v': values = true; break;
		case 'f': full = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1 || (values && tensor == NULL)) {
		usage(stderr);
		return 2;
	}
	const char *path = argv[optind];
	struct gguf *g;
	char err[512];
	if (gguf_open(path, &g, err, sizeof err) < 0) {
		fprintf(stderr, "inferd-gguf-dump: %s\n", err);
		return 1;
	}
	int rc = 0;
	if (tensor && values)
		rc = print_values(g, tensor);
	else if (tensor) {
		const struct gguf_tensor_info *t = gguf_get_tensor(g, tensor);
		if (t == NULL) {
			fprintf(stderr, "inferd-gguf-dump: no tensor named '%s'\n", tensor);
			rc = 1;
		} else {
			printf("%s %s", t->name, dtype_name(t->type));
			for (uint32_t d = 0; d < t->n_dims; d++)
				printf(" %" PRId64, t->ne[d]);
			printf("\n");
		}
	} else
		dump(g, path, full);
	gguf_free(g);
	return rc;
}
