/* libFuzzer target: gguf_open_memory() on arbitrary bytes must return cleanly
 * (0 or a negative code with a message) and, when it accepts the input, every
 * getter and every tensor's data must stay inside it.
 *   ./fuzz_gguf -max_total_time=60 corpus/ */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void walk_arr(const struct gguf_arr *a, int depth)
{
	for (uint64_t i = 0; i < gguf_arr_len(a) && i < 64; i++) {
		const char *s;
		size_t len;
		int64_t iv;
		double d;
		const struct gguf_arr *sub;
		if (gguf_arr_get_str(a, i, &s, &len) == 0 && len)
			sink += (uint8_t)s[len - 1];
		if (gguf_arr_get_int(a, i, &iv) == 0)
			sink += (uint64_t)iv;
		if (gguf_arr_get_float(a, i, &d) == 0)
			sink += (uint64_t)(d == d);
		if (depth < 8 && gguf_arr_sub(a, i, &sub) == 0)
			walk_arr(sub, depth + 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size heap copy so that ASan catches any read past the end */
	uint8_t *copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	struct gguf *g = NULL;
	char err[256];
	if (gguf_open_memory(copy, size, "fuzz", &g, err, sizeof err) == 0) {
		for (int64_t k = 0; k < gguf_n_kv(g); k++) {
			const char *s;
			size_t len;
			uint64_t u;
			const struct gguf_arr *a;
			sink += strlen(gguf_kv_key(g, k));
			if (gguf_kv_get_str(g, k, &s, &len) == 0)
				sink += strlen(s);
			if (gguf_kv_get_uint(g, k, &u) == 0)
				sink += u;
			if (gguf_kv_get_arr(g, k, &a) == 0)
				walk_arr(a, 0);
		}
		for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
			const struct gguf_tensor_info *t = gguf_tensor(g, i);
			if (gguf_find_tensor(g, t->name) != i)
				abort();
			if (t->nbytes) /* touch the first and last byte */
				sink += ((const uint8_t *)t->data)[0] +
				        ((const uint8_t *)t->data)[t->nbytes - 1];
		}
		gguf_free(g);
	} else if (err[0] == '\0') {
		abort(); /* a failure must say why */
	}
	free(copy);
	return 0;
}
