/* Tests of inferd-mkmodel (path in $INFERD_MKMODEL): its files open with the
 * reader and carry the expected metadata, tokenizer and tensors for every
 * dtype (q4_k_m: its mix of Q4_K and Q6_K) and both tokenizers; output is
 * deterministic per seed; quantized files hold the quantized weights of the
 * f32 file; bad usage (a row that is not whole blocks of its tensor's type)
 * exits 2. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gguf.h"

static char tmpdir[] = "/tmp/inferd-mkmodel-test-XXXXXX";

static void setup(void)
{
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	if (getenv("INFERD_KEEP_TMP"))
		return;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", tmpdir);
}

/* Runs inferd-mkmodel with args (NULL-terminated); returns its exit status, -1
 * when it did not exit normally. Its stderr goes to errfile when not NULL. */
static int mkmodel(const char *errfile, const char *const *args)
{
	const char *exe = getenv("INFERD_MKMODEL");
	cr_assert_not_null(exe, "INFERD_MKMODEL is not set (run through meson test)");
	const char *argv[32] = { exe };
	int n = 1;
	for (; args[n - 1] && n < 31; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(errfile ? errfile : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0)
			dup2(fd, 2);
		execv(exe, (char *const *)argv);
		dprintf(2, "cannot run %s: %s\n", exe, strerror(errno));
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void path_in_tmp(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", tmpdir, name);
}

/* ---- every dtype and tokenizer ---------------------------------------------------------- */

/* Criterion runs each case in a fresh process: parameters must not hold pointers. */
struct mk_case {
	char dtype[8];
	char tokenizer[8];
	bool tied;
	enum dtype want_type;  /* most 2-D weights */
	enum dtype want_hi;    /* attn_v, ffn_down, output (token_embd when tied) */
	uint32_t want_ftype;   /* llama.cpp's LLAMA_FTYPE_* */
};

ParameterizedTestParameters(mkmodel, writes_a_valid_llama_file)
{
	static struct mk_case cases[] = {
		{ "f32", "spm", false, DTYPE_F32, DTYPE_F32, 0 },
		{ "f16", "spm", false, DTYPE_F16, DTYPE_F16, 1 },
		{ "q8_0", "spm", false, DTYPE_Q8_0, DTYPE_Q8_0, 7 },
		{ "q4_0", "spm", true, DTYPE_Q4_0, DTYPE_Q4_0, 2 },
		{ "f32", "bpe", true, DTYPE_F32, DTYPE_F32, 0 },
		{ "f16", "bpe", false, DTYPE_F16, DTYPE_F16, 1 },
		{ "q8_0", "bpe", false, DTYPE_Q8_0, DTYPE_Q8_0, 7 },
		{ "q4_0", "bpe", false, DTYPE_Q4_0, DTYPE_Q4_0, 2 },
		{ "bf16", "spm", false, DTYPE_BF16, DTYPE_BF16, 32 },
		{ "q4_k", "spm", false, DTYPE_Q4_K, DTYPE_Q4_K, 14 },
		{ "q6_k", "bpe", true, DTYPE_Q6_K, DTYPE_Q6_K, 18 },
		{ "q4_k_m", "spm", false, DTYPE_Q4_K, DTYPE_Q6_K, 15 },
		{ "q4_k_m", "bpe", true, DTYPE_Q4_K, DTYPE_Q6_K, 15 },
	};
	return cr_make_param_array(struct mk_case, cases, sizeof cases / sizeof cases[0]);
}

static void check_u32(const struct gguf *g, const char *key, uint32_t want)
{
	uint32_t v = 0;
	cr_assert_eq(gguf_get_u32(g, key, &v), 0, "key %s missing or not uint32", key);
	cr_assert_eq(v, want, "%s = %u, expected %u", key, v, want);
}

static void check_tensor(const struct gguf *g, const char *name, enum dtype type, int64_t ne0,
                         int64_t ne1)
{
	const struct gguf_tensor_info *t = gguf_get_tensor(g, name);
	cr_assert_not_null(t, "tensor %s missing", name);
	cr_assert_eq(t->type, type, "%s has type %s", name, dtype_name(t->type));
	cr_assert_eq(t->n_dims, ne1 ? 2u : 1u, "%s n_dims", name);
	cr_assert_eq(t->ne[0], ne0, "%s ne[0] = %lld", name, (long long)t->ne[0]);
	if (ne1)
		cr_assert_eq(t->ne[1], ne1, "%s ne[1] = %lld", name, (long long)t->ne[1]);
	const uint8_t *end = (const uint8_t *)gguf_file_data(g) + gguf_file_size(g);
	cr_assert((const uint8_t *)t->data + t->nbytes <= end);
}

static bool token_exists(const struct gguf_arr *tok, const char *s, size_t len)
{
	for (uint64_t i = 0; i < gguf_arr_len(tok); i++) {
		const char *t;
		size_t tl;
		gguf_arr_get_str(tok, i, &t, &tl);
		if (tl == len && memcmp(t, s, len) == 0)
			return true;
	}
	return false;
}

static void check_tokenizer(const struct gguf *g, bool bpe, uint64_t n_vocab)
{
	const struct gguf_arr *tok, *scores, *types, *merges;
	const char *model, *s;
	size_t len;
	cr_assert_eq(gguf_get_str(g, "tokenizer.ggml.model", &model, NULL), 0);
	cr_assert_str_eq(model, bpe ? "gpt2" : "llama");
	cr_assert_eq(gguf_get_arr(g, "tokenizer.ggml.tokens", &tok), 0);
	cr_assert_eq(gguf_get_arr(g, "tokenizer.ggml.scores", &scores), 0);
	cr_assert_eq(gguf_get_arr(g, "tokenizer.ggml.token_type", &types), 0);
	cr_assert_eq(gguf_arr_len(tok), n_vocab);
	cr_assert_eq(gguf_arr_len(scores), n_vocab);
	cr_assert_eq(gguf_arr_len(types), n_vocab);
	for (uint64_t i = 0; i < n_vocab; i++) { /* tokens are unique */
		cr_assert_eq(gguf_arr_get_str(tok, i, &s, &len), 0);
		cr_assert_gt(len, 0, "token %llu is empty", (unsigned long long)i);
		for (uint64_t j = i + 1; j < n_vocab; j++) {
			const char *s2;
			size_t l2;
			gguf_arr_get_str(tok, j, &s2, &l2);
			cr_assert(!(l2 == len && memcmp(s, s2, len) == 0), "tokens %llu and %llu are equal",
			          (unsigned long long)i, (unsigned long long)j);
		}
	}
	uint32_t bos, eos;
	bool add_bos;
	cr_assert_eq(gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos), 0);
	cr_assert_eq(gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &eos), 0);
	cr_assert_lt(bos, n_vocab);
	cr_assert_lt(eos, n_vocab);
	cr_assert_eq(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos), 0);
	int64_t ty;
	if (!bpe) {
		uint32_t unk;
		cr_assert_eq(gguf_get_u32(g, "tokenizer.ggml.unknown_token_id", &unk), 0);
		cr_assert_eq(unk, 0);
		cr_assert_eq(bos, 1);
		cr_assert_eq(eos, 2);
		cr_assert(add_bos);
		for (unsigned b = 0; b < 256; b++) {
			char want[8];
			snprintf(want, sizeof want, "<0x%02X>", b);
			gguf_arr_get_str(tok, 3 + b, &s, &len);
			cr_assert(len == 6 && memcmp(s, want, 6) == 0, "byte token %u", b);
			cr_assert_eq(gguf_arr_get_int(types, 3 + b, &ty), 0);
			cr_assert_eq(ty, 6);
		}
		cr_assert(token_exists(tok, "\xe2\x96\x81the", 6), "word piece \u2581the");
		cr_assert(token_exists(tok, "\xe2\x96\x81th", 5), "its prefix \u2581th");
		cr_assert_eq(gguf_get_arr(g, "tokenizer.ggml.merges", &merges), -ENOENT);
		return;
	}
	cr_assert_eq(gguf_arr_get_int(types, bos, &ty), 0);
	cr_assert_eq(ty, 3, "BOS/EOS is a control token");
	cr_assert_eq(gguf_get_arr(g, "tokenizer.ggml.merges", &merges), 0);
	cr_assert_gt(gguf_arr_len(merges), 0);
	cr_assert(token_exists(tok, "\xc4\xa0the", 5), "Gthe (space mapped to U+0120)");
	for (uint64_t m = 0; m < gguf_arr_len(merges); m++) {
		cr_assert_eq(gguf_arr_get_str(merges, m, &s, &len), 0);
		const char *sp = memchr(s, ' ', len);
		cr_assert_not_null(sp, "merge %llu has no space", (unsigned long long)m);
		size_t l1 = (size_t)(sp - s), l2 = len - l1 - 1;
		char cat[128];
		cr_assert_lt(len, sizeof cat);
		memcpy(cat, s, l1);
		memcpy(cat + l1, sp + 1, l2);
		cr_assert(token_exists(tok, s, l1), "merge %llu: left part is not a token",
		          (unsigned long long)m);
		cr_assert(token_exists(tok, sp + 1, l2), "merge %llu: right part is not a token",
		          (unsigned long long)m);
		/* rank order: the merged token is the one created by this merge */
		const char *t;
		size_t tl;
		gguf_arr_get_str(tok, 256 + m, &t, &tl);
		cr_assert(tl == l1 + l2 && memcmp(t, cat, tl) == 0,
		          "merge %llu does not produce token %llu", (unsigned long long)m,
		          (unsigned long long)(256 + m));
	}
}

