/* Tokenizers read from a GGUF file's tokenizer.ggml.* keys.
 *
 *  - "llama": SentencePiece-style BPE (llama.cpp's SPM algorithm): the text is
 *    split into UTF-8 characters, ' ' becomes U+2581 (with a U+2581 prefix when
 *    add_space_prefix, true by default), and the adjacent pair whose
 *    concatenation is a token with the highest score is merged until none is
 *    left; characters that are no token fall back to <0xXX> byte tokens, or to
 *    the unknown token when the vocabulary has no byte tokens.
 *  - "gpt2": byte-level BPE: a pre-tokenizer regex (PCRE2, UTF + UCP) chosen by
 *    tokenizer.ggml.pre (default/gpt2, llama-bpe, qwen2) splits the text into
 *    words; each word's bytes are merged by merge rank.
 *
 * Special tokens: control, unknown and user-defined tokens found in the text
 * (leftmost, longest first) are emitted as themselves; control and unknown
 * ones only with parse_special, user-defined ones always (as llama.cpp does).
 * Invalid UTF-8 never fails: SPM takes each invalid byte as one character
 * (byte fallback gives it back exactly), BPE tokenizes it as bytes.
 *
 * Conventions: functions return 0 or a negative errno code. A tokenizer is
 * immutable after tok_new_from_gguf() and may be used by many threads at once;
 * it does not refer to the gguf afterwards.
 */
#ifndef INFERD_ENGINE_TOKENIZER_H
#define INFERD_ENGINE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf;
struct tokenizer; /* opaque */

enum tok_kind {
	TOK_KIND_SPM = 1, /* tokenizer.ggml.model "llama" */
	TOK_KIND_BPE = 2, /* tokenizer.ggml.model "gpt2" */
};

/* tokenizer.ggml.token_type values (llama.cpp's numbering). */
enum tok_type {
	TOK_TYPE_UNDEFINED = 0,
	TOK_TYPE_NORMAL = 1,
	TOK_TYPE_UNKNOWN = 2,
	TOK_TYPE_CONTROL = 3,
	TOK_TYPE_USER_DEFINED = 4,
	TOK_TYPE_UNUSED = 5,
	TOK_TYPE_BYTE = 6,
};

/* Reads the tokenizer of g.
 * @return 0 and *out (free with tok_free()), or -EINVAL (missing or malformed
 * keys, unknown model or pre-tokenizer), -ENOTSUP, -ENOMEM, with a one-line
 * reason in err (when err is not NULL). */
int tok_new_from_gguf(const struct gguf *g, struct tokenizer **out, char *err, size_t errlen);

/* Frees t; accepts NULL. */
void tok_free(struct tokenizer *t);

enum tok_kind tok_kind(const struct tokenizer *t);
int32_t tok_vocab_size(const struct tokenizer *t);
/* Special ids, -1 when the vocabulary has none. */
int32_t tok_bos(const struct tokenizer *t);
int32_t tok_eos(const struct tokenizer *t);
int32_t tok_eot(const struct tokenizer *t);
int32_t tok_unk(const struct tokenizer *t);
int32_t tok_pad(const struct tokenizer *t);
/* Whether generation ends at id: eos, eot, eom and well-known end-of-turn
 * control tokens (<|eot_id|>, <|im_end|>, <|endoftext|>, <end_of_turn>...). */
bool tok_is_eog(const struct tokenizer *t, int32_t id);
bool tok_add_bos(const struct tokenizer *t);
bool tok_add_eos(const struct tokenizer *t);

/* The token's text as stored in the vocabulary (U+2581 / byte-mapped form),
 * NUL-terminated, owned by t; NULL when id is out of range. len may be NULL. */
const char *tok_token_text(const struct tokenizer *t, int32_t id, size_t *len);
enum tok_type tok_token_type(const struct tokenizer *t, int32_t id);
/* Id of the token whose vocabulary text is exactly text[0..len), or -1. */
int32_t tok_lookup(const struct tokenizer *t, const char *text, size_t len);

/* Encodes len bytes of text. add_special adds BOS/EOS as the vocabulary asks
 * (tokenizer.ggml.add_bos_token / add_eos_token); parse_special matches
 * control-token text in the input as those tokens.
 * Writes at most cap ids and sets *n to the number of ids of the whole
 * encoding. @return 0, -ENOBUFS when *n > cap (ids holds the first cap ids:
 * call again with a bigger array), -E2BIG for texts of 2 GiB or more, -ENOMEM. */
int tok_encode(const struct tokenizer *t, const char *text, size_t len, bool add_special,
               bool parse_special, int32_t *ids, size_t cap, size_t *n);

/* ---- decoding --------------------------------------------------------------------- */

enum tok_decode_flags {
	/* Render control tokens (BOS, EOS...) as their text instead of nothing. */
	TOK_DECODE_SPECIAL = 1 << 0,
	/* The ids start a sequence: drop the space SentencePiece put before the first
	 * word (SPM with add_space_prefix only). */
	TOK_DECODE_STRIP_LEADING = 1 << 1,
};

/* The bytes token id stands for (SPM: U+2581 -> ' ', <0xXX> -> the byte; BPE:
 * the inverse byte mapping); control tokens give "" unless TOK_DECODE_SPECIAL.
 * Owned by t, not NUL-terminated; NULL for an id out of range. */
const char *tok_token_piece(const struct tokenizer *t, int32_t id, unsigned flags, size_t *len);

/* Decodes n ids into out (no NUL added). *len is the byte length of the whole
 * text; @return 0, -ENOBUFS when *len > cap, -EINVAL for an id out of range.
 * The result is raw bytes: byte tokens may form invalid UTF-8. */
int tok_decode(const struct tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
               char *out, size_t cap, size_t *len);

/* Incremental detokenizer for streaming: fed one token at a time, it hands out
 * only complete, valid UTF-8. An incomplete multi-byte tail is held back until
 * the next token completes it; bytes that can never form a valid sequence come
 * out as U+FFFD, so every piece is valid UTF-8 on its own. */
struct tok_stream;

/* @return a stream (free with tok_stream_free()) or NULL on ENOMEM. t must
 * outlive it. flags: enum tok_decode_flags. */
struct tok_stream *tok_stream_new(const struct tokenizer *t, unsigned flags);
void tok_stream_free(struct tok_stream *s);
/* Forgets held bytes and starts a new sequence with the same flags. */
void tok_stream_reset(struct tok_stream *s);
/* Feeds one id: *text / *len is the text now complete (possibly empty), valid
 * until the next call on s. @return 0, -EINVAL for an id out of range, -ENOMEM. */
int tok_stream_feed(struct tok_stream *s, int32_t id, const char **text, size_t *len);
/* End of the sequence: the held-back tail comes out as U+FFFD. */
int tok_stream_flush(struct tok_stream *s, const char **text, size_t *len);
/* Bytes held back right now (0..3). */
size_t tok_stream_pending(const struct tok_stream *s);

#endif
