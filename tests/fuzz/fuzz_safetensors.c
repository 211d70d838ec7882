/* libFuzzer target: st_open_memory() on arbitrary bytes must return cleanly (0
 * or a negative code with a message) and, when it accepts the input, every
 * tensor's bytes must lie inside it, names must be found again, and F32/F16/
 * BF16 tensors must convert.
 *   ./fuzz_safetensors -max_total_time=60 corpus/ */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size heap copy so that ASan catches any read past the end */
	uint8_t *copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	struct st_file *f = NULL;
	char err[256];
	if (st_open_memory(copy, size, "fuzz", &f, err, sizeof err) == 0) {
		for (int64_t i = 0; i < st_n_tensors(f); i++) {
			const struct st_tensor *t = st_tensor(f, i);
			if (st_find(f, t->name) != i)
				abort();
			if (t->nbytes) {
				const uint8_t *p = t->data;
				if (p < copy || p + t->nbytes > copy + size)
					abort();
				sink += p[0] + p[t->nbytes - 1];
			}
			enum dtype dt;
			if (st_tensor_dtype(t, &dt) == 0 && t->n_elements <= 4096) {
				float v[4096];
				if (st_tensor_to_f32(t, v, 4096) != 0)
					abort();
				sink += (uint64_t)(v[0] == v[0]);
			}
		}
		for (int64_t i = 0; i < st_n_meta(f); i++)
			sink += strlen(st_meta_key(f, i)) + strlen(st_meta_value(f, i));
		st_free(f);
	} else if (err[0] == '\0') {
		abort(); /* a failure must say why */
	}
	free(copy);
	return 0;
}