ParameterizedTest(struct mk_case *c, mkmodel, writes_a_valid_llama_file, .init = setup,
                  .fini = teardown, .timeout = 60)
{
	char out[256], err[512], errfile[256];
	path_in_tmp(out, sizeof out, "m.gguf");
	path_in_tmp(errfile, sizeof errfile, "stderr.txt");
	/* the k-quants' blocks are 256 elements: rows (--dim, --ffn) of 256 and 512 */
	bool k = dtype_block_elems(c->want_type) == 256;
	int dim = k ? 256 : 64, ffn = k ? 512 : 96, kv = dim / 2;
	const char *args[] = { "llm", "--out", out, "--dtype", c->dtype, "--tokenizer", c->tokenizer,
	                       "--dim", k ? "256" : "64", "--layers", "2", "--heads", "4",
	                       "--kv-heads", "2", "--ffn", k ? "512" : "96", "--vocab", "400",
	                       "--context", "128", "--seed", "7", c->tied ? "--tied" : NULL, NULL };
	int st = mkmodel(errfile, args);
	cr_assert_eq(st, 0, "inferd-mkmodel failed with %d (see %s)", st, errfile);
	struct gguf *g;
	cr_assert_eq(gguf_open(out, &g, err, sizeof err), 0, "%s", err);

	const char *s;
	float f;
	cr_assert_eq(gguf_get_str(g, "general.architecture", &s, NULL), 0);
	cr_assert_str_eq(s, "llama");
	cr_assert_eq(gguf_get_str(g, "general.name", &s, NULL), 0);
	check_u32(g, "general.alignment", 32);
	check_u32(g, "general.file_type", c->want_ftype);
	check_u32(g, "llama.context_length", 128);
	check_u32(g, "llama.embedding_length", (uint32_t)dim);
	check_u32(g, "llama.block_count", 2);
	check_u32(g, "llama.feed_forward_length", (uint32_t)ffn);
	check_u32(g, "llama.attention.head_count", 4);
	check_u32(g, "llama.attention.head_count_kv", 2);
	check_u32(g, "llama.rope.dimension_count", (uint32_t)dim / 4);
	cr_assert_eq(gguf_get_f32(g, "llama.rope.freq_base", &f), 0);
	cr_assert_eq(f, 10000.0f);
	cr_assert_eq(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f), 0);
	cr_assert_float_eq(f, 1e-5f, 1e-9f);
	check_tokenizer(g, strcmp(c->tokenizer, "bpe") == 0, 400);

	enum dtype w = c->want_type, hi = c->want_hi;
	cr_assert_eq(gguf_n_tensors(g), 2 + 9 * 2 + (c->tied ? 0 : 1));
	check_tensor(g, "token_embd.weight", c->tied ? hi : w, dim, 400);
	check_tensor(g, "output_norm.weight", DTYPE_F32, dim, 0);
	if (c->tied)
		cr_assert_null(gguf_get_tensor(g, "output.weight"));
	else
		check_tensor(g, "output.weight", hi, dim, 400);
	for (int l = 0; l < 2; l++) {
		char nm[64];
#define T(suffix, type, a, b) \
	snprintf(nm, sizeof nm, "blk.%d." suffix, l); check_tensor(g, nm, type, a, b)
		T("attn_norm.weight", DTYPE_F32, dim, 0);
		T("attn_q.weight", w, dim, dim);
		T("attn_k.weight", w, dim, kv);
		T("attn_v.weight", hi, dim, kv);
		T("attn_output.weight", w, dim, dim);
		T("ffn_norm.weight", DTYPE_F32, dim, 0);
		T("ffn_gate.weight", w, dim, ffn);
		T("ffn_up.weight", w, dim, ffn);
		T("ffn_down.weight", hi, ffn, dim);
#undef T
	}
	const struct gguf_tensor_info *norm = gguf_get_tensor(g, "blk.1.ffn_norm.weight");
	for (int i = 0; i < dim; i++) {
		float v;
		memcpy(&v, (const float *)norm->data + i, 4);
		cr_assert(v > 0.8f && v < 1.2f, "norm weight %d = %g is not near 1", i, v);
	}
	gguf_free(g);
}

