/* Criterion suite of engine/tokenizer: SentencePiece on the real stories260K
 * vocabulary and on generated ones, byte-level BPE on a generated one, hand-made
 * vocabularies for the corner cases, decoding and the incremental detokenizer.
 * Token-for-token agreement with independent references is checked by
 * tests/reference/tokenizer_ref.py (meson tests tokenizer_reference_*). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../test_util.h"
#include "gguf.h"
#include "tokenizer.h"

/* ---- helpers ----------------------------------------------------------------------- */

static struct gguf *g_file;
static struct tokenizer *g_tok;
static char g_dir[64];

static void open_tok(const char *path)
{
	char err[256] = "";
	cr_assert_eq(gguf_open(path, &g_file, err, sizeof err), 0, "%s", err);
	cr_assert_eq(tok_new_from_gguf(g_file, &g_tok, err, sizeof err), 0, "%s", err);
}

static void close_tok(void)
{
	tok_free(g_tok);
	gguf_free(g_file);
	g_tok = NULL;
	g_file = NULL;
	if (g_dir[0]) {
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", g_dir);
		g_dir[0] = '\0';
	}
}

static void open_stories(void)
{
	const char *p = getenv("INFERD_STORIES260K");
	if (p == NULL || access(p, R_OK) != 0)
		cr_skip_test("stories260K.gguf is absent (../shared/models not here)");
	open_tok(p);
}

/* Generates a model with inferd-mkmodel (--tokenizer kind) and opens it. */
static void open_generated(const char *kind, const char *vocab)
{
	const char *mk = getenv("INFERD_MKMODEL");
	cr_assert(mk != NULL, "INFERD_MKMODEL is not set");
	strcpy(g_dir, "/tmp/tok-test-XXXXXX");
	cr_assert(mkdtemp(g_dir) != NULL);
	char out[128];
	snprintf(out, sizeof out, "%s/m.gguf", g_dir);
	pid_t pid = fork();
	if (pid == 0) {
		execl(mk, mk, "llm", "--out", out, "--tokenizer", kind, "--vocab", vocab, "--dim", "32",
		      "--layers", "1", "--heads", "2", "--ffn", "32", (char *)NULL);
		_exit(127);
	}
	int st;
	cr_assert(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	          "inferd-mkmodel failed");
	open_tok(out);
}

static void open_spm(void) { open_generated("spm", "2000"); }
static void open_bpe(void) { open_generated("bpe", "2000"); }

static size_t enc(const char *s, size_t len, bool add, bool special, int32_t *ids, size_t cap)
{
	size_t n;
	int rc = tok_encode(g_tok, s, len, add, special, ids, cap, &n);
	cr_assert_eq(rc, 0, "tok_encode: %d", rc);
	return n;
}

static char *dec(const int32_t *ids, size_t n, unsigned flags, size_t *len)
{
	tok_decode(g_tok, ids, n, flags, NULL, 0, len);
	char *out = malloc(*len + 1);
	cr_assert_eq(tok_decode(g_tok, ids, n, flags, out, *len, len), 0);
	out[*len] = '\0';
	return out;
}

static bool valid_utf8(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		unsigned c = u[i];
		size_t k = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 :
		           c >= 0xf0 && c < 0xf5 ? 4 : 0;
		if (k == 0 || i + k > n)
			return false;
		for (size_t j = 1; j < k; j++)
			if ((u[i + j] & 0xc0) != 0x80)
				return false;
		i += k;
	}
	return true;
}

/* Round trip of every valid-UTF-8 corpus-like string without U+2581. */
static const char *const round_trip[] = {
	"", "Once upon a time, there was a little girl named Lily.", " Hello", "Hello ",
	"  two  spaces  ", "\t\ttabs\nand\n\nnewlines\r\n", "1234567890", "café 日本語 😀👍🏽",
	"e\xcc\x81 combining", "שלום مرحبا", "<s> not special </s>", "x<|endoftext|>y",
	"~!@#$%^&*()_+`-=[]{}|;':\",./<>?",
};

static void check_round_trips(void)
{
	int32_t ids[512];
	for (size_t i = 0; i < sizeof round_trip / sizeof round_trip[0]; i++) {
		const char *s = round_trip[i];
		size_t n = enc(s, strlen(s), true, false, ids, 512), len;
		char *d = dec(ids, n, TOK_DECODE_STRIP_LEADING, &len);
		cr_expect(len == strlen(s) && memcmp(d, s, len) == 0, "round trip '%s' -> '%s'", s, d);
		free(d);
	}
}

