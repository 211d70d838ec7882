/* Tests of the diffusers folder loader (pipeline.h) on pipelines written by
 * inferd-mkmodel diffusion ($INFERD_MKMODEL): every config value reads back,
 * real SD 1.5 / 2.x config files parse and imply the tensor counts of the real
 * weight files, and a missing file, key or tensor or a wrong shape is an error
 * naming the file and the key or tensor. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipeline.h"

static char tmpdir[] = "/tmp/inferd-pipeline-test-XXXXXX";
static char sd[300]; /* the generated pipeline */

static int mkmodel(const char *out, const char *size, const char *dtype, const char *seed)
{
	const char *exe = getenv("INFERD_MKMODEL");
	cr_assert_not_null(exe, "INFERD_MKMODEL is not set (run through meson test)");
	pid_t pid = fork();
	if (pid == 0) {
		execl(exe, exe, "diffusion", "--out", out, "--size", size, "--dtype", dtype, "--seed",
		      seed, (char *)NULL);
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void setup(void)
{
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(sd, sizeof sd, "%s/sd", tmpdir);
	cr_assert_eq(mkmodel(sd, "tiny", "f32", "7"), 0);
}

static void teardown(void)
{
	char cmd[350];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", tmpdir);
}

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 120);

static void expect_open_fails(int code, const char *s1, const char *s2)
{
	struct diff_pipeline *p = NULL;
	char err[512] = "";
	int rc = diff_pipeline_open(sd, &p, err, sizeof err);
	cr_expect_eq(rc, code, "rc %d: %s", rc, err);
	cr_expect_null(p);
	cr_expect_not_null(strstr(err, s1), "'%s' lacks '%s'", err, s1);
	if (s2)
		cr_expect_not_null(strstr(err, s2), "'%s' lacks '%s'", err, s2);
	diff_pipeline_free(p);
}

/* Sets key of DIR/rel (a JSON object) to v (stolen); v NULL deletes it. */
static void edit_json(const char *rel, const char *key, json_t *v)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", sd, rel);
	json_t *j = json_load_file(path, 0, NULL);
	cr_assert_not_null(j, "%s", path);
	if (v)
		json_object_set_new(j, key, v);
	else
		json_object_del(j, key);
	cr_assert_eq(json_dump_file(j, path, JSON_INDENT(1)), 0);
	json_decref(j);
}