/* ---- determinism and quantization --------------------------------------------------------- */

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *p = malloc(*len + 1);
	cr_assert_eq(fread(p, 1, *len, f), *len);
	p[*len] = '\0';
	fclose(f);
	return p;
}

Test(mkmodel, same_seed_same_bytes, .init = setup, .fini = teardown, .timeout = 60)
{
	char a[256], b[256], c[256];
	path_in_tmp(a, sizeof a, "a.gguf");
	path_in_tmp(b, sizeof b, "b.gguf");
	path_in_tmp(c, sizeof c, "c.gguf");
	const char *args_a[] = { "llm", "--out", a, "--seed", "42", "--dtype", "q4_0", NULL };
	const char *args_b[] = { "llm", "--out", b, "--seed", "42", "--dtype", "q4_0", NULL };
	const char *args_c[] = { "llm", "--out", c, "--seed", "43", "--dtype", "q4_0", NULL };
	cr_assert_eq(mkmodel(NULL, args_a), 0);
	cr_assert_eq(mkmodel(NULL, args_b), 0);
	cr_assert_eq(mkmodel(NULL, args_c), 0);
	size_t la, lb, lc;
	uint8_t *pa = slurp(a, &la), *pb = slurp(b, &lb), *pc = slurp(c, &lc);
	cr_assert_eq(la, lb);
	cr_assert_eq(memcmp(pa, pb, la), 0, "same seed, different files");
	cr_assert_eq(la, lc);
	cr_assert_neq(memcmp(pa, pc, la), 0, "different seeds, same file");
	free(pa);
	free(pb);
	free(pc);
}