/* Random byte strings (biased towards UTF-8 lead/continuation bytes, spaces
 * and '<'): encoding never fails, decoding gives the bytes back exactly (bar
 * a literal U+2581 in SPM), and the stream only hands out valid UTF-8. */
static void check_random_bytes(void)
{
	static const unsigned char pick[] = { ' ', ' ', '<', 's', '>', 'a', 'e', '\n', 0x00, 0x80,
	                                      0xbf, 0xc3, 0xa9, 0xe2, 0x96, 0x81, 0xe6, 0xf0, 0x9f,
	                                      0xff, '|', 'x' };
	uint64_t x = 12345;
	char s[96];
	int32_t ids[1024];
	for (int t = 0; t < 300; t++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		size_t len = (size_t)(x >> 58) + (size_t)(t % 32);
		for (size_t i = 0; i < len; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			s[i] = (char)((x >> 40) % 3 ? pick[(x >> 20) % sizeof pick] : (unsigned char)(x >> 48));
		}
		size_t n = enc(s, len, t % 2, t % 3 == 0, ids, 1024), dl;
		if (t % 3 == 0)
			continue; /* parse_special: control tokens do not come back */
		char *d = dec(ids, n, TOK_DECODE_STRIP_LEADING, &dl);
		bool block = memmem(s, len, "\xe2\x96\x81", 3) != NULL;
		if (tok_kind(g_tok) == TOK_KIND_BPE || !block)
			cr_expect(dl == len && memcmp(d, s, len) == 0, "random string %d does not round-trip", t);
		free(d);
		struct tok_stream *st = tok_stream_new(g_tok, 0);
		for (size_t i = 0; i <= n; i++) {
			const char *p;
			size_t l;
			cr_assert_eq(i < n ? tok_stream_feed(st, ids[i], &p, &l) : tok_stream_flush(st, &p, &l), 0);
			cr_expect(valid_utf8(p, l));
		}
		tok_stream_free(st);
	}
}

/* ---- SentencePiece on stories260K -------------------------------------------------- */

TestSuite(tok_stories, .init = open_stories, .fini = close_tok);

Test(tok_stories, vocabulary)
{
	cr_expect_eq(tok_kind(g_tok), TOK_KIND_SPM);
	cr_expect_eq(tok_vocab_size(g_tok), 512);
	cr_expect_eq(tok_bos(g_tok), 1);
	cr_expect_eq(tok_eos(g_tok), 2);
	cr_expect_eq(tok_unk(g_tok), 0);
	cr_expect(tok_add_bos(g_tok));
	cr_expect(tok_is_eog(g_tok, 2));
	cr_expect(!tok_is_eog(g_tok, 1));
	cr_expect_str_eq(tok_token_text(g_tok, 1, NULL), "<s>");
	cr_expect_eq(tok_lookup(g_tok, "\xe2\x96\x81the", 6), tok_lookup(g_tok, "\xe2\x96\x81the", 6));
	cr_expect_eq(tok_token_type(g_tok, 3), TOK_TYPE_BYTE);
	cr_expect_null(tok_token_text(g_tok, 512, NULL));
}

Test(tok_stories, known_ids)
{
	/* Checked against the naive reference (tests/reference/tokenizer_ref.py). */
	static const int32_t want[] = { 1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315,
	                                421, 395, 317, 426 };
	int32_t ids[64];
	const char *s = "Once upon a time, there was a little girl named Lily.";
	size_t n = enc(s, strlen(s), true, false, ids, 64);
	cr_assert_eq(n, sizeof want / sizeof want[0]);
	cr_expect_arr_eq(ids, want, sizeof want);
}

Test(tok_stories, empty_text)
{
	int32_t ids[4];
	cr_expect_eq(enc("", 0, true, false, ids, 4), 1);
	cr_expect_eq(ids[0], 1);
	cr_expect_eq(enc("", 0, false, false, ids, 4), 0);
}