Test(pipeline, generated_tiny_pipeline_reads_back)
{
	struct diff_pipeline *p;
	char err[512];
	cr_assert_eq(diff_pipeline_open(sd, &p, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(diff_pipeline_dir(p), sd);
	const struct diff_model_index *mi = diff_pipeline_index(p);
	cr_expect_str_eq(mi->class_name, "StableDiffusionPipeline");
	cr_expect_str_eq(mi->scheduler_class, "DDIMScheduler");

	const struct diff_unet_config *u = diff_pipeline_unet(p);
	cr_expect_eq(u->n_blocks, 2);
	cr_expect(u->block_out_channels[0] == 32 && u->block_out_channels[1] == 64);
	cr_expect(u->in_channels == 4 && u->out_channels == 4);
	cr_expect_eq(u->layers_per_block, 2);
	cr_expect_eq(u->cross_attention_dim, 32);
	cr_expect(u->attention_heads[0] == 8 && u->attention_heads[1] == 8);
	cr_expect(u->transformer_layers[0] == 1 && u->transformer_layers[1] == 1);
	cr_expect(u->down_blocks[0] == DIFF_BLOCK_CROSS_ATTN_DOWN && u->down_blocks[1] == DIFF_BLOCK_DOWN);
	cr_expect(u->up_blocks[0] == DIFF_BLOCK_UP && u->up_blocks[1] == DIFF_BLOCK_CROSS_ATTN_UP);
	cr_expect_eq(u->sample_size, 32);
	cr_expect_eq(u->norm_num_groups, 32);
	cr_expect_float_eq(u->norm_eps, 1e-5f, 1e-12);
	cr_expect(u->has_mid_block && u->flip_sin_to_cos && !u->use_linear_projection);
	cr_expect(!u->upcast_attention && !u->center_input_sample);
	cr_expect_eq(u->freq_shift, 0);
	cr_expect_eq(u->downsample_padding, 1);
	cr_expect_eq(u->time_embed_dim, 128);
	cr_expect_eq(u->time_cond_proj_dim, 0);
	cr_expect_float_eq(u->mid_block_scale_factor, 1.0f, 0);

	const struct diff_vae_config *v = diff_pipeline_vae(p);
	cr_expect(v->n_blocks == 2 && v->block_out_channels[0] == 32 && v->block_out_channels[1] == 64);
	cr_expect(v->in_channels == 3 && v->out_channels == 3);
	cr_expect_eq(v->latent_channels, 4);
	cr_expect_eq(v->layers_per_block, 1);
	cr_expect_eq(v->norm_num_groups, 32);
	cr_expect_eq(v->sample_size, 64);
	cr_expect_float_eq(v->scaling_factor, 0.18215f, 1e-9);
	cr_expect_float_eq(v->shift_factor, 0.0f, 0);
	cr_expect(v->use_quant_conv && v->use_post_quant_conv && v->mid_block_add_attention);

	const struct diff_clip_config *t = diff_pipeline_clip(p);
	cr_expect_eq(t->hidden_size, 32);
	cr_expect_eq(t->intermediate_size, 37);
	cr_expect_eq(t->num_hidden_layers, 5);
	cr_expect_eq(t->num_attention_heads, 4);
	cr_expect_eq(t->max_position_embeddings, 77);
	cr_expect_eq(t->vocab_size, 1000);
	cr_expect_eq(t->hidden_act, DIFF_ACT_QUICK_GELU);
	cr_expect_float_eq(t->layer_norm_eps, 1e-5f, 1e-12);
	cr_expect(t->bos_token_id == 998 && t->eos_token_id == 999 && t->pad_token_id == 999);

	const struct diff_scheduler_config *s = diff_pipeline_scheduler(p);
	cr_expect_str_eq(s->class_name, "DDIMScheduler");
	cr_expect_eq(s->num_train_timesteps, 1000);
	cr_expect_float_eq(s->beta_start, 0.00085f, 1e-9);
	cr_expect_float_eq(s->beta_end, 0.012f, 1e-9);
	cr_expect_str_eq(s->beta_schedule, "scaled_linear");
	cr_expect_str_eq(s->prediction_type, "epsilon");
	cr_expect_str_eq(s->timestep_spacing, "leading");
	cr_expect(!s->set_alpha_to_one && !s->clip_sample && !s->thresholding);
	cr_expect_eq(s->steps_offset, 1);

	const struct st_tensor *w = st_get(diff_pipeline_unet_weights(p), "conv_in.weight");
	cr_assert_not_null(w);
	cr_expect(w->n_dims == 4 && w->shape[0] == 32 && w->shape[1] == 4 && w->shape[2] == 3);
	w = st_get(diff_pipeline_unet_weights(p),
	           "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight");
	cr_assert_not_null(w);
	cr_expect(w->shape[0] == 256 && w->shape[1] == 32, "GEGLU: 2 x 4 x 32 outputs");
	cr_expect_not_null(st_get(diff_pipeline_unet_weights(p), "up_blocks.0.upsamplers.0.conv.weight"));
	cr_expect_not_null(st_get(diff_pipeline_vae_weights(p), "decoder.mid_block.attentions.0.to_q.weight"));
	w = st_get(diff_pipeline_text_weights(p), "text_model.embeddings.position_ids");
	cr_assert_not_null(w);
	cr_expect_str_eq(w->dtype_name, "I64");
	cr_expect_eq(((const int64_t *)w->data)[76], 76);
	cr_expect_not_null(strstr(diff_pipeline_vocab_path(p), "tokenizer/vocab.json"));
	cr_expect_not_null(strstr(diff_pipeline_merges_path(p), "tokenizer/merges.txt"));
	diff_pipeline_free(p);
	diff_pipeline_free(NULL);
}

Test(pipeline, f16_small_and_determinism)
{
	char dir[350], dir2[350], err[512];
	struct diff_pipeline *p, *q;
	snprintf(dir, sizeof dir, "%s/small16", tmpdir);
	cr_assert_eq(mkmodel(dir, "small", "f16", "7"), 0);
	cr_assert_eq(diff_pipeline_open(dir, &p, err, sizeof err), 0, "%s", err);
	cr_expect_eq(diff_pipeline_unet(p)->n_blocks, 3);
	const struct st_tensor *a = st_get(diff_pipeline_unet_weights(p), "conv_out.weight");
	cr_assert_str_eq(a->dtype_name, "F16");
	/* same seed, f32 small: the f16 values are the rounded f32 values */
	snprintf(dir2, sizeof dir2, "%s/small32", tmpdir);
	cr_assert_eq(mkmodel(dir2, "small", "f32", "7"), 0);
	cr_assert_eq(diff_pipeline_open(dir2, &q, err, sizeof err), 0, "%s", err);
	const struct st_tensor *b = st_get(diff_pipeline_unet_weights(q), "conv_out.weight");
	float x[4096], y[4096];
	cr_assert_leq(a->n_elements, 4096);
	cr_assert_eq(st_tensor_to_f32(a, x, 4096), 0);
	cr_assert_eq(st_tensor_to_f32(b, y, 4096), 0);
	for (uint64_t i = 0; i < a->n_elements; i++)
		cr_assert_eq(x[i], dtype_f16_to_f32(dtype_f32_to_f16(y[i])), "element %llu",
		             (unsigned long long)i);
	diff_pipeline_free(p);
	diff_pipeline_free(q);

	/* same seed twice: identical bytes; another seed: other values */
	char cmd[4096];
	snprintf(dir, sizeof dir, "%s/again", tmpdir);
	cr_assert_eq(mkmodel(dir, "tiny", "f32", "7"), 0);
	snprintf(cmd, sizeof cmd, "cmp -s %s/unet/diffusion_pytorch_model.safetensors "
	         "%s/unet/diffusion_pytorch_model.safetensors && diff -r %s %s >/dev/null", sd, dir, sd, dir);
	cr_expect_eq(system(cmd), 0, "same seed, different files");
	snprintf(dir, sizeof dir, "%s/other", tmpdir);
	cr_assert_eq(mkmodel(dir, "tiny", "f32", "8"), 0);
	snprintf(cmd, sizeof cmd, "cmp -s %s/unet/diffusion_pytorch_model.safetensors "
	         "%s/unet/diffusion_pytorch_model.safetensors", sd, dir);
	cr_expect_neq(system(cmd), 0, "another seed, same weights");
}

static void move(const char *from, const char *to)
{
	char a[512], b[512];
	snprintf(a, sizeof a, "%s/%s", sd, from);
	snprintf(b, sizeof b, "%s/%s", sd, to);
	cr_assert_eq(rename(a, b), 0, "%s -> %s", a, b);
}

Test(pipeline, missing_files_are_named)
{
	move("unet/config.json", "unet/config.bak");
	expect_open_fails(-ENOENT, "unet/config.json: cannot open", NULL);
	move("unet/config.bak", "unet/config.json");
	move("tokenizer/merges.txt", "tokenizer/merges.bak");
	expect_open_fails(-ENOENT, "tokenizer/merges.txt: cannot open", NULL);
	move("tokenizer/merges.bak", "tokenizer/merges.txt");
	move("model_index.json", "model_index.bak");
	expect_open_fails(-ENOENT, "model_index.json: cannot open", NULL);
	move("model_index.bak", "model_index.json");
	move("vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin");
	expect_open_fails(-ENOTSUP, "vae/diffusion_pytorch_model.bin", "not supported");
	move("vae/diffusion_pytorch_model.bin", "vae/x");
	expect_open_fails(-ENOENT, "vae/diffusion_pytorch_model.safetensors: cannot open", NULL);

	struct diff_pipeline *p;
	char err[512];
	cr_expect_eq(diff_pipeline_open("/nonexistent/sd", &p, err, sizeof err), -ENOENT);
	cr_expect_not_null(strstr(err, "/nonexistent/sd: not a diffusers folder"), "%s", err);
}

Test(pipeline, fp16_variant_file_name)
{
	char a[512], b[512], err[512];
	snprintf(a, sizeof a, "%s/unet/diffusion_pytorch_model.safetensors", sd);
	snprintf(b, sizeof b, "%s/unet/diffusion_pytorch_model.fp16.safetensors", sd);
	cr_assert_eq(rename(a, b), 0);
	struct diff_pipeline *p;
	cr_assert_eq(diff_pipeline_open(sd, &p, err, sizeof err), 0, "%s", err);
	cr_expect_not_null(strstr(st_path(diff_pipeline_unet_weights(p)), ".fp16.safetensors"));
	diff_pipeline_free(p);
}

Test(pipeline, missing_keys_are_named)
{
	edit_json("unet/config.json", "block_out_channels", NULL);
	expect_open_fails(-EBADMSG, "unet/config.json: required key \"block_out_channels\" is missing",
	                  NULL);
	edit_json("unet/config.json", "block_out_channels", json_pack("[i,i]", 32, 64));
	edit_json("text_encoder/config.json", "hidden_size", NULL);
	expect_open_fails(-EBADMSG, "text_encoder/config.json", "\"hidden_size\"");
	edit_json("text_encoder/config.json", "hidden_size", json_integer(32));
	edit_json("model_index.json", "vae", NULL);
	expect_open_fails(-EBADMSG, "model_index.json", "\"vae\"");
	edit_json("model_index.json", "vae", json_pack("[s,s]", "diffusers", "AutoencoderKL"));
	edit_json("scheduler/scheduler_config.json", "_class_name", NULL);
	expect_open_fails(-EBADMSG, "scheduler_config.json", "\"_class_name\"");
}

Test(pipeline, bad_values_are_named)
{
	edit_json("unet/config.json", "down_block_types",
	          json_pack("[s,s]", "SimpleCrossAttnDownBlock2D", "DownBlock2D"));
	expect_open_fails(-ENOTSUP, "unet/config.json", "\"SimpleCrossAttnDownBlock2D\"");
	edit_json("unet/config.json", "down_block_types",
	          json_pack("[s,s]", "CrossAttnDownBlock2D", "DownBlock2D"));
	edit_json("unet/config.json", "layers_per_block", json_string("two"));
	expect_open_fails(-EBADMSG, "unet/config.json", "\"layers_per_block\": not an integer");
	edit_json("unet/config.json", "layers_per_block", json_integer(2));
	edit_json("unet/config.json", "attention_head_dim", json_integer(7));
	expect_open_fails(-EBADMSG, "unet/config.json", "7 heads do not divide");
	edit_json("unet/config.json", "attention_head_dim", json_pack("[i,i]", 4, 8));
	edit_json("scheduler/scheduler_config.json", "beta_schedule", json_string("cubic"));
	expect_open_fails(-ENOTSUP, "scheduler_config.json", "\"cubic\"");
	edit_json("scheduler/scheduler_config.json", "beta_schedule", json_string("linear"));
	edit_json("unet/config.json", "class_embed_type", json_string("timestep"));
	expect_open_fails(-ENOTSUP, "unet/config.json", "\"class_embed_type\"");
	edit_json("unet/config.json", "class_embed_type", json_null());
	edit_json("vae/config.json", "latent_channels", json_integer(8));
	expect_open_fails(-EBADMSG, "latent_channels 8", NULL);
	edit_json("vae/config.json", "latent_channels", json_integer(4));
	/* everything restored (attention_head_dim as a list now): opens */
	struct diff_pipeline *p;
	char err[512];
	cr_assert_eq(diff_pipeline_open(sd, &p, err, sizeof err), 0, "%s", err);
	cr_expect_eq(diff_pipeline_unet(p)->attention_heads[0], 4);
	diff_pipeline_free(p);
}

Test(pipeline, wrong_shapes_are_named)
{
	edit_json("text_encoder/config.json", "intermediate_size", json_integer(38));
	expect_open_fails(-EBADMSG, "text_encoder/model.safetensors: tensor "
	                  "'text_model.encoder.layers.0.mlp.fc1.weight' has shape [37, 32], the "
	                  "config implies [38, 32]", NULL);
	edit_json("text_encoder/config.json", "intermediate_size", json_integer(37));
	edit_json("unet/config.json", "use_linear_projection", json_true());
	expect_open_fails(-EBADMSG, "unet/diffusion_pytorch_model.safetensors: tensor "
	                  "'down_blocks.0.attentions.0.proj_in.weight' has shape [32, 32, 1, 1], "
	                  "the config implies [32, 32]", NULL);
}

/* Rewrites vae weights: drop is a tensor left out, rename_old gives the
 * attention projections their old names. */
struct copy {
	const struct st_file *f;
	const struct st_tensor *src[1024];
	size_t n;
};

static int copy_fill(size_t idx, void *buf, size_t nbytes, void *arg)
{
	const struct copy *c = arg;
	memcpy(buf, c->src[idx]->data, nbytes);
	return 0;
}

static void rewrite_vae(const char *drop, bool rename_old)
{
	char path[512], err[512], name[256];
	struct st_file *f;
	struct copy c = { 0 };
	snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", sd);
	cr_assert_eq(st_open(path, &f, err, sizeof err), 0, "%s", err);
	struct st_writer *w = st_writer_new();
	for (int64_t i = 0; i < st_n_tensors(f); i++) {
		const struct st_tensor *t = st_tensor(f, i);
		if (drop && strcmp(t->name, drop) == 0)
			continue;
		snprintf(name, sizeof name, "%s", t->name);
		char *at;
		if (rename_old && (at = strstr(name, "attentions.0.to_q")) != NULL)
			snprintf(at, 64, "attentions.0.query%s", strstr(t->name, "to_q") + 4);
		if (rename_old && (at = strstr(name, "attentions.0.to_out.0")) != NULL)
			snprintf(at, 64, "attentions.0.proj_attn%s", strstr(t->name, "to_out.0") + 8);
		cr_assert_eq(st_writer_add_tensor(w, name, t->dtype_name, t->n_dims, t->shape), 0);
		c.src[c.n++] = t;
	}
	cr_assert_eq(st_writer_write(w, path, copy_fill, &c, err, sizeof err), 0, "%s", err);
	st_writer_free(w);
	st_free(f);
}

Test(pipeline, missing_tensor_and_old_vae_names)
{
	struct diff_pipeline *p;
	char err[512];
	rewrite_vae(NULL, true);
	cr_assert_eq(diff_pipeline_open(sd, &p, err, sizeof err), 0, "old names: %s", err);
	cr_expect_not_null(st_get(diff_pipeline_vae_weights(p),
	                          "encoder.mid_block.attentions.0.query.weight"));
	diff_pipeline_free(p);
	rewrite_vae("decoder.conv_out.bias", false);
	expect_open_fails(-EBADMSG, "vae/diffusion_pytorch_model.safetensors: tensor "
	                  "'decoder.conv_out.bias' is missing (expected shape [3])", NULL);
}

Test(pipeline, tokenizer_files_are_checked)
{
	char path[512];
	snprintf(path, sizeof path, "%s/tokenizer/vocab.json", sd);
	json_t *j = json_load_file(path, 0, NULL);
	json_object_set_new(j, "zzz</w>", json_integer(5000));
	json_dump_file(j, path, 0);
	json_decref(j);
	expect_open_fails(-EBADMSG, "tokenizer/vocab.json: token \"zzz</w>\"", "vocab_size");
	json_t *k = json_pack("{s:i}", "a", 1);
	json_dump_file(k, path, 0);
	json_decref(k);
	snprintf(path, sizeof path, "%s/tokenizer/merges.txt", sd);
	FILE *f = fopen(path, "w");
	fputs("#version: 0.2\na b\nabc\n", f);
	fclose(f);
	expect_open_fails(-EBADMSG, "tokenizer/merges.txt: line 3", NULL);
}

/* ---- real Stable Diffusion config files ----------------------------------------------- */

static const char sd15_unet[] =
	"{\"_class_name\": \"UNet2DConditionModel\", \"_diffusers_version\": \"0.6.0\", "
	"\"act_fn\": \"silu\", \"attention_head_dim\": 8, \"block_out_channels\": [320, 640, 1280, 1280], "
	"\"center_input_sample\": false, \"cross_attention_dim\": 768, \"down_block_types\": "
	"[\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"], "
	"\"downsample_padding\": 1, \"flip_sin_to_cos\": true, \"freq_shift\": 0, \"in_channels\": 4, "
	"\"layers_per_block\": 2, \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-05, "
	"\"norm_num_groups\": 32, \"out_channels\": 4, \"sample_size\": 64, \"up_block_types\": "
	"[\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]}";

static const char sd2_unet[] =
	"{\"_class_name\": \"UNet2DConditionModel\", \"_diffusers_version\": \"0.10.0.dev0\", "
	"\"act_fn\": \"silu\", \"attention_head_dim\": [5, 10, 20, 20], \"block_out_channels\": "
	"[320, 640, 1280, 1280], \"center_input_sample\": false, \"cross_attention_dim\": 1024, "
	"\"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", "
	"\"CrossAttnDownBlock2D\", \"DownBlock2D\"], \"downsample_padding\": 1, "
	"\"dual_cross_attention\": false, \"flip_sin_to_cos\": true, \"freq_shift\": 0, "
	"\"in_channels\": 4, \"layers_per_block\": 2, \"mid_block_scale_factor\": 1, "
	"\"norm_eps\": 1e-05, \"norm_num_groups\": 32, \"num_class_embeds\": null, "
	"\"only_cross_attention\": false, \"out_channels\": 4, \"sample_size\": 96, "
	"\"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", "
	"\"CrossAttnUpBlock2D\"], \"use_linear_projection\": true, \"upcast_attention\": true}";

static const char sd15_vae[] =
	"{\"_class_name\": \"AutoencoderKL\", \"_diffusers_version\": \"0.6.0\", \"act_fn\": \"silu\", "
	"\"block_out_channels\": [128, 256, 512, 512], \"down_block_types\": [\"DownEncoderBlock2D\", "
	"\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\"], \"in_channels\": 3, "
	"\"latent_channels\": 4, \"layers_per_block\": 2, \"norm_num_groups\": 32, \"out_channels\": 3, "
	"\"sample_size\": 512, \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", "
	"\"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}";

static const char sd15_clip[] =
	"{\"_name_or_path\": \"openai/clip-vit-large-patch14\", \"architectures\": [\"CLIPTextModel\"], "
	"\"attention_dropout\": 0.0, \"bos_token_id\": 0, \"dropout\": 0.0, \"eos_token_id\": 2, "
	"\"hidden_act\": \"quick_gelu\", \"hidden_size\": 768, \"initializer_factor\": 1.0, "
	"\"initializer_range\": 0.02, \"intermediate_size\": 3072, \"layer_norm_eps\": 1e-05, "
	"\"max_position_embeddings\": 77, \"model_type\": \"clip_text_model\", "
	"\"num_attention_heads\": 12, \"num_hidden_layers\": 12, \"pad_token_id\": 1, "
	"\"projection_dim\": 768, \"torch_dtype\": \"float32\", \"transformers_version\": \"4.22.0.dev0\", "
	"\"vocab_size\": 49408}";

static const char sd15_sched[] =
	"{\"_class_name\": \"PNDMScheduler\", \"_diffusers_version\": \"0.6.0\", \"beta_end\": 0.012, "
	"\"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085, \"num_train_timesteps\": 1000, "
	"\"set_alpha_to_one\": false, \"skip_prk_steps\": true, \"steps_offset\": 1, "
	"\"trained_betas\": null, \"clip_sample\": false}";

static void put(const char *name, const char *text, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static int count_cb(const char *name, const char *alt, uint32_t nd, const int64_t *shape,
                    enum diff_tensor_kind kind, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static int shape_cb(const char *name, const char *alt, uint32_t nd, const int64_t *shape,
                    enum diff_tensor_kind kind, void *arg)
{
	/* SD 1.5: the first up block's first resnet takes 1280 + 1280 channels */
	if (strcmp(name, "up_blocks.0.resnets.0.conv1.weight") == 0)
		cr_expect(shape[0] == 1280 && shape[1] == 2560);
	if (strcmp(name, "up_blocks.3.resnets.0.conv1.weight") == 0)
		cr_expect(shape[0] == 320 && shape[1] == 960);
	if (strcmp(name, "time_embedding.linear_1.weight") == 0)
		cr_expect(shape[0] == 1280 && shape[1] == 320);
	return 0;
}

Test(pipeline, real_sd_configs_parse_and_imply_the_real_tensor_counts)
{
	char path[512], err[512];
	struct diff_unet_config u;
	struct diff_vae_config v;
	struct diff_clip_config t;
	struct diff_scheduler_config s;
	int n = 0;

	put("sd15_unet.json", sd15_unet, path, sizeof path);
	cr_assert_eq(diff_unet_config_load(path, &u, err, sizeof err), 0, "%s", err);
	cr_expect(u.n_blocks == 4 && u.block_out_channels[3] == 1280 && u.cross_attention_dim == 768);
	cr_expect(u.attention_heads[0] == 8 && u.attention_heads[3] == 8 && !u.use_linear_projection);
	cr_expect_eq(u.time_embed_dim, 1280);
	diff_unet_tensors(&u, count_cb, &n);
	cr_expect_eq(n, 686, "SD 1.5 UNet has 686 tensors, walk gives %d", n);
	diff_unet_tensors(&u, shape_cb, NULL);

	put("sd2_unet.json", sd2_unet, path, sizeof path);
	cr_assert_eq(diff_unet_config_load(path, &u, err, sizeof err), 0, "%s", err);
	cr_expect(u.attention_heads[0] == 5 && u.attention_heads[1] == 10 && u.attention_heads[3] == 20);
	cr_expect(u.use_linear_projection && u.upcast_attention && u.sample_size == 96);
	n = 0;
	diff_unet_tensors(&u, count_cb, &n);
	cr_expect_eq(n, 686);

	put("sd15_vae.json", sd15_vae, path, sizeof path);
	cr_assert_eq(diff_vae_config_load(path, &v, err, sizeof err), 0, "%s", err);
	cr_expect(v.n_blocks == 4 && v.layers_per_block == 2 && v.sample_size == 512);
	cr_expect_float_eq(v.scaling_factor, 0.18215f, 1e-9); /* the diffusers default */
	n = 0;
	diff_vae_tensors(&v, count_cb, &n);
	cr_expect_eq(n, 248, "SD 1.5 VAE has 248 tensors, walk gives %d", n);

	put("sd15_clip.json", sd15_clip, path, sizeof path);
	cr_assert_eq(diff_clip_config_load(path, &t, err, sizeof err), 0, "%s", err);
	cr_expect(t.hidden_size == 768 && t.num_hidden_layers == 12 && t.vocab_size == 49408);
	cr_expect(t.hidden_act == DIFF_ACT_QUICK_GELU && t.bos_token_id == 0);
	n = 0;
	diff_clip_tensors(&t, count_cb, &n);
	cr_expect_eq(n, 196, "CLIP ViT-L/14 text model: 196 float tensors, walk gives %d", n);

	put("sd15_sched.json", sd15_sched, path, sizeof path);
	cr_assert_eq(diff_scheduler_config_load(path, &s, err, sizeof err), 0, "%s", err);
	cr_expect_str_eq(s.class_name, "PNDMScheduler");
	cr_expect(!s.set_alpha_to_one && s.steps_offset == 1 && !s.clip_sample);
	cr_expect_str_eq(s.timestep_spacing, "leading");
	cr_expect_str_eq(s.prediction_type, "epsilon");

	put("bad.json", "{\"_class_name\": \"PNDMScheduler\", \"beta_start\": \"x\"}", path, sizeof path);
	cr_expect_eq(diff_scheduler_config_load(path, &s, err, sizeof err), -EBADMSG);
	cr_expect_not_null(strstr(err, "bad.json: key \"beta_start\": not a number"), "%s", err);
	put("bad.json", "{\"_class_name\": ", path, sizeof path);
	cr_expect_eq(diff_scheduler_config_load(path, &s, err, sizeof err), -EBADMSG);
	cr_expect_not_null(strstr(err, "bad.json: not valid JSON"), "%s", err);
}
