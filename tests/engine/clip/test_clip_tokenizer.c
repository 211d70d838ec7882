/* CLIP tokenizer: token for token against tests/reference/clip_tokenizer_ref.py on a generated
 * vocabulary and clip_corpus.txt, padding/truncation, special tokens, bad files. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "clip_tokenizer.h"
#include "clip_util.h"

static struct clip_tokenizer *tok;
static char *cases;     /* reference records: u32 n, text, u32 n_ids, ids */
static size_t cases_len;

static void setup(void)
{
	char args[2048], err[256] = "";
	const char *d = clip_tmpdir(), *corpus = getenv("INFERD_CLIP_CORPUS");
	cr_assert_not_null(d);
	snprintf(args, sizeof args, "make-vocab '%s'", d);
	int rc = clip_run_ref("clip_tokenizer_ref.py", args);
	if (rc == -ENOENT)
		cr_skip_test("no python3: reference not run");
	cr_assert_eq(rc, 0, "make-vocab failed");
	rc = clip_tok_new_from_folder(d, &tok, err, sizeof err);
	cr_assert_eq(rc, 0, "load: %s", err);
	if (corpus != NULL) {
		snprintf(args, sizeof args, "encode '%s' '%s' '%s/ref.bin'", d, corpus, d);
		cr_assert_eq(clip_run_ref("clip_tokenizer_ref.py", args), 0, "encode failed");
		char path[512];
		snprintf(path, sizeof path, "%s/ref.bin", d);
		cases = clip_read_all(path, &cases_len);
		cr_assert_not_null(cases);
	}
}

static void teardown(void)
{
	clip_tok_free(tok);
	free(cases);
	clip_tmpdir_remove();
}

static uint32_t rd32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

TestSuite(clip_tokenizer, .init = setup, .fini = teardown, .timeout = 60);

Test(clip_tokenizer, matches_reference_token_for_token)
{
	cr_assert_not_null(cases, "INFERD_CLIP_CORPUS not set");
	int n_cases = 0;
	int32_t got[4096], padded[CLIP_TOK_N_CTX];
	for (size_t p = 0; p + 8 <= cases_len; n_cases++) {
		uint32_t nb = rd32(cases + p);
		const char *text = cases + p + 4;
		uint32_t ni = rd32(cases + p + 4 + nb);
		const char *ids = cases + p + 8 + nb;
		p += 8 + nb + 4 * (size_t)ni;
		cr_assert_leq(p, cases_len);
		size_t n = 0;
		cr_assert_eq(clip_tok_encode_raw(tok, text, nb, got, 4096, &n), 0);
		cr_assert_eq(n, ni, "case %d \"%.*s\": %zu tokens, reference %u", n_cases, (int)nb,
		             text, n, ni);
		for (uint32_t i = 0; i < ni; i++)
			cr_assert_eq(got[i], (int32_t)rd32(ids + 4 * i),
			             "case %d \"%.*s\": token %u is %d, reference %d", n_cases, (int)nb,
			             text, i, got[i], (int32_t)rd32(ids + 4 * i));
		/* the padded form: BOS, first 75, EOS, pad (SD 1.x: EOS; SD 2.x: id 0) */
		for (int pad = 0; pad < 2; pad++) {
			int32_t pad_id = pad ? clip_tok_eos(tok) : 0;
			int used = 0;
			cr_assert_eq(clip_tok_encode(tok, text, nb, pad_id, padded, CLIP_TOK_N_CTX, &used),
			             0);
			uint32_t keep = ni < CLIP_TOK_N_CTX - 2 ? ni : CLIP_TOK_N_CTX - 2;
			cr_assert_eq(used, (int)keep + 2);
			cr_assert_eq(padded[0], clip_tok_bos(tok));
			for (uint32_t i = 0; i < keep; i++)
				cr_assert_eq(padded[1 + i], (int32_t)rd32(ids + 4 * i));
			cr_assert_eq(padded[keep + 1], clip_tok_eos(tok));
			for (int i = (int)keep + 2; i < CLIP_TOK_N_CTX; i++)
				cr_assert_eq(padded[i], pad_id);
		}
	}
	cr_assert_gt(n_cases, 30);
}

