/* Helpers shared by the engine tests: a little-endian byte builder for
 * hand-made GGUF files and a runner for inferd-mkmodel. */
#ifndef INFERD_TEST_ENGINE_UTIL_H
#define INFERD_TEST_ENGINE_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

struct tbuf {
	uint8_t *p;
	size_t len, cap;
};

static inline void tb_raw(struct tbuf *b, const void *src, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL)
			abort(); /* test code: out of memory ends the test */
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

static inline void tb_le(struct tbuf *b, uint64_t v, int n)
{
	uint8_t t[8];
	for (int i = 0; i < n; i++)
		t[i] = (uint8_t)(v >> (8 * i));
	tb_raw(b, t, (size_t)n);
}

static inline void tb_u8(struct tbuf *b, uint8_t v) { tb_le(b, v, 1); }
static inline void tb_u16(struct tbuf *b, uint16_t v) { tb_le(b, v, 2); }
static inline void tb_u32(struct tbuf *b, uint32_t v) { tb_le(b, v, 4); }
static inline void tb_u64(struct tbuf *b, uint64_t v) { tb_le(b, v, 8); }

static inline void tb_f32(struct tbuf *b, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	tb_u32(b, u);
}

static inline void tb_f64(struct tbuf *b, double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	tb_u64(b, u);
}

static inline void tb_str(struct tbuf *b, const char *s)
{
	tb_u64(b, strlen(s));
	tb_raw(b, s, strlen(s));
}

static inline void tb_key(struct tbuf *b, const char *key, enum gguf_vtype t)
{
	tb_str(b, key);
	tb_u32(b, t);
}

static inline void tb_free(struct tbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

#endif
