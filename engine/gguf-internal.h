/* Private structures shared by gguf.c (parsing) and gguf_get.c (lookups). */
#ifndef INFERD_ENGINE_GGUF_INTERNAL_H
#define INFERD_ENGINE_GGUF_INTERNAL_H

#include "gguf.h"

struct gguf_arr {
	uint32_t type;         /* element type, enum gguf_vtype */
	uint64_t n;            /* element count */
	const uint8_t *data;   /* first element in place (numeric/bool), first length prefix (string) */
	uint64_t *str_off;     /* strings: offset of element i's length prefix from data; n entries */
	struct gguf_arr *sub;  /* nested arrays: n views */
};

struct gguf_kv {
	char *key;             /* NUL-terminated copy */
	size_t key_len;
	uint32_t type;         /* enum gguf_vtype */
	const uint8_t *val;    /* scalars: value bytes in place; strings: string bytes in place */
	uint64_t len;          /* strings: byte length */
	char *str;             /* strings: NUL-terminated copy */
	struct gguf_arr arr;   /* arrays */
};

/* Open-addressing hash index over names; slots hold index + 1, 0 = empty. */
struct gguf_index {
	int64_t *slots;
	uint64_t mask;         /* capacity - 1, capacity a power of two */
};

struct gguf {
	const uint8_t *base;   /* the whole file */
	size_t size;
	bool mapped;           /* base came from mmap (gguf_open) */
	uint32_t version;
	uint32_t alignment;
	uint64_t data_offset;
	int64_t n_kv;
	struct gguf_kv *kv;
	int64_t n_tensors;
	struct gguf_tensor_info *tensors; /* names are malloc'd, owned here */
	struct gguf_index kv_index;
	struct gguf_index tensor_index;
};

uint64_t gguf_hash(const char *s, size_t len);
/* An empty index for n entries; -ENOMEM. Freed with free(ix->slots). */
int gguf_index_init(struct gguf_index *ix, int64_t n);
/* Inserts entry idx named s; -EEXIST when the name is already present. */
int gguf_index_add(struct gguf_index *ix, const char *s, size_t len, int64_t idx,
                   const char *(*name_of)(const struct gguf *, int64_t, size_t *),
                   const struct gguf *g);
/* Slot lookup: index of the entry named s (len bytes), or -1. name_of returns an entry's name. */
int64_t gguf_index_find(const struct gguf_index *ix, const char *s, size_t len,
                        const char *(*name_of)(const struct gguf *, int64_t, size_t *),
                        const struct gguf *g);

/* Byte size of a fixed-size value type; 0 for STRING, ARRAY or an invalid type. */
size_t gguf_vtype_size(uint32_t t);

#endif