static float *dequant(const struct gguf *g, const char *name, int64_t *n)
{
	const struct gguf_tensor_info *t = gguf_get_tensor(g, name);
	cr_assert_not_null(t);
	float *y = malloc(t->n_elements * sizeof *y);
	cr_assert_eq(dtype_dequant_row(t->type, t->data, y, (int64_t)t->n_elements), 0);
	*n = (int64_t)t->n_elements;
	return y;
}

/* Relative rms error of each type's quantization of N(0, 1/fan_in) weights;
 * the bounds leave 2x or more over the values measured (in brackets). The k-quants need
 * rows of 256: the models are --dim 256 --ffn 512. q4_k_m stores ffn_down as
 * q6_k and ffn_up as q4_k. */
Test(mkmodel, quantized_files_hold_the_f32_weights_quantized, .init = setup, .fini = teardown,
     .timeout = 60)
{
	static const struct { const char *dtype, *tensor; float rel; } q[] = {
		{ "f16", "blk.0.ffn_down.weight", 1e-3f },    /* [2.1e-4] */
		{ "bf16", "blk.0.ffn_down.weight", 5e-3f },   /* [1.7e-3] */
		{ "q8_0", "blk.0.ffn_down.weight", 0.02f },   /* [5.4e-3] */
		{ "q4_0", "blk.0.ffn_down.weight", 0.2f },    /* [0.086] */
		{ "q6_k", "blk.0.ffn_down.weight", 0.04f },   /* [0.019] */
		{ "q4_k", "blk.0.ffn_down.weight", 0.15f },   /* [0.072] */
		{ "q4_k_m", "blk.0.ffn_down.weight", 0.04f }, /* q6_k [0.019] */
		{ "q4_k_m", "blk.0.ffn_up.weight", 0.15f },   /* q4_k [0.072] */
	};
	const char *tensors[] = { "blk.0.ffn_down.weight", "blk.0.ffn_up.weight" };
	char ref[256], err[512];
	path_in_tmp(ref, sizeof ref, "f32.gguf");
	const char *args[] = { "llm", "--out", ref, "--seed", "5", "--dim", "256", "--ffn", "512",
	                       NULL };
	cr_assert_eq(mkmodel(NULL, args), 0);
	struct gguf *gr;
	cr_assert_eq(gguf_open(ref, &gr, err, sizeof err), 0, "%s", err);
	int64_t n[2], m;
	float *x[2];
	double ss[2];
	for (int t = 0; t < 2; t++) {
		x[t] = dequant(gr, tensors[t], &n[t]);
		ss[t] = 0;
		for (int64_t i = 0; i < n[t]; i++)
			ss[t] += (double)x[t][i] * x[t][i];
	}
	double sd = sqrt(ss[0] / (double)n[0]);
	cr_assert(sd > 0.035 && sd < 0.055, "ffn_down std %g, expected 1/sqrt(512)", sd);
	for (size_t k = 0; k < sizeof q / sizeof q[0]; k++) {
		char out[256];
		struct gguf *g;
		int t = strcmp(q[k].tensor, tensors[0]) == 0 ? 0 : 1;
		path_in_tmp(out, sizeof out, q[k].dtype);
		const char *a2[] = { "llm", "--out", out, "--seed", "5", "--dim", "256", "--ffn", "512",
		                     "--dtype", q[k].dtype, NULL };
		cr_assert_eq(mkmodel(NULL, a2), 0);
		cr_assert_eq(gguf_open(out, &g, err, sizeof err), 0, "%s", err);
		float *y = dequant(g, q[k].tensor, &m);
		cr_assert_eq(m, n[t]);
		double es = 0;
		for (int64_t i = 0; i < m; i++)
			es += ((double)x[t][i] - y[i]) * ((double)x[t][i] - y[i]);
		double rel = sqrt(es / ss[t]);
		cr_log_info("%s %s: relative rms error %.3g", q[k].dtype, q[k].tensor, rel);
		cr_assert(rel < q[k].rel, "%s %s: relative error %g", q[k].dtype, q[k].tensor, rel);
		free(y);
		gguf_free(g);
	}
	free(x[0]);
	free(x[1]);
	gguf_free(gr);
}