Test(tok_stories, special_text_only_with_parse_special)
{
	int32_t ids[64];
	const char *s = "<s>hi</s>";
	size_t n = enc(s, strlen(s), false, true, ids, 64);
	cr_assert_geq(n, 3);
	cr_expect_eq(ids[0], 1);
	cr_expect_eq(ids[n - 1], 2);
	n = enc(s, strlen(s), false, false, ids, 64);
	for (size_t i = 0; i < n; i++)
		cr_expect(ids[i] != 1 && ids[i] != 2, "special token %d from plain text", ids[i]);
	size_t len;
	char *d = dec(ids, n, TOK_DECODE_STRIP_LEADING, &len);
	cr_expect_str_eq(d, s);
	free(d);
}

Test(tok_stories, byte_fallback_and_invalid_utf8)
{
	int32_t ids[64];
	const char s[] = "\xff\xe2\x82 \xe6\x97\xa5"; /* invalid, truncated, then 日 (not in the vocab) */
	size_t n = enc(s, sizeof s - 1, false, false, ids, 64), len;
	cr_expect_eq(ids[n - 1], 3 + 0xa5, "日 ends in byte token <0xA5>");
	char *d = dec(ids, n, TOK_DECODE_STRIP_LEADING, &len);
	cr_expect(len == sizeof s - 1 && memcmp(d, s, len) == 0, "bytes come back exactly");
	free(d);
}

Test(tok_stories, round_trip) { check_round_trips(); }
Test(tok_stories, random_bytes) { check_random_bytes(); }

Test(tok_stories, short_array_reports_size)
{
	int32_t ids[3];
	size_t n;
	const char *s = "Once upon a time";
	cr_expect_eq(tok_encode(g_tok, s, strlen(s), true, false, ids, 3, &n), -ENOBUFS);
	cr_expect_eq(n, 5);
	cr_expect_eq(ids[0], 1);
	cr_expect_eq(tok_encode(g_tok, s, strlen(s), true, false, NULL, 0, &n), -ENOBUFS);
	cr_expect_eq(n, 5);
}

Test(tok_stories, decode_rejects_bad_ids)
{
	int32_t ids[] = { 5, 512 };
	size_t len;
	char buf[16];
	cr_expect_eq(tok_decode(g_tok, ids, 2, 0, buf, sizeof buf, &len), -EINVAL);
	ids[1] = -1;
	cr_expect_eq(tok_decode(g_tok, ids, 2, 0, buf, sizeof buf, &len), -EINVAL);
}

Test(tok_stories, decode_special_flag)
{
	int32_t ids[] = { 1, 403, 2 };
	size_t len;
	char *d = dec(ids, 3, TOK_DECODE_STRIP_LEADING, &len);
	cr_expect_str_eq(d, "Once");
	free(d);
	d = dec(ids, 3, TOK_DECODE_SPECIAL, &len);
	cr_expect_str_eq(d, "<s> Once</s>");
	free(d);
}

/* Long inputs stay near-linear: 256 KiB of text (and a 64 KiB run of one
 * letter, the worst case for pair merging) well under a second each. */
Test(tok_stories, long_input_is_fast)
{
	size_t len = 256 * 1024;
	char *s = malloc(len);
	const char *w = "Once upon a time, Lily saw a big dog. ";
	for (size_t i = 0; i < len; i++)
		s[i] = w[i % strlen(w)];
	int32_t *ids = malloc(len * sizeof *ids);
	clock_t t0 = clock();
	size_t n = enc(s, len, true, false, ids, len);
	double sec = (double)(clock() - t0) / CLOCKS_PER_SEC;
	cr_expect_gt(n, len / 8);
	cr_expect_lt(sec, 2.0, "256 KiB took %.2f s", sec);
	memset(s, 'a', 64 * 1024);
	t0 = clock();
	enc(s, 64 * 1024, true, false, ids, len);
	sec = (double)(clock() - t0) / CLOCKS_PER_SEC;
	cr_expect_lt(sec, 2.0, "64 KiB of 'a' took %.2f s", sec);
	free(ids);
	free(s);
}

/* ---- the incremental detokenizer --------------------------------------------------- */

/* Feeds ids one at a time; every chunk must be valid UTF-8 and the chunks
 * together the (valid) decoding. */
