/* CLIP byte-level BPE tokenizer: loading (vocab.json, merges.txt). Encoding is in
 * clip_tok_encode.c, text normalization in clip_tok_norm.c. See clip_tokenizer.h. */
#include "clip_tokenizer.h"
#include "clip_tok-internal.h"
#include "diff-internal.h"

#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char clip_pattern[] =
	"<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]"
	"|[^\\s\\p{L}\\p{N}]+";

/* ---- hash tables ------------------------------------------------------------------------ */

static uint64_t fnv1a(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

int32_t clip_tok_lookup(const struct clip_tokenizer *t, const char *s, size_t n)
{
	if (t == NULL || s == NULL)
		return -1;
	size_t mask = t->str_cap - 1;
	for (size_t i = fnv1a(s, n) & mask;; i = (i + 1) & mask) {
		int32_t id = t->str_tab[i];
		if (id < 0)
			return -1;
		if (t->text_len[id] == n && memcmp(t->text[id], s, n) == 0)
			return id;
	}
}

static void str_insert(struct clip_tokenizer *t, int32_t id)
{
	size_t mask = t->str_cap - 1;
	size_t i = fnv1a(t->text[id], t->text_len[id]) & mask;
	while (t->str_tab[i] >= 0)
		i = (i + 1) & mask;
	t->str_tab[i] = id;
}

static size_t pow2_at_least(size_t n)
{
	size_t c = 16;
	while (c < n)
		c *= 2;
	return c;
}

/* ---- loading ---------------------------------------------------------------------------- */

static int load_vocab(struct clip_tokenizer *t, const char *js, size_t len, char *err,
                      size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_loadb(js, len, 0, &jerr);
	int rc = -EINVAL;
	if (root == NULL) {
		diff_set_err(err, errlen, "vocab.json: line %d: %s", jerr.line, jerr.text);
		return -EINVAL;
	}
	if (!json_is_object(root) || json_object_size(root) == 0) {
		diff_set_err(err, errlen, "vocab.json: not a non-empty object of token: id");
		goto cleanup;
	}
	const char *key;
	json_t *val;
	int64_t max_id = -1;
	json_object_foreach(root, key, val) {
		if (!json_is_integer(val) || json_integer_value(val) < 0 ||
		    json_integer_value(val) >= (1 << 24)) {
			diff_set_err(err, errlen, "vocab.json: token \"%.40s\": id not an integer in [0, 2^24)",
			        key);
			goto cleanup;
		}
		if (json_integer_value(val) > max_id)
			max_id = json_integer_value(val);
	}
	t->n_vocab = (int32_t)max_id + 1;
	t->text = calloc((size_t)t->n_vocab, sizeof *t->text);
	t->text_len = calloc((size_t)t->n_vocab, sizeof *t->text_len);
	t->str_cap = pow2_at_least(2 * (size_t)t->n_vocab);
	t->str_tab = malloc(t->str_cap * sizeof *t->str_tab);
	if (t->text == NULL || t->text_len == NULL || t->str_tab == NULL) {
		rc = -ENOMEM;
		goto cleanup;
	}
	memset(t->str_tab, 0xff, t->str_cap * sizeof *t->str_tab);
	json_object_foreach(root, key, val) {
		int32_t id = (int32_t)json_integer_value(val);
		size_t n = strlen(key);
		if (t->text[id] != NULL) {
			diff_set_err(err, errlen, "vocab.json: id %d given to two tokens", id);
			goto cleanup;
		}
		if (clip_tok_lookup(t, key, n) >= 0) {
			diff_set_err(err, errlen, "vocab.json: token \"%.40s\" twice", key);
			goto cleanup;
		}
		t->text[id] = malloc(n + 1);
		if (t->text[id] == NULL) {
			rc = -ENOMEM;
			goto cleanup;
		}
		memcpy(t->text[id], key, n + 1);
		t->text_len[id] = n;
		str_insert(t, id);
	}
	rc = 0;
cleanup:
	json_decref(root);
	return rc;
}

static int load_merges(struct clip_tokenizer *t, const char *m, size_t len, char *err,
                       size_t errlen)
{
	size_t n_lines = 1;
	for (size_t i = 0; i < len; i++)
		n_lines += m[i] == '\n';
	t->pair_cap = pow2_at_least(2 * n_lines);
	t->pair_key = calloc(t->pair_cap, sizeof *t->pair_key);
	t->pair_rank = malloc(t->pair_cap * sizeof *t->pair_rank);
	t->pair_id = malloc(t->pair_cap * sizeof *t->pair_id);
	if (t->pair_key == NULL || t->pair_rank == NULL || t->pair_id == NULL)
		return -ENOMEM;

	char buf[1024];
	int32_t rank = 0;
	size_t line_no = 0;
	for (size_t p = 0; p < len;) {
		size_t e = p;
		while (e < len && m[e] != '\n')
			e++;
		size_t n = e - p;
		const char *line = m + p;
		p = e + 1;
		line_no++;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n == 0 || (line_no == 1 && n >= 8 && memcmp(line, "#version", 8) == 0))
			continue;
		const char *sp = memchr(line, ' ', n);
		if (sp == NULL || sp == line || sp == line + n - 1 || n >= sizeof buf) {
			diff_set_err(err, errlen, "merges.txt: line %zu: not \"left right\"", line_no);
			return -EINVAL;
		}
		size_t nl = (size_t)(sp - line), nr = n - nl - 1;
		int32_t a = clip_tok_lookup(t, line, nl), b = clip_tok_lookup(t, sp + 1, nr);
		memcpy(buf, line, nl);
		memcpy(buf + nl, sp + 1, nr);
		int32_t ab = clip_tok_lookup(t, buf, nl + nr);
		if (a < 0 || b < 0 || ab < 0) {
			diff_set_err(err, errlen, "merges.txt: line %zu: \"%.*s\" not in the vocabulary",
			        line_no, (int)(n < 80 ? n : 80), line);
			return -EINVAL;
		}
		size_t s = clip_pair_slot(t, a, b);
		if (t->pair_key[s] != 0)
			continue; /* a repeated merge keeps its first rank */
		t->pair_key[s] = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
		t->pair_rank[s] = rank++;
		t->pair_id[s] = ab;
	}
	return 0;
}

