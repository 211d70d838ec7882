/* GGUF reader: the open-addressing hash index over metadata keys and tensor
 * names (FNV-1a, linear probing, at most half full). Lookups cost O(1) so that
 * duplicate detection stays linear even for files with very many entries. */
#include "gguf-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t gguf_hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

int gguf_index_init(struct gguf_index *ix, int64_t n)
{
	uint64_t cap = 8;
	while (cap < (uint64_t)n * 2)
		cap <<= 1;
	ix->slots = calloc(cap, sizeof *ix->slots);
	if (ix->slots == NULL)
		return -ENOMEM;
	ix->mask = cap - 1;
	return 0;
}

int64_t gguf_index_find(const struct gguf_index *ix, const char *s, size_t len,
                        const char *(*name_of)(const struct gguf *, int64_t, size_t *),
                        const struct gguf *g)
{
	if (ix->slots == NULL)
		return -1;
	for (uint64_t h = gguf_hash(s, len) & ix->mask;; h = (h + 1) & ix->mask) {
		int64_t v = ix->slots[h];
		if (v == 0)
			return -1;
		size_t nl;
		const char *nm = name_of(g, v - 1, &nl);
		if (nl == len && memcmp(nm, s, len) == 0)
			return v - 1;
	}
}

/* Inserts entry idx; -EEXIST when the name is already present. */
int gguf_index_add(struct gguf_index *ix, const char *s, size_t len, int64_t idx,
                     const char *(*name_of)(const struct gguf *, int64_t, size_t *),
                     const struct gguf *g)
{
	if (gguf_index_find(ix, s, len, name_of, g) >= 0)
		return -EEXIST;
	uint64_t h = gguf_hash(s, len) & ix->mask;
	while (ix->slots[h] != 0)
		h = (h + 1) & ix->mask;
	ix->slots[h] = idx + 1;
	return 0;
}