/* ---- usage errors ------------------------------------------------------------------------------ */

Test(mkmodel, bad_usage_exits_2_and_io_errors_exit_1, .init = setup, .fini = teardown,
     .timeout = 60)
{
	char out[256], errfile[256];
	path_in_tmp(out, sizeof out, "x.gguf");
	path_in_tmp(errfile, sizeof errfile, "err.txt");
	const char *cases[][12] = { /* each a usage error */
		{ "llm", NULL },
		{ "llm", "--out", out, "--dtype", "q5_k", NULL },
		{ "llm", "--out", out, "--dim", "60", "--heads", "8", NULL },
		{ "llm", "--out", out, "--heads", "4", "--kv-heads", "3", NULL },
		{ "llm", "--out", out, "--dtype", "q8_0", "--dim", "48", "--heads", "4", NULL },
		{ "llm", "--out", out, "--dtype", "q4_k", NULL }, /* --dim 64: not whole blocks */
		/* q4_k_m: ffn_down (rows of --ffn) is q6_k, so --ffn 128 is not whole blocks */
		{ "llm", "--out", out, "--dtype", "q4_k_m", "--dim", "256", "--ffn", "128", NULL },
		{ "llm", "--out", out, "--vocab", "10", NULL },
		{ "llm", "--out", out, "--layers", "abc", NULL },
		{ "llm", "--out", out, "--tokenizer", "wordpiece", NULL },
		{ "llm", "--out", out, "--bogus", NULL },
		{ "llm", "--out", NULL },
		{ "transformer", NULL },
		{ "diffusion", "--out", out, "--size", "huge", NULL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cr_expect_eq(mkmodel(errfile, cases[i]), 2, "case %zu should be a usage error", i);
		size_t len;
		uint8_t *msg = slurp(errfile, &len);
		cr_expect_gt(len, 10, "case %zu: no message on stderr", i);
		free(msg);
	}
	size_t len;
	uint8_t *msg = slurp(errfile, &len);
	cr_expect(len > 0 && strstr((char *)msg, "--size: 'huge'") != NULL);
	free(msg);
	cr_assert(access(out, F_OK) != 0, "nothing written on usage errors");

	const char *io[] = { "llm", "--out", "/nonexistent-dir/x.gguf", NULL };
	cr_expect_eq(mkmodel(errfile, io), 1);
}
