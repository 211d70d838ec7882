/* The text side on a real diffusers folder: inferd-mkmodel diffusion writes a tiny pipeline,
 * the folder loader (pipeline.h) opens it, and the CLIP tokenizer, the text encoder and the
 * noise scheduler are built from its files and configs as the image pipeline will. The text
 * encoder is compared with tests/reference/clip_text_ref.py, the tokenizer with
 * tests/reference/clip_tokenizer_ref.py on clip_corpus.txt. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "clip_text.h"
#include "clip_tokenizer.h"
#include "clip_util.h"
#include "noise_sched.h"
#include "pipeline.h"
#include "safetensors.h"

#define MAX_LAYERS 32

static struct diff_pipeline *pl;
static char dir[512];

static void open_pipeline(const char *dtype)
{
	const char *mk = getenv("INFERD_MKMODEL"), *d = clip_tmpdir();
	char cmd[1200], err[256] = "";
	if (mk == NULL)
		cr_skip_test("INFERD_MKMODEL not set");
	cr_assert_not_null(d);
	snprintf(dir, sizeof dir, "%s/sd-%s", d, dtype);
	snprintf(cmd, sizeof cmd, "'%s' diffusion --out '%s' --dtype %s --seed 3 >/dev/null", mk,
	         dir, dtype);
	cr_assert_eq(system(cmd), 0, "%s failed", cmd);
	cr_assert_eq(diff_pipeline_open(dir, &pl, err, sizeof err), 0, "%s", err);
}

static void close_pipeline(void)
{
	diff_pipeline_free(pl);
	pl = NULL;
	clip_tmpdir_remove();
}

/* Text encoder of the folder, configured from text_encoder/config.json. */
static struct clip_text *text_encoder(void)
{
	static struct clip_layer_weights layers[MAX_LAYERS];
	const struct diff_clip_config *cc = diff_pipeline_clip(pl);
	struct clip_text_config cfg;
	struct clip_weights w;
	struct clip_text *m = NULL;
	char err[256] = "";
	int rc = clip_text_weights_from_st(diff_pipeline_text_weights(pl), &cfg, &w, layers,
	                                   MAX_LAYERS, err, sizeof err);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(cfg.width, cc->hidden_size);
	cr_assert_eq(cfg.n_layers, cc->num_hidden_layers);
	cr_assert_eq(cfg.ffn, cc->intermediate_size);
	cr_assert_eq(cfg.n_vocab, cc->vocab_size);
	cr_assert_eq(cfg.n_ctx, cc->max_position_embeddings);
	cfg.n_heads = cc->num_attention_heads;
	cfg.ln_eps = cc->layer_norm_eps;
	cfg.act = cc->hidden_act == DIFF_ACT_GELU ? CLIP_ACT_GELU : CLIP_ACT_QUICK_GELU;
	cr_assert_eq(clip_text_new(&cfg, &w, &m, err, sizeof err), 0, "%s", err);
	return m;
}

static void prompt_embeddings_match_reference(const char *dtype)
{
	open_pipeline(dtype);
	struct clip_tokenizer *tok = NULL;
	char err[256] = "";
	cr_assert_eq(clip_tok_new(diff_pipeline_vocab_path(pl), diff_pipeline_merges_path(pl),
	                          &tok, err, sizeof err), 0, "%s", err);
	struct clip_text *m = text_encoder();
	const struct clip_text_config *c = clip_text_get_config(m);
	const int T = c->n_ctx, W = c->width;
	cr_assert_eq(T, CLIP_TOK_N_CTX);

	/* cond + uncond, as classifier-free guidance runs them */
	int32_t ids[2 * CLIP_TOK_N_CTX];
	const char *prompt = "A photo of an astronaut riding a horse on the moon, 4k!";
	cr_assert_eq(clip_tok_encode(tok, prompt, strlen(prompt), clip_tok_eos(tok), ids, T, NULL),
	             0);
	cr_assert_eq(clip_tok_encode(tok, "", 0, clip_tok_eos(tok), ids + T, T, NULL), 0);
	for (int i = 0; i < 2 * T; i++)
		cr_assert(ids[i] >= 0 && ids[i] < c->n_vocab);
	float *out = malloc(2 * (size_t)T * W * sizeof *out);
	cr_assert_eq(clip_text_forward(m, ids, 2, 0, out, 0), 0);

	char ids_path[600], out_path[600], args[2048];
	snprintf(ids_path, sizeof ids_path, "%s/ids.bin", dir);
	snprintf(out_path, sizeof out_path, "%s/out.bin", dir);
	FILE *f = fopen(ids_path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(ids, sizeof *ids, 2 * (size_t)T, f), 2 * (size_t)T);
	fclose(f);
	snprintf(args, sizeof args, "run '%s/text_encoder/model.safetensors' '%s' '%s' --heads %d "
	         "--act %s --eps %.9g", dir, ids_path, out_path, c->n_heads,
	         c->act == CLIP_ACT_GELU ? "gelu" : "quick_gelu", (double)c->ln_eps);
	int rc = clip_run_ref("clip_text_ref.py", args);
	if (rc == -ENOENT)
		cr_skip_test("no python3 with numpy: reference not run");
	cr_assert_eq(rc, 0);
	size_t len = 0;
	double *ref = (double *)clip_read_all(out_path, &len);
	cr_assert_not_null(ref);
	cr_assert_eq(len, 2 * (size_t)T * W * sizeof(double));
	double md = 0;
	for (size_t i = 0; i < 2 * (size_t)T * W; i++)
		md = fmax(md, fabs(out[i] - ref[i]));
	cr_log_info("mkmodel %s text encoder, B=2: max abs diff %.3g", dtype, md);
	cr_assert_lt(md, 1e-4, "max abs diff %.3g", md);
	free(ref);
	free(out);
	clip_text_free(m);
	clip_tok_free(tok);
}

