/* Tokenizer: the encoding driver. Splits the input at special-token text
 * (leftmost, longest first), hands the raw fragments to the SPM or BPE
 * encoder and adds BOS/EOS. */
#include "tok-internal.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* Id of the longest special token allowed here starting at s, or -1. */
static int32_t match_special(const struct tokenizer *t, const char *s, size_t left,
                             bool parse_special, size_t *mlen)
{
	unsigned b = (unsigned char)s[0];
	for (int32_t i = t->special_start[b]; i < t->special_start[b + 1]; i++) {
		int32_t id = t->special[i];
		if (!parse_special && t->types[id] != TOK_TYPE_USER_DEFINED)
			continue;
		size_t len;
		const char *tt = tok_text(t, id, &len);
		if (len <= left && memcmp(tt, s, len) == 0) {
			*mlen = len;
			return id;
		}
	}
	return -1;
}

static int encode_raw(const struct tokenizer *t, const char *s, size_t len, bool prev_special,
                      struct tok_out *out)
{
	if (len == 0)
		return 0;
	if (t->kind == TOK_KIND_SPM)
		return tok_spm_encode(t, s, len, t->add_space_prefix && prev_special, out);
	return tok_bpe_encode(t, s, len, out);
}

int tok_encode(const struct tokenizer *t, const char *text, size_t len, bool add_special,
               bool parse_special, int32_t *ids, size_t cap, size_t *n)
{
	struct tok_out out = { .ids = ids, .cap = ids ? cap : 0, .n = 0 };
	int rc = 0;

	*n = 0;
	if (len >= (size_t)INT32_MAX / 4) /* symbol indices are int32 and SPM triples bytes */
		return -E2BIG;
	if (add_special && t->add_bos)
		tok_out_push(&out, t->bos);

	/* llama.cpp: the first fragment and every fragment after a special token
	 * get the SentencePiece space prefix. */
	bool prev_special = true;
	size_t start = 0;
	for (size_t pos = 0; pos < len;) {
		size_t mlen = 0;
		int32_t id = t->n_special ? match_special(t, text + pos, len - pos, parse_special, &mlen) : -1;
		if (id < 0) {
			pos++;
			continue;
		}
		if ((rc = encode_raw(t, text + start, pos - start, prev_special, &out)) < 0)
			return rc;
		tok_out_push(&out, id);
		prev_special = true;
		pos += mlen;
		start = pos;
	}
	if ((rc = encode_raw(t, text + start, len - start, prev_special, &out)) < 0)
		return rc;
	if (add_special && t->add_eos)
		tok_out_push(&out, t->eos);
	*n = out.n;
	return out.n > cap ? -ENOBUFS : 0;
}
