/* st_dump FILE.safetensors VALUES.bin: lists the tensors of a safetensors file
 * as the C reader sees them and writes their values (converted to f32) for the
 * independent numpy check tests/reference/safetensors_check.py.
 * One line per tensor: name, dtype, shape (comma-separated, "-" for a scalar),
 * element count, and the float index of its values in VALUES.bin (-1 when the
 * dtype is not F32/F16/BF16). Exit 0, or 1 with a message. */
#include <stdio.h>
#include <stdlib.h>

#include "safetensors.h"

int main(int argc, char **argv)
{
	struct st_file *f;
	char err[512];
	if (argc != 3) {
		fprintf(stderr, "usage: st_dump FILE.safetensors VALUES.bin\n");
		return 2;
	}
	if (st_open(argv[1], &f, err, sizeof err) < 0) {
		fprintf(stderr, "st_dump: %s\n", err);
		return 1;
	}
	FILE *out = fopen(argv[2], "wb");
	if (out == NULL) {
		perror(argv[2]);
		st_free(f);
		return 1;
	}
	uint64_t at = 0;
	int rc = 0;
	for (int64_t i = 0; i < st_n_tensors(f) && rc == 0; i++) {
		const struct st_tensor *t = st_tensor(f, i);
		enum dtype dt;
		printf("%s\t%s\t", t->name, t->dtype_name);
		for (uint32_t d = 0; d < t->n_dims; d++)
			printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
		printf("%s\t%llu\t", t->n_dims ? "" : "-", (unsigned long long)t->n_elements);
		if (st_tensor_dtype(t, &dt) < 0) {
			printf("-1\n");
			continue;
		}
		printf("%llu\n", (unsigned long long)at);
		float *v = malloc((t->n_elements ? t->n_elements : 1) * sizeof *v);
		if (v == NULL || st_tensor_to_f32(t, v, t->n_elements) < 0 ||
		    fwrite(v, sizeof *v, t->n_elements, out) != t->n_elements)
			rc = 1;
		free(v);
		at += t->n_elements;
	}
	for (int64_t i = 0; i < st_n_meta(f); i++)
		printf("__metadata__\t%s\t%s\n", st_meta_key(f, i), st_meta_value(f, i));
	if (fclose(out) != 0)
		rc = 1;
	st_free(f);
	if (rc)
		fprintf(stderr, "st_dump: cannot write %s\n", argv[2]);
	return rc;
}