TestSuite(clip_pipeline, .fini = close_pipeline, .timeout = 120);

Test(clip_pipeline, f32_folder_prompt_embeddings_match_reference)
{
	prompt_embeddings_match_reference("f32");
}

Test(clip_pipeline, f16_folder_prompt_embeddings_match_reference)
{
	prompt_embeddings_match_reference("f16");
}

Test(clip_pipeline, folder_tokenizer_matches_reference)
{
	open_pipeline("f32");
	struct clip_tokenizer *tok = NULL;
	char err[256] = "", args[2048], out[600];
	const char *corpus = getenv("INFERD_CLIP_CORPUS");
	cr_assert_not_null(corpus);
	cr_assert_eq(clip_tok_new_from_folder(dir, &tok, err, sizeof err), -ENOENT); /* the root */
	cr_assert_not_null(strstr(err, "vocab.json"));
	snprintf(out, sizeof out, "%s/tokenizer", dir);
	cr_assert_eq(clip_tok_new_from_folder(out, &tok, err, sizeof err), 0, "%s", err);
	snprintf(out, sizeof out, "%s/ref.bin", dir);
	snprintf(args, sizeof args, "encode '%s/tokenizer' '%s' '%s'", dir, corpus, out);
	int rc = clip_run_ref("clip_tokenizer_ref.py", args);
	if (rc == -ENOENT)
		cr_skip_test("no python3: reference not run");
	cr_assert_eq(rc, 0);
	size_t len = 0, n_cases = 0;
	char *cases = clip_read_all(out, &len);
	cr_assert_not_null(cases);
	int32_t got[4096];
	for (size_t p = 0; p + 8 <= len; n_cases++) {
		uint32_t nb, ni;
		memcpy(&nb, cases + p, 4);
		memcpy(&ni, cases + p + 4 + nb, 4);
		size_t n = 0;
		cr_assert_eq(clip_tok_encode_raw(tok, cases + p + 4, nb, got, 4096, &n), 0);
		cr_assert_eq(n, ni, "case %zu: %zu tokens, reference %u", n_cases, n, ni);
		cr_assert_eq(memcmp(got, cases + p + 8 + nb, 4 * (size_t)ni), 0, "case %zu differs",
		             n_cases);
		p += 8 + nb + 4 * (size_t)ni;
	}
	cr_assert_gt(n_cases, 30);
	free(cases);
	clip_tok_free(tok);
}

Test(clip_pipeline, scheduler_config_names_are_understood)
{
	open_pipeline("f32");
	const struct diff_scheduler_config *sc = diff_pipeline_scheduler(pl);
	struct nsched_config c;
	nsched_config_default(&c);
	c.num_train_timesteps = sc->num_train_timesteps;
	c.beta_start = sc->beta_start;
	c.beta_end = sc->beta_end;
	c.steps_offset = sc->steps_offset;
	c.set_alpha_to_one = sc->set_alpha_to_one;
	cr_assert_eq(nsched_beta_from_name(sc->beta_schedule, &c.beta_schedule), 0);
	cr_assert_eq(nsched_pred_from_name(sc->prediction_type, &c.prediction), 0);
	cr_assert_eq(nsched_spacing_from_name(sc->timestep_spacing, &c.spacing), 0);
	for (int k = NSCHED_DDIM; k <= NSCHED_LCM; k++) {
		struct nsched *s = NULL;
		cr_assert_eq(nsched_new((enum nsched_kind)k, &c, 4, &s), 0);
		cr_assert_eq(nsched_n_steps(s), 4);
		nsched_free(s);
	}
}