Test(clip_tokenizer, long_prompt_is_truncated_with_eos_last)
{
	char text[4000] = "";
	for (int i = 0; i < 200; i++)
		strcat(text, "cat, ");
	int32_t ids[CLIP_TOK_N_CTX];
	int used = 0;
	cr_assert_eq(clip_tok_encode(tok, text, strlen(text), 0, ids, CLIP_TOK_N_CTX, &used), 0);
	cr_assert_eq(used, CLIP_TOK_N_CTX);
	cr_assert_eq(ids[0], clip_tok_bos(tok));
	cr_assert_eq(ids[CLIP_TOK_N_CTX - 1], clip_tok_eos(tok));
	size_t n = 0;
	cr_assert_eq(clip_tok_encode_raw(tok, text, strlen(text), NULL, 0, &n), 0);
	cr_assert_geq(n, 300, "raw count %zu counts past the cap", n);
}

Test(clip_tokenizer, empty_and_blank_prompts)
{
	int32_t ids[CLIP_TOK_N_CTX];
	int used = 0;
	cr_assert_eq(clip_tok_encode(tok, "", 0, clip_tok_eos(tok), ids, CLIP_TOK_N_CTX, &used), 0);
	cr_assert_eq(used, 2);
	cr_assert_eq(ids[0], clip_tok_bos(tok));
	for (int i = 1; i < CLIP_TOK_N_CTX; i++)
		cr_assert_eq(ids[i], clip_tok_eos(tok));
	cr_assert_eq(clip_tok_encode(tok, " \t\n ", 4, 0, ids, CLIP_TOK_N_CTX, &used), 0);
	cr_assert_eq(used, 2);
	cr_assert_eq(ids[2], 0);
}