static int finish_load(struct clip_tokenizer *t, char *err, size_t errlen)
{
	static const char bos[] = "<|startoftext|>", eos[] = "<|endoftext|>";
	t->bos = clip_tok_lookup(t, bos, sizeof bos - 1);
	t->eos = clip_tok_lookup(t, eos, sizeof eos - 1);
	if (t->bos < 0 || t->eos < 0) {
		diff_set_err(err, errlen, "vocab.json: no %s token", t->bos < 0 ? bos : eos);
		return -EINVAL;
	}
	for (int b = 0; b < 256; b++) {
		char s[8];
		size_t n = clip_byte_char(b, s);
		t->byte_id[b] = clip_tok_lookup(t, s, n);
		memcpy(s + n, "</w>", 4);
		t->byte_eow_id[b] = clip_tok_lookup(t, s, n + 4);
	}
	int ec;
	PCRE2_SIZE eo;
	t->re = pcre2_compile((PCRE2_SPTR)clip_pattern, PCRE2_ZERO_TERMINATED,
	                      PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
	if (t->re == NULL) {
		diff_set_err(err, errlen, "clip tokenizer: PCRE2 refused the pattern (error %d)", ec);
		return -EINVAL;
	}
	pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* optional: else the interpreter */
	return 0;
}

int clip_tok_new_from_memory(const char *vocab_json, size_t vocab_len, const char *merges,
                             size_t merges_len, struct clip_tokenizer **out, char *err,
                             size_t errlen)
{
	if (out == NULL || vocab_json == NULL || (merges == NULL && merges_len > 0))
		return -EINVAL;
	*out = NULL;
	struct clip_tokenizer *t = calloc(1, sizeof *t);
	int rc = -ENOMEM;
	if (t == NULL)
		goto fail;
	rc = load_vocab(t, vocab_json, vocab_len, err, errlen);
	if (rc == 0)
		rc = load_merges(t, merges, merges_len, err, errlen);
	if (rc == 0)
		rc = finish_load(t, err, errlen);
	if (rc != 0)
		goto fail;
	*out = t;
	return 0;
fail:
	if (rc == -ENOMEM)
		diff_set_err(err, errlen, "clip tokenizer: out of memory");
	clip_tok_free(t);
	return rc;
}

static int read_file(const char *path, char **data, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	int rc = -EIO;
	*data = NULL;
	if (f == NULL) {
		rc = -errno;
		diff_set_err(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf != NULL) {
		n += fread(buf + n, 1, cap - n, f);
		if (n < cap)
			break;
		char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
		if (nb == NULL) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = nb;
		cap *= 2;
	}
	if (buf == NULL) {
		rc = -ENOMEM;
		diff_set_err(err, errlen, "%s: out of memory", path);
	} else if (ferror(f)) {
		diff_set_err(err, errlen, "%s: read error", path);
		free(buf);
	} else {
		*data = buf;
		*len = n;
		rc = 0;
	}
	fclose(f);
	return rc;
}

int clip_tok_new(const char *vocab_path, const char *merges_path, struct clip_tokenizer **out,
                 char *err, size_t errlen)
{
	char *v = NULL, *m = NULL;
	size_t vn = 0, mn = 0;
	if (vocab_path == NULL || merges_path == NULL || out == NULL)
		return -EINVAL;
	int rc = read_file(vocab_path, &v, &vn, err, errlen);
	if (rc == 0)
		rc = read_file(merges_path, &m, &mn, err, errlen);
	if (rc == 0)
		rc = clip_tok_new_from_memory(v, vn, m, mn, out, err, errlen);
	free(v);
	free(m);
	return rc;
}

int clip_tok_new_from_folder(const char *folder, struct clip_tokenizer **out, char *err,
                             size_t errlen)
{
	char vp[4096], mp[4096];
	if (folder == NULL)
		return -EINVAL;
	if ((size_t)snprintf(vp, sizeof vp, "%s/vocab.json", folder) >= sizeof vp ||
	    (size_t)snprintf(mp, sizeof mp, "%s/merges.txt", folder) >= sizeof mp) {
		diff_set_err(err, errlen, "%.64s...: path too long", folder);
		return -ENAMETOOLONG;
	}
	return clip_tok_new(vp, mp, out, err, errlen);
}

void clip_tok_free(struct clip_tokenizer *t)
{
	if (t == NULL)
		return;
	if (t->text != NULL)
		for (int32_t i = 0; i < t->n_vocab; i++)
			free(t->text[i]);
	free(t->text);
	free(t->text_len);
	free(t->str_tab);
	free(t->pair_key);
	free(t->pair_rank);
	free(t->pair_id);
	pcre2_code_free(t->re);
	free(t);
}

int32_t clip_tok_vocab_size(const struct clip_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t clip_tok_bos(const struct clip_tokenizer *t) { return t ? t->bos : -1; }
int32_t clip_tok_eos(const struct clip_tokenizer *t) { return t ? t->eos : -1; }
