/* CLIP text encoder against tests/reference/clip_text_ref.py (numpy, float64) on random weights
 * written as a diffusers-named safetensors file; batching, clip skip, bad input. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "clip_text.h"
#include "clip_util.h"
#include "safetensors.h"

#define MAX_LAYERS 16

struct enc {
	struct st_file *f;
	struct clip_text *m;
	struct clip_text_config cfg;
	char path[512];
};

/* Writes random weights with the reference and builds the model. */
static void enc_make(struct enc *e, const char *name, const char *make_args, int heads,
                     enum clip_act act)
{
	char args[1024], err[256] = "";
	const char *d = clip_tmpdir();
	cr_assert_not_null(d);
	snprintf(e->path, sizeof e->path, "%s/%s.safetensors", d, name);
	snprintf(args, sizeof args, "make '%s' %s", e->path, make_args);
	int rc = clip_run_ref("clip_text_ref.py", args);
	if (rc == -ENOENT)
		cr_skip_test("no python3 with numpy: reference not run");
	cr_assert_eq(rc, 0, "clip_text_ref.py make failed");
	cr_assert_eq(st_open(e->path, &e->f, err, sizeof err), 0, "%s", err);
	static struct clip_layer_weights layers[MAX_LAYERS];
	struct clip_weights w;
	rc = clip_text_weights_from_st(e->f, &e->cfg, &w, layers, MAX_LAYERS, err, sizeof err);
	cr_assert_eq(rc, 0, "%s", err);
	e->cfg.n_heads = heads;
	e->cfg.ln_eps = 1e-5f;
	e->cfg.act = act;
	cr_assert_eq(clip_text_new(&e->cfg, &w, &e->m, err, sizeof err), 0, "%s", err);
}

static void enc_free(struct enc *e)
{
	clip_text_free(e->m);
	st_free(e->f);
}

static void fill_ids(int32_t *ids, int B, int T, int n_vocab, unsigned seed)
{
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			seed = seed * 1103515245u + 12345u;
			int n_used = 3 + 7 * b; /* BOS, some tokens, EOS, then EOS padding */
			ids[b * T + t] = t == 0 ? n_vocab - 2 : t >= n_used ? n_vocab - 1
			                 : (int32_t)((seed >> 8) % (unsigned)(n_vocab - 2));
		}
}

/* Runs the model and the reference on the same ids; returns the max abs difference. */
static double compare(struct enc *e, int B, int skip, const char *act)
{
	const int T = e->cfg.n_ctx, W = e->cfg.width;
	const size_t n = (size_t)B * T * W;
	int32_t *ids = malloc((size_t)B * T * sizeof *ids);
	float *out = malloc(n * sizeof *out);
	char ids_path[600], out_path[600], args[2048];
	cr_assert(ids != NULL && out != NULL);
	fill_ids(ids, B, T, e->cfg.n_vocab, 7u + (unsigned)B);
	cr_assert_eq(clip_text_forward(e->m, ids, B, skip, out, 0), 0);

	snprintf(ids_path, sizeof ids_path, "%s.ids", e->path);
	snprintf(out_path, sizeof out_path, "%s.out", e->path);
	FILE *f = fopen(ids_path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(ids, sizeof *ids, (size_t)B * T, f), (size_t)B * T);
	fclose(f);
	snprintf(args, sizeof args, "run '%s' '%s' '%s' --heads %d --act %s --skip %d", e->path,
	         ids_path, out_path, e->cfg.n_heads, act, skip);
	cr_assert_eq(clip_run_ref("clip_text_ref.py", args), 0, "clip_text_ref.py run failed");
	size_t len = 0;
	double *ref = (double *)clip_read_all(out_path, &len);
	cr_assert_not_null(ref);
	cr_assert_eq(len, n * sizeof(double));
	double md = 0;
	for (size_t i = 0; i < n; i++)
		md = fmax(md, fabs(out[i] - ref[i]));
	free(ref);
	free(ids);
	free(out);
	return md;
}

TestSuite(clip_text, .fini = clip_tmpdir_remove, .timeout = 120);

