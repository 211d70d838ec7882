/* Shared between clip_tokenizer.c and clip_tok_norm.c. */
#ifndef INFERD_ENGINE_CLIP_TOK_INTERNAL_H
#define INFERD_ENGINE_CLIP_TOK_INTERNAL_H

#include <stddef.h>

/* CLIP's text clean-up: invalid UTF-8 -> U+FFFD, simple lower-case mapping, runs of Unicode
 * White_Space -> one ' ', ends stripped. *out is valid UTF-8, NUL-terminated, free() it.
 * @return 0 or -ENOMEM. */
int clip_tok_normalize(const char *text, size_t len, char **out, size_t *out_len);

/* GPT-2's byte-to-unicode character of byte b, UTF-8 into s (>= 2 bytes); returns its length. */
size_t clip_byte_char(int b, char *s);

#endif