Test(clip_tokenizer, end_of_word_suffix_and_case)
{
	/* "a" alone is the </w> symbol of byte 'a'; "A" lower-cases to it */
	int32_t eow_a = clip_tok_lookup(tok, "a</w>", 5), ids[4];
	size_t n = 0;
	cr_assert_geq(eow_a, 0);
	cr_assert_eq(clip_tok_encode_raw(tok, "A", 1, ids, 4, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(ids[0], eow_a);
	cr_assert_eq(clip_tok_encode_raw(tok, "a!", 2, ids, 4, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(ids[0], eow_a);
	cr_assert_eq(ids[1], clip_tok_lookup(tok, "!</w>", 5));
	cr_assert_eq(clip_tok_encode_raw(tok, "<|endoftext|>", 13, ids, 4, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(ids[0], clip_tok_eos(tok));
}

Test(clip_tokenizer, invalid_utf8_is_tokenized_not_refused)
{
	static const char bad[] = "bad \xff\xfe bytes \xe2\x82 and \xc0\xaf \xed\xa0\x80 nul\0x";
	int32_t ids[256];
	size_t n = 0;
	cr_assert_eq(clip_tok_encode_raw(tok, bad, sizeof bad - 1, ids, 256, &n), 0);
	cr_assert_gt(n, 4);
	for (size_t i = 0; i < n; i++)
		cr_assert(ids[i] >= 0 && ids[i] < clip_tok_vocab_size(tok));
}

Test(clip_tokenizer, bad_arguments)
{
	int32_t ids[CLIP_TOK_N_CTX];
	cr_assert_eq(clip_tok_encode(tok, "x", 1, -1, ids, CLIP_TOK_N_CTX, NULL), -EINVAL);
	cr_assert_eq(clip_tok_encode(tok, "x", 1, clip_tok_vocab_size(tok), ids, 77, NULL), -EINVAL);
	cr_assert_eq(clip_tok_encode(tok, "x", 1, 0, ids, 1, NULL), -EINVAL);
	cr_assert_eq(clip_tok_encode(NULL, "x", 1, 0, ids, 77, NULL), -EINVAL);
}

/* ---- malformed files ------------------------------------------------------------------- */

static void expect_refused(const char *vocab, const char *merges, const char *needle)
{
	struct clip_tokenizer *t = NULL;
	char err[256] = "";
	int rc = clip_tok_new_from_memory(vocab, strlen(vocab), merges, strlen(merges), &t, err,
	                                  sizeof err);
	cr_assert_eq(rc, -EINVAL, "accepted: %s / %s", vocab, merges);
	cr_assert_null(t);
	cr_assert_not_null(strstr(err, needle), "message \"%s\" lacks \"%s\"", err, needle);
}

Test(clip_tokenizer_files, malformed_files_are_refused_with_a_reason)
{
	const char *ok = "{\"a\": 0, \"b\": 1, \"ab\": 2, \"<|startoftext|>\": 3, \"<|endoftext|>\": 4}";
	expect_refused("{\"a\": ", "", "vocab.json");
	expect_refused("[1, 2]", "", "not a non-empty object");
	expect_refused("{\"a\": -1}", "", "id not an integer");
	expect_refused("{\"a\": \"x\"}", "", "id not an integer");
	expect_refused("{\"a\": 0, \"b\": 0}", "", "id 0 given to two tokens");
	expect_refused(ok, "#version: 0.2\na c\n", "line 2");
	expect_refused(ok, "#version: 0.2\nab\n", "not \"left right\"");
	expect_refused("{\"a\": 0, \"<|endoftext|>\": 1}", "", "<|startoftext|>");

	struct clip_tokenizer *t = NULL;
	char err[256] = "";
	cr_assert_eq(clip_tok_new_from_memory(ok, strlen(ok), "#version: 0.2\na b\r\n", 18, &t, err,
	                                      sizeof err), 0, "%s", err);
	int32_t ids[4];
	size_t n = 0;
	cr_assert_eq(clip_tok_encode_raw(t, "ab", 2, ids, 4, &n), 0);
	/* "b</w>" is not in this vocabulary: the unknown symbol becomes <|endoftext|> */
	cr_assert_eq(n, 2);
	cr_assert_eq(ids[0], 0);
	cr_assert_eq(ids[1], 4);
	clip_tok_free(t);
	clip_tok_free(NULL);

	cr_assert_eq(clip_tok_new("/nonexistent/vocab.json", "/nonexistent/merges.txt", &t, err,
	                          sizeof err), -ENOENT);
	cr_assert_not_null(strstr(err, "/nonexistent/vocab.json"));
}

/* A prompt is client input: one huge word must not take quadratic time (it took minutes per
 * megabyte before the merge heap). */
Test(clip_tokenizer, huge_single_word_is_fast)
{
	const size_t n = 4u << 20;
	char *s = malloc(n);
	cr_assert_not_null(s);
	for (size_t i = 0; i < n; i++)
		s[i] = "photographyabc"[i % 14];
	int32_t ids[CLIP_TOK_N_CTX];
	int used = 0;
	cr_assert_eq(clip_tok_encode(tok, s, n, 0, ids, CLIP_TOK_N_CTX, &used), 0);
	cr_assert_eq(used, CLIP_TOK_N_CTX);
	cr_assert_eq(ids[CLIP_TOK_N_CTX - 1], clip_tok_eos(tok));
	/* the same word, short: the first tokens agree with encoding a prefix of whole periods
	 * only when merges stay inside a period, so just check ids are in range */
	for (int i = 0; i < CLIP_TOK_N_CTX; i++)
		cr_assert(ids[i] >= 0 && ids[i] < clip_tok_vocab_size(tok));
	free(s);
}
