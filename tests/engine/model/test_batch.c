/* Batched forward passes equal single-sequence ones; bad batches and bad
 * models fail with clear errors. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "model_util.h"

static void fini(void)
{
	tmpdir_remove();
}

static void fill_tokens(int32_t *t, int n, unsigned seed)
{
	for (int i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		t[i] = 3 + (int32_t)((seed >> 10) % 500u);
	}
}

/* ---- mixed batch == each sequence alone ------------------------------------------------ */

#define NSEQ 6
#define BS 4 /* small blocks so that sequences cross block boundaries */

struct mix {
	int hist;             /* positions already in the cache */
	int n_new;            /* tokens of the batched call */
	enum fwd_logits lg;
};

static const struct mix mixes[NSEQ] = {
	{ 0, 7, FWD_LOGITS_ALL },   /* prefill */
	{ 3, 1, FWD_LOGITS_LAST },  /* decode */
	{ 9, 5, FWD_LOGITS_ALL },   /* chunked prefill across the block boundary at 12 */
	{ 0, 1, FWD_LOGITS_LAST },  /* one-token prompt */
	{ 16, 1, FWD_LOGITS_ALL },  /* decode into a fresh block */
	{ 5, 3, FWD_LOGITS_NONE },  /* chunk without logits */
};

struct batch_case {
	char dtype[8];
};

