/* The CLIP text tokenizer of Stable Diffusion: byte-level BPE with CLIP's rules, read from a
 * diffusers `tokenizer/` folder (vocab.json + merges.txt).
 *
 * Encoding a prompt:
 *  1. invalid UTF-8 replaced by U+FFFD; canonical composition of adjacent pairs (NFC's
 *     composition step: "e" + U+0301 -> U+00E9, Hangul jamo -> syllables); lower-case (simple
 *     one-to-one case mapping of Latin, Greek, Cyrillic, Armenian, fullwidth and circled
 *     letters, Roman numerals);
 *  2. runs of Unicode White_Space collapsed to one space, ends stripped;
 *  3. the special-token texts <|startoftext|> and <|endoftext|> (after lower-casing) are split
 *     out as their tokens (HF's added-token matching); the text between them is cut into words
 *     by CLIP's pre-tokenizer regex (PCRE2, UTF + UCP):
 *     <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 *  4. each word's bytes mapped to GPT-2's byte-to-unicode characters, the last symbol
 *     carrying the end-of-word suffix "</w>", then adjacent pairs merged by merge rank
 *     (lowest first, leftmost on ties);
 *  5. <|startoftext|>, the tokens (at most n_ctx - 2), <|endoftext|>, then the pad id up to
 *     n_ctx (77 for SD). SD 1.x pads with <|endoftext|>, SD 2.x with "!" (id 0).
 *
 * Not done (differences from HF `tokenizers`' CLIP normalizer): NFC's reordering of combining
 * marks and composition across an intervening mark (a base followed by two marks composes only
 * with the first), simple case mapping only (U+0130 gives "i", a word-final capital
 * sigma gives U+03C3), capitals of other scripts are kept.
 *
 * Conventions: functions return 0 or a negative errno code; constructors write a one-line
 * reason into err. A tokenizer is immutable after creation and may be shared by threads.
 */
#ifndef INFERD_ENGINE_CLIP_TOKENIZER_H
#define INFERD_ENGINE_CLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define CLIP_TOK_N_CTX 77 /* SD 1.x/2.x text context */

struct clip_tokenizer; /* opaque */

/* Loads FOLDER/vocab.json and FOLDER/merges.txt (or the two given files).
 * @return 0 and *out (free with clip_tok_free()), -ENOENT/-EIO (unreadable file), -EINVAL
 * (malformed JSON, a merge whose parts or result are not in the vocabulary, no special tokens),
 * -ENOMEM; err (may be NULL) gets a reason. */
int clip_tok_new(const char *vocab_path, const char *merges_path, struct clip_tokenizer **out,
                 char *err, size_t errlen);
int clip_tok_new_from_folder(const char *folder, struct clip_tokenizer **out, char *err,
                             size_t errlen);
/* Same from memory: vocab_json is the JSON text, merges the merges.txt text (first line
 * "#version..." skipped when present). */
int clip_tok_new_from_memory(const char *vocab_json, size_t vocab_len, const char *merges,
                             size_t merges_len, struct clip_tokenizer **out, char *err,
                             size_t errlen);
void clip_tok_free(struct clip_tokenizer *t); /* accepts NULL */

int32_t clip_tok_vocab_size(const struct clip_tokenizer *t); /* largest id + 1 */
int32_t clip_tok_bos(const struct clip_tokenizer *t);        /* <|startoftext|> */
int32_t clip_tok_eos(const struct clip_tokenizer *t);        /* <|endoftext|> */
/* Id of the vocabulary entry spelled text[0..len) (byte-mapped form), or -1. */
int32_t clip_tok_lookup(const struct clip_tokenizer *t, const char *text, size_t len);

/* Tokens of text without BOS/EOS: writes up to cap ids, *n_out = total number of tokens (may
 * exceed cap: only the first cap are written). Time O(n log n) in the longest word.
 * @return 0, -EINVAL (NULL), -ENOMEM, -E2BIG (text over 500 MB). */
int clip_tok_encode_raw(const struct clip_tokenizer *t, const char *text, size_t len,
                        int32_t *ids, size_t cap, size_t *n_out);

/* A prompt as the text encoder takes it: ids (n_ctx) = BOS, tokens truncated to n_ctx - 2, EOS,
 * pad_id to the end. *n_used (may be NULL) = BOS + tokens + EOS, the position of EOS + 1.
 * @return 0, -EINVAL (n_ctx < 2, pad_id out of the vocabulary), -ENOMEM, -E2BIG. */
int clip_tok_encode(const struct clip_tokenizer *t, const char *text, size_t len, int32_t pad_id,
                    int32_t *ids, int n_ctx, int *n_used);

#endif