static void stream_check(const int32_t *ids, size_t n, const char *want)
{
	struct tok_stream *st = tok_stream_new(g_tok, TOK_DECODE_STRIP_LEADING);
	cr_assert_not_null(st);
	char all[512];
	size_t o = 0;
	for (size_t i = 0; i <= n; i++) {
		const char *t;
		size_t l;
		int rc = i < n ? tok_stream_feed(st, ids[i], &t, &l) : tok_stream_flush(st, &t, &l);
		cr_assert_eq(rc, 0);
		cr_expect(valid_utf8(t, l), "chunk %zu is not valid UTF-8", i);
		cr_assert_lt(o + l, sizeof all);
		memcpy(all + o, t, l);
		o += l;
	}
	all[o] = '\0';
	cr_expect_str_eq(all, want);
	tok_stream_free(st);
}

Test(tok_stories, stream_holds_back_split_characters)
{
	int32_t ids[128];
	const char *s = "Lily 日本😀 ok é";
	size_t n = enc(s, strlen(s), true, false, ids, 128);
	cr_assert_gt(n, 10, "multi-byte characters must become byte tokens here");
	stream_check(ids, n, s);
	/* byte tokens <0xE6> <0x97>: pending 2 bytes after them */
	struct tok_stream *st = tok_stream_new(g_tok, 0);
	const char *t;
	size_t l;
	cr_expect_eq(tok_stream_feed(st, 3 + 0xe6, &t, &l), 0);
	cr_expect_eq(l, 0);
	cr_expect_eq(tok_stream_feed(st, 3 + 0x97, &t, &l), 0);
	cr_expect_eq(l, 0);
	cr_expect_eq(tok_stream_pending(st), 2);
	cr_expect_eq(tok_stream_feed(st, 3 + 0xa5, &t, &l), 0);
	cr_expect(l == 3 && memcmp(t, "\xe6\x97\xa5", 3) == 0);
	cr_expect_eq(tok_stream_feed(st, 600, &t, &l), -EINVAL);
	tok_stream_free(st);
}

Test(tok_stories, stream_replaces_invalid_bytes)
{
	/* 0xFF (never valid), E2 82 then 'A' (broken sequence), E6 97 at the end */
	int32_t ids[] = { 3 + 0xff, 3 + 0xe2, 3 + 0x82, 3 + 'A', 3 + 0xe6, 3 + 0x97 };
	stream_check(ids, 6, "\xef\xbf\xbd\xef\xbf\xbd" "A\xef\xbf\xbd");
}

/* ---- generated vocabularies ---------------------------------------------------------- */

TestSuite(tok_spm_generated, .init = open_spm, .fini = close_tok);

Test(tok_spm_generated, round_trip) { check_round_trips(); }
Test(tok_spm_generated, random_bytes) { check_random_bytes(); }

Test(tok_spm_generated, longest_pieces_win)
{
	int32_t ids[16];
	size_t n = enc("the little girl", 15, false, false, ids, 16);
	cr_expect_eq(n, 3, "' the', ' little', ' girl' are tokens");
	cr_expect_str_eq(tok_token_text(g_tok, ids[1], NULL), "\xe2\x96\x81little");
}

TestSuite(tok_bpe_generated, .init = open_bpe, .fini = close_tok);

Test(tok_bpe_generated, vocabulary)
{
	cr_expect_eq(tok_kind(g_tok), TOK_KIND_BPE);
	cr_expect(!tok_add_bos(g_tok));
	int32_t eot = tok_vocab_size(g_tok) - 1;
	cr_expect_str_eq(tok_token_text(g_tok, eot, NULL), "<|endoftext|>");
	cr_expect(tok_is_eog(g_tok, eot));
}

Test(tok_bpe_generated, words_and_specials)
{
	int32_t ids[32];
	size_t n = enc(" the little", 11, true, false, ids, 32);
	cr_expect_eq(n, 2);
	const char *s = "a<|endoftext|>b";
	int32_t eot = tok_vocab_size(g_tok) - 1;
	n = enc(s, strlen(s), false, true, ids, 32);
	cr_expect(n == 3 && ids[1] == eot);
	n = enc(s, strlen(s), false, false, ids, 32);
	for (size_t i = 0; i < n; i++)
		cr_expect_neq(ids[i], eot);
}

Test(tok_bpe_generated, round_trip) { check_round_trips(); }
Test(tok_bpe_generated, random_bytes) { check_random_bytes(); }