ParameterizedTestParameters(llama_batch, mixed_equals_alone)
{
	static struct batch_case cases[] = { { "f32" }, { "q8_0" }, { "q4_0" } };
	return cr_make_param_array(struct batch_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct batch_case *c, llama_batch, mixed_equals_alone, .fini = fini)
{
	char path[512], args[200], name[64];
	snprintf(name, sizeof name, "batch-%s.gguf", c->dtype);
	snprintf(args, sizeof args, "--dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 "
	         "--vocab 512 --seed 21 --dtype %s", c->dtype);
	cr_assert_eq(mkmodel(name, args, path, sizeof path), 0);

	struct eng e, alone;
	cr_assert_eq(eng_open(&e, path, 64, BS, 64), 0, "%s", e.err);
	cr_assert_eq(eng_open(&alone, path, 64, BS, 64), 0, "%s", alone.err);
	const int vocab = llama_model_hparams(e.m)->n_vocab;
	int32_t toks[NSEQ][32];
	struct kv_seq ks[NSEQ];
	struct fwd_seq fs[NSEQ];
	int nf = 0;

	/* 1: the histories, all in one batch without logits */
	for (int s = 0; s < NSEQ; s++) {
		fill_tokens(toks[s], mixes[s].hist + mixes[s].n_new, 100u + (unsigned)s);
		cr_assert_eq(kv_seq_init(&ks[s], e.kv, 64), 0);
		cr_assert_eq(kv_seq_reserve(&ks[s], e.kv, mixes[s].hist + mixes[s].n_new), 0);
		if (mixes[s].hist > 0)
			fs[nf++] = (struct fwd_seq){ .tokens = toks[s], .n_tokens = mixes[s].hist,
			                             .block_table = ks[s].blocks,
			                             .n_blocks = ks[s].n_blocks };
	}
	cr_assert_eq(llama_forward(e.m, e.kv, fs, nf, NULL), 0);

	/* 2: the mixed batch */
	for (int s = 0; s < NSEQ; s++)
		fs[s] = (struct fwd_seq){ .tokens = toks[s] + mixes[s].hist, .n_tokens = mixes[s].n_new,
		                          .pos = mixes[s].hist, .block_table = ks[s].blocks,
		                          .n_blocks = ks[s].n_blocks, .logits = mixes[s].lg };
	int64_t n_out = fwd_n_logits(fs, NSEQ);
	cr_assert_eq(n_out, 7 + 1 + 5 + 1 + 1);
	float *got = malloc((size_t)n_out * vocab * sizeof *got);
	float *ref = malloc((size_t)32 * vocab * sizeof *ref);
	cr_assert_eq(llama_forward(e.m, e.kv, fs, NSEQ, got), 0);

	/* 3: each sequence alone, in one prefill of history + new tokens */
	double maxd = 0.0;
	int64_t o = 0;
	for (int s = 0; s < NSEQ; s++) {
		int n = mixes[s].hist + mixes[s].n_new;
		cr_assert_eq(eng_run(&alone, toks[s], n, ref, 0, NULL), 0);
		int first = mixes[s].lg == FWD_LOGITS_ALL ? mixes[s].hist
		            : mixes[s].lg == FWD_LOGITS_LAST ? n - 1 : n;
		for (int i = first; i < n; i++, o++)
			for (int v = 0; v < vocab; v++) {
				double d = fabs((double)got[o * vocab + v] - ref[(size_t)i * vocab + v]);
				maxd = d > maxd ? d : maxd;
			}
	}
	cr_assert_eq(o, n_out);
	printf("# %s: batched vs alone max abs diff %.3g\n", c->dtype, maxd);
	cr_expect_leq(maxd, 1e-4, "batched differs from alone by %g", maxd);

	for (int s = 0; s < NSEQ; s++)
		kv_seq_fini(&ks[s], e.kv);
	cr_expect_eq(kv_cache_n_free(e.kv), 64, "blocks leaked");
	free(got);
	free(ref);
	eng_close(&e);
	eng_close(&alone);
}

/* Prefill in one call == the same tokens decoded one at a time. */
Test(llama_batch, prefill_equals_decode_steps, .fini = fini)
{
	char path[512];
	cr_assert_eq(mkmodel("steps.gguf", "--dim 64 --layers 2 --heads 4 --kv-heads 1 --ffn 128 "
	                     "--vocab 512 --seed 2", path, sizeof path), 0);
	struct eng e;
	cr_assert_eq(eng_open(&e, path, 32, 8, 16), 0, "%s", e.err);
	int32_t t[20];
	fill_tokens(t, 20, 5);
	float all[20 * 512], one[512];
	cr_assert_eq(eng_run(&e, t, 20, all, 0, NULL), 0);
	struct kv_seq s;
	cr_assert_eq(kv_seq_init(&s, e.kv, 20), 0);
	cr_assert_eq(kv_seq_reserve(&s, e.kv, 20), 0);
	double maxd = 0.0;
	for (int i = 0; i < 20; i++) {
		struct fwd_seq f = { .tokens = &t[i], .n_tokens = 1, .pos = i, .block_table = s.blocks,
		                     .n_blocks = s.n_blocks, .logits = FWD_LOGITS_LAST };
		cr_assert_eq(llama_forward(e.m, e.kv, &f, 1, one), 0);
		for (int v = 0; v < 512; v++)
			maxd = fmax(maxd, fabs((double)one[v] - all[i * 512 + v]));
	}
	cr_expect_leq(maxd, 1e-4);
	kv_seq_fini(&s, e.kv);
	eng_close(&e);
}

/* ---- weight dtype override ------------------------------------------------------------- */

/* Loads path with the weight dtype override (convert_weights to `to`) and runs a prompt. */
static void run_converted(const char *path, bool convert, enum dtype to, const int32_t *t, int n,
                          float *out, int *n_converted)
{
	struct eng e;
	memset(&e, 0, sizeof e);
	backend_cpu_init(&e.b, 0);
	cr_assert_eq(gguf_open(path, &e.g, e.err, sizeof e.err), 0, "%s", e.err);
	struct llama_load_params lp = { .backend = &e.b, .max_batch_tokens = 32,
	                                .convert_weights = convert, .weight_type = to };
	cr_assert_eq(llama_model_load(e.g, &lp, &e.m, e.err, sizeof e.err), 0, "%s", e.err);
	struct kv_cache_params kp;
	llama_kv_params(e.m, 8, 16, &kp);
	cr_assert_eq(kv_cache_new(&e.b, &kp, &e.kv), 0);
	*n_converted = llama_model_n_converted(e.m);
	cr_assert_eq(eng_run(&e, t, n, out, 0, NULL), 0);
	eng_close(&e);
}

/* An f32 file converted at load to q8_0 / f16 computes exactly what the q8_0 / f16 file of the
 * same seed computes (the generator writes the same values quantized, see inferd-mkmodel.c);
 * an already quantized file is left as stored. */
Test(llama_load, weight_dtype_override_converts_float_matrices, .fini = fini)
{
	static const char *const dts[] = { "q8_0", "f16" };
	char f32[512], other[512], args[200];
	const char *base = "--dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab 512 "
	                   "--seed 9";
	snprintf(args, sizeof args, "%s --dtype f32", base);
	cr_assert_eq(mkmodel("conv-f32.gguf", args, f32, sizeof f32), 0);
	int32_t t[12];
	fill_tokens(t, 12, 77);
	static float want[12 * 512], got[12 * 512], plain[12 * 512];
	int nc;
	run_converted(f32, false, DTYPE_F32, t, 12, plain, &nc);
	cr_assert_eq(nc, 0);
	for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
		enum dtype to;
		cr_assert_eq(dtype_from_name(dts[i], &to), 0);
		char name[64];
		snprintf(name, sizeof name, "conv-%s.gguf", dts[i]);
		snprintf(args, sizeof args, "%s --dtype %s", base, dts[i]);
		cr_assert_eq(mkmodel(name, args, other, sizeof other), 0);
		run_converted(other, false, DTYPE_F32, t, 12, want, &nc);
		run_converted(f32, true, to, t, 12, got, &nc);
		/* token_embd, output and 7 matrices per layer */
		cr_expect_eq(nc, 2 + 7 * 2, "%s: %d matrices converted", dts[i], nc);
		double d = 0.0, dp = 0.0;
		for (int k = 0; k < 12 * 512; k++) {
			d = fmax(d, fabs((double)got[k] - want[k]));
			dp = fmax(dp, fabs((double)got[k] - plain[k]));
		}
		cr_expect_leq(d, 1e-5, "%s: converted differs from the %s file by %g", dts[i],
		              dts[i], d);
		cr_expect_gt(dp, 0.0, "%s: conversion changed nothing", dts[i]);
		/* a quantized file is not requantized */
		run_converted(other, true, DTYPE_Q4_0, t, 12, got, &nc);
		if (strcmp(dts[i], "q8_0") == 0)
			cr_expect_eq(nc, 0, "q8_0 file: %d matrices requantized", nc);
	}
}