/* diffusers' tiny test pipeline: width 32, 4 heads, 5 layers, ffn 37, quick_gelu */
Test(clip_text, tiny_sd_encoder_matches_reference)
{
	struct enc e = { 0 };
	enc_make(&e, "tiny", "--vocab 1000 --ctx 77 --width 32 --layers 5 --ffn 37 --seed 1", 4,
	         CLIP_ACT_QUICK_GELU);
	double md = compare(&e, 2, 0, "quick_gelu");
	cr_log_info("tiny, B=2: max abs diff %.3g", md);
	cr_assert_lt(md, 1e-4, "max abs diff %.3g", md);
	enc_free(&e);
}

Test(clip_text, f16_weights_gelu_and_clip_skip_match_reference)
{
	struct enc e = { 0 };
	enc_make(&e, "f16", "--vocab 300 --ctx 77 --width 64 --layers 3 --ffn 256 --dtype f16 "
	         "--seed 2", 8, CLIP_ACT_GELU);
	for (int skip = 0; skip < 2; skip++) {
		double md = compare(&e, 3, skip, "gelu");
		cr_log_info("f16 gelu skip %d, B=3: max abs diff %.3g", skip, md);
		cr_assert_lt(md, 1e-4, "skip %d: max abs diff %.3g", skip, md);
	}
	enc_free(&e);
}

Test(clip_text, wide_heads_match_reference)
{
	struct enc e = { 0 };
	enc_make(&e, "wide", "--vocab 500 --ctx 77 --width 128 --layers 2 --ffn 512 --seed 3", 2,
	         CLIP_ACT_QUICK_GELU);
	double md = compare(&e, 1, 0, "quick_gelu");
	cr_log_info("width 128, B=1: max abs diff %.3g", md);
	cr_assert_lt(md, 1e-4, "max abs diff %.3g", md);
	enc_free(&e);
}

Test(clip_text, batch_rows_equal_single_prompts)
{
	struct enc e = { 0 };
	enc_make(&e, "batch", "--vocab 200 --ctx 77 --width 32 --layers 2 --ffn 64 --seed 4", 4,
	         CLIP_ACT_QUICK_GELU);
	const int T = 77, W = 32, B = 3;
	int32_t ids[3 * 77];
	float *all = malloc((size_t)B * T * W * sizeof *all), one[77 * 32];
	fill_ids(ids, B, T, 200, 99);
	cr_assert_eq(clip_text_forward(e.m, ids, B, 0, all, 1), 0);
	for (int b = 0; b < B; b++) {
		cr_assert_eq(clip_text_forward(e.m, ids + b * T, 1, 0, one, 2), 0);
		for (int i = 0; i < T * W; i++)
			cr_assert_float_eq(one[i], all[(size_t)b * T * W + i], 1e-5);
	}
	free(all);
	enc_free(&e);
}

Test(clip_text, bad_input_is_refused)
{
	struct enc e = { 0 };
	enc_make(&e, "bad", "--vocab 50 --ctx 8 --width 16 --layers 2 --ffn 32 --seed 5", 2,
	         CLIP_ACT_QUICK_GELU);
	int32_t ids[8] = { 0 };
	float out[8 * 16];
	cr_assert_eq(clip_text_forward(e.m, ids, 0, 0, out, 0), -EINVAL);
	cr_assert_eq(clip_text_forward(e.m, ids, 1, 2, out, 0), -EINVAL);
	cr_assert_eq(clip_text_forward(e.m, ids, 1, -1, out, 0), -EINVAL);
	ids[3] = 50;
	cr_assert_eq(clip_text_forward(e.m, ids, 1, 0, out, 0), -EINVAL);
	ids[3] = -1;
	cr_assert_eq(clip_text_forward(e.m, ids, 1, 0, out, 0), -EINVAL);

	/* config errors */
	struct clip_text_config c = e.cfg;
	struct clip_weights w = { 0 };
	struct clip_text *m = NULL;
	char err[256] = "";
	c.n_heads = 3;
	cr_assert_eq(clip_text_new(&c, &w, &m, err, sizeof err), -EINVAL);
	cr_assert_not_null(strstr(err, "bad config"));
	c.n_heads = 2;
	cr_assert_eq(clip_text_new(&c, &w, &m, err, sizeof err), -EINVAL);
	cr_assert_null(m);
	clip_text_free(NULL);

	/* a layer too many for the caller's table */
	struct clip_layer_weights one[1];
	cr_assert_eq(clip_text_weights_from_st(e.f, &c, &w, one, 1, err, sizeof err), -E2BIG);
	enc_free(&e);
}