Test(tok_bpe_generated, invalid_utf8_as_bytes)
{
	int32_t ids[32];
	const char s[] = "ok \xff\xfe\xe2\x82 end";
	size_t n = enc(s, sizeof s - 1, false, false, ids, 32), len;
	char *d = dec(ids, n, 0, &len);
	cr_expect(len == sizeof s - 1 && memcmp(d, s, len) == 0);
	free(d);
	stream_check(ids, n, "ok \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd end");
}

/* ---- hand-made vocabularies: errors and corner cases --------------------------------- */

static void kv_str_arr(struct tbuf *b, const char *key, const char *const *v, size_t n)
{
	tb_key(b, key, GGUF_VTYPE_ARRAY);
	tb_u32(b, GGUF_VTYPE_STRING);
	tb_u64(b, n);
	for (size_t i = 0; i < n; i++)
		tb_str(b, v[i]);
}

static int open_mem(struct tbuf *b, uint64_t n_kv, char *err, size_t errlen)
{
	/* patch the kv count in the header written by start() */
	for (int i = 0; i < 8; i++)
		b->p[16 + i] = (uint8_t)(n_kv >> (8 * i));
	int rc = gguf_open_memory(b->p, b->len, "mem", &g_file, err, errlen);
	cr_assert_eq(rc, 0, "%s", err);
	return tok_new_from_gguf(g_file, &g_tok, err, errlen);
}

static void start(struct tbuf *b)
{
	tb_raw(b, "GGUF", 4);
	tb_u32(b, 3);
	tb_u64(b, 0);
	tb_u64(b, 0);
}

TestSuite(tok_handmade, .fini = close_tok);

Test(tok_handmade, missing_vocabulary_is_an_error)
{
	struct tbuf b = { 0 };
	char err[256] = "";
	start(&b);
	cr_expect_eq(open_mem(&b, 0, err, sizeof err), -EINVAL);
	cr_expect(strstr(err, "tokenizer.ggml.model") != NULL, "%s", err);
	tb_free(&b);
}

Test(tok_handmade, unknown_model_is_refused)
{
	struct tbuf b = { 0 };
	char err[256] = "";
	start(&b);
	tb_key(&b, "tokenizer.ggml.model", GGUF_VTYPE_STRING);
	tb_str(&b, "t5");
	cr_expect_eq(open_mem(&b, 1, err, sizeof err), -ENOTSUP);
	cr_expect(strstr(err, "t5") != NULL, "%s", err);
	tb_free(&b);
}

Test(tok_handmade, spm_without_byte_tokens_uses_unk)
{
	static const char *const toks[] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b",
	                                    "\xe2\x96\x81" "a", "ab", "<user>" };
	struct tbuf b = { 0 };
	char err[256] = "";
	start(&b);
	tb_key(&b, "tokenizer.ggml.model", GGUF_VTYPE_STRING);
	tb_str(&b, "llama");
	kv_str_arr(&b, "tokenizer.ggml.tokens", toks, 9);
	tb_key(&b, "tokenizer.ggml.token_type", GGUF_VTYPE_ARRAY);
	tb_u32(&b, GGUF_VTYPE_INT32);
	tb_u64(&b, 9);
	static const int32_t types[] = { 2, 3, 3, 1, 1, 1, 1, 1, 4 };
	for (int i = 0; i < 9; i++)
		tb_u32(&b, (uint32_t)types[i]);
	cr_assert_eq(open_mem(&b, 3, err, sizeof err), 0, "%s", err);
	int32_t ids[16];
	/* "a" -> "▁a"; "x" is no token and has no byte token -> <unk>; "<user>" is
	 * user-defined: always matched. */
	size_t n = enc("a x<user>ab", 11, true, false, ids, 16);
	/* after <user>, "ab" gets the space prefix: "▁a" (leftmost on the score tie
	 * with "ab") then "b" */
	static const int32_t want[] = { 1, 6, 3, 0, 8, 6, 5 };
	cr_assert_eq(n, 7);
	cr_expect_arr_eq(ids, want, sizeof want);
	size_t len;
	char *d = dec(ids, n, TOK_DECODE_STRIP_LEADING, &len);
	cr_expect_str_eq(d, "a \xe2\x96\x85<user> ab");
	free(d);
	tb_free(&b);
}