/* ---- bad batches ---------------------------------------------------------------------- */

Test(llama_batch, bad_batches_are_refused, .fini = fini)
{
	char path[512];
	cr_assert_eq(mkmodel("bad-batch.gguf", "--vocab 300", path, sizeof path), 0);
	struct eng e;
	cr_assert_eq(eng_open(&e, path, 8, 4, 8), 0, "%s", e.err);
	int32_t t[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	int32_t table[3] = { 0, 1, 2 };
	float lg[300];
	struct fwd_seq f = { .tokens = t, .n_tokens = 9, .block_table = table, .n_blocks = 3,
	                     .logits = FWD_LOGITS_LAST };
	cr_expect_eq(llama_forward(e.m, e.kv, &f, 1, lg), -E2BIG, "more than max_batch tokens");
	f.n_tokens = 4;
	f.pos = 9; /* needs positions up to 12 > 3 blocks of 4 */
	cr_expect_eq(llama_forward(e.m, e.kv, &f, 1, lg), -EINVAL, "block table too short");
	f.pos = 0;
	t[1] = 300;
	cr_expect_eq(llama_forward(e.m, e.kv, &f, 1, lg), -EINVAL, "token id out of range");
	t[1] = 2;
	table[0] = 8;
	cr_expect_eq(llama_forward(e.m, e.kv, &f, 1, lg), -EINVAL, "block id out of range");
	table[0] = 0;
	f.n_tokens = 0;
	cr_expect_eq(llama_forward(e.m, e.kv, &f, 1, lg), -EINVAL, "empty sequence");
	f.n_tokens = 4;
	cr_expect_eq(llama_forward(e.m, e.kv, &f, 1, NULL), -EINVAL, "logits wanted, no buffer");
	cr_expect_eq(llama_forward(e.m, e.kv, &f, 1, lg), 0);
	eng_close(&e);
}

/* ---- bad models --------------------------------------------------------------------------- */

struct bad_case {
	char arch[16];
	char drop[40];
	char misshape[40];
	char drop_key[40];
	int want_rc;      /* negative errno */
	char want[80];    /* substring of the message */
};

ParameterizedTestParameters(llama_load, bad_models_fail_clearly)
{
	static struct bad_case cases[] = {
		{ "llama", "blk.1.ffn_up.weight", "", "", -EINVAL, "missing tensor blk.1.ffn_up.weight" },
		{ "llama", "token_embd.weight", "", "", -EINVAL, "missing tensor token_embd.weight" },
		{ "llama", "output_norm.weight", "", "", -EINVAL, "missing tensor output_norm.weight" },
		{ "qwen2", "blk.0.attn_k.bias", "", "", -EINVAL, "missing tensor blk.0.attn_k.bias" },
		{ "llama", "", "blk.0.attn_k.weight", "", -EINVAL,
		  "tensor blk.0.attn_k.weight has shape 96 x 32, expected 64 x 32" },
		{ "llama", "", "blk.1.attn_norm.weight", "", -EINVAL, "tensor blk.1.attn_norm.weight" },
		{ "mamba", "", "", "", -ENOTSUP, "unsupported architecture 'mamba'" },
		{ "llama", "", "", "block_count", -EINVAL, "missing key llama.block_count" },
		{ "llama", "", "", "embedding_length", -EINVAL, "missing key llama.embedding_length" },
		{ "llama", "", "", "attention.head_count", -EINVAL,
		  "missing key llama.attention.head_count" },
		{ "qwen2", "", "", "feed_forward_length", -EINVAL,
		  "missing key qwen2.feed_forward_length" },
	};
	return cr_make_param_array(struct bad_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct bad_case *c, llama_load, bad_models_fail_clearly, .fini = fini)
{
	char path[512];
	struct wm_opts o = { .arch = c->arch, .dim = 64, .layers = 2, .heads = 4, .kv_heads = 2,
	                     .ffn = 96, .vocab = 100, .bias = strcmp(c->arch, "qwen2") == 0,
	                     .drop = c->drop[0] ? c->drop : NULL,
	                     .misshape = c->misshape[0] ? c->misshape : NULL,
	                     .drop_key = c->drop_key[0] ? c->drop_key : NULL, .seed = 1 };
	cr_assert_eq(write_model("bad.gguf", &o, path, sizeof path), 0);
	struct eng e;
	int rc = eng_open(&e, path, 8, 16, 4);
	cr_expect_eq(rc, c->want_rc, "rc %d, want %d (%s)", rc, c->want_rc, e.err);
	cr_expect(strstr(e.err, c->want) != NULL, "message \"%s\" lacks \"%s\"", e.err, c->want);
	cr_expect_null(e.m);
	eng_close(&e);
}

Test(llama_load, good_handwritten_model_loads, .fini = fini)
{
	char path[512];
	struct wm_opts o = { .arch = "llama", .dim = 64, .layers = 2, .heads = 4, .kv_heads = 2,
	                     .ffn = 96, .vocab = 100, .seed = 1 };
	cr_assert_eq(write_model("good.gguf", &o, path, sizeof path), 0);
	struct eng e;
	cr_assert_eq(eng_open(&e, path, 8, 16, 4), 0, "%s", e.err);
	const struct llama_hparams *hp = llama_model_hparams(e.m);
	cr_expect_eq(hp->n_vocab, 100);
	cr_expect_eq(hp->head_dim, 16);
	cr_expect_eq(hp->n_kv_heads, 2);
	cr_expect_eq(hp->rope.style, ROPE_STYLE_NORMAL);
	cr_expect_float_eq(hp->rope.freq_base, 1e6f, 1.0f);
	cr_expect(!hp->tied_output);
	eng_close(&e);
}
