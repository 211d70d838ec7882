/* Opening a diffusers folder as a Stable Diffusion model: tokenizer, text encoder, UNet, VAE
 * and the scheduler config, and the defaults a request falls back to. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "sd-internal.h"

#define MAX_CLIP_LAYERS 64

/* The scheduler the folder names, as the default of requests that name none. Classes this
 * engine does not run (PNDM, LMS, ... SD 1.5 ships PNDM) fall back to DPM-Solver++ 2M. */
static enum nsched_kind default_kind(const char *cls)
{
	static const struct { const char *cls; enum nsched_kind kind; } map[] = {
		{ "DDIMScheduler", NSCHED_DDIM },
		{ "EulerDiscreteScheduler", NSCHED_EULER },
		{ "EulerAncestralDiscreteScheduler", NSCHED_EULER_A },
		{ "DPMSolverMultistepScheduler", NSCHED_DPMPP_2M },
		{ "LCMScheduler", NSCHED_LCM },
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(cls, map[i].cls) == 0)
			return map[i].kind;
	return NSCHED_DPMPP_2M;
}

static int sched_config(const struct diff_scheduler_config *sc, struct nsched_config *c,
                        char *err, size_t errlen)
{
	nsched_config_default(c);
	c->num_train_timesteps = sc->num_train_timesteps;
	c->beta_start = sc->beta_start;
	c->beta_end = sc->beta_end;
	c->steps_offset = sc->steps_offset;
	c->set_alpha_to_one = sc->set_alpha_to_one;
	c->clip_sample = sc->clip_sample;
	c->clip_sample_range = sc->clip_sample_range;
	if (nsched_beta_from_name(sc->beta_schedule, &c->beta_schedule) < 0) {
		snprintf(err, errlen, "scheduler_config.json: beta_schedule '%s' is not supported",
		         sc->beta_schedule);
		return -ENOTSUP;
	}
	if (nsched_pred_from_name(sc->prediction_type, &c->prediction) < 0) {
		snprintf(err, errlen, "scheduler_config.json: prediction_type '%s' is not supported",
		         sc->prediction_type);
		return -ENOTSUP;
	}
	if (nsched_spacing_from_name(sc->timestep_spacing, &c->spacing) < 0) {
		snprintf(err, errlen, "scheduler_config.json: timestep_spacing '%s' is not supported",
		         sc->timestep_spacing);
		return -ENOTSUP;
	}
	return 0;
}

/* The pad token from tokenizer/special_tokens_map.json (a string or {"content": ...}); the
 * end-of-text token when the file or the key is absent (SD 1.x). */
static int32_t pad_token(const char *dir, const struct clip_tokenizer *tok)
{
	char path[4096];
	int32_t id = clip_tok_eos(tok);
	snprintf(path, sizeof path, "%s/tokenizer/special_tokens_map.json", dir);
	json_t *root = json_load_file(path, 0, NULL);
	if (!root)
		return id;
	json_t *pad = json_object_get(root, "pad_token");
	if (json_is_object(pad))
		pad = json_object_get(pad, "content");
	if (json_is_string(pad)) {
		/* The map spells tokens as text; vocab.json keys are the byte-mapped forms, which
		 * equal the text for printable ASCII ("!", "<|endoftext|>"). */
		const char *s = json_string_value(pad);
		int32_t found = clip_tok_lookup(tok, s, strlen(s));
		if (found >= 0)
			id = found;
	}
	json_decref(root);
	return id;
}

static uint64_t file_params(const struct st_file *f)
{
	uint64_t n = 0;
	for (int64_t i = 0; i < st_n_tensors(f); i++) {
		const struct st_tensor *t = st_tensor(f, i);
		if (strcmp(t->dtype_name, "F32") == 0 || strcmp(t->dtype_name, "F16") == 0 ||
		    strcmp(t->dtype_name, "BF16") == 0)
			n += t->n_elements;
	}
	return n;
}

static int open_text(struct sd_model *m, char *err, size_t errlen)
{
	const struct diff_clip_config *cc = diff_pipeline_clip(m->pl);
	struct clip_text_config cfg;
	struct clip_weights w;
	struct clip_layer_weights *layers = calloc(MAX_CLIP_LAYERS, sizeof(*layers));
	char why[384];
	int rc;

	if (!layers)
		return -ENOMEM;
	rc = clip_text_weights_from_st(diff_pipeline_text_weights(m->pl), &cfg, &w, layers,
	                               MAX_CLIP_LAYERS, why, sizeof why);
	if (rc == 0) {
		cfg.n_heads = cc->num_attention_heads;
		cfg.ln_eps = cc->layer_norm_eps;
		cfg.act = cc->hidden_act == DIFF_ACT_GELU ? CLIP_ACT_GELU : CLIP_ACT_QUICK_GELU;
		rc = clip_text_new(&cfg, &w, &m->text, why, sizeof why);
	}
	if (rc < 0)
		snprintf(err, errlen, "%s/text_encoder: %s", diff_pipeline_dir(m->pl), why);
	else
		m->ctx_dim = cfg.width;
	free(layers);
	return rc;
}

int sd_model_open(const char *dir, const struct sd_open_params *p, struct sd_model **out,
                  char *err, size_t errlen)
{
	struct sd_open_params defaults = { .with_encoder = true };
	struct sd_model *m;
	char why[512];
	int rc;

	*out = NULL;
	if (!p)
		p = &defaults;
	if (!(m = calloc(1, sizeof(*m)))) {
		snprintf(err, errlen, "%s: out of memory", dir);
		return -ENOMEM;
	}
	if ((rc = diff_pipeline_open(dir, &m->pl, err, errlen)) < 0)
		goto fail;
	if ((rc = sched_config(diff_pipeline_scheduler(m->pl), &m->sched, why, sizeof why)) < 0) {
		snprintf(err, errlen, "%s: %s", dir, why);
		goto fail;
	}
	rc = clip_tok_new(diff_pipeline_vocab_path(m->pl), diff_pipeline_merges_path(m->pl), &m->tok,
	                  why, sizeof why);
	if (rc < 0) {
		snprintf(err, errlen, "%s/tokenizer: %s", dir, why);
		goto fail;
	}
	m->pad_id = pad_token(dir, m->tok);
	if ((rc = open_text(m, err, errlen)) < 0)
		goto fail;
	const struct diff_unet_config *uc = diff_pipeline_unet(m->pl);
	if ((rc = unet_new(uc, diff_pipeline_unet_weights(m->pl), &m->unet, why, sizeof why)) < 0) {
		snprintf(err, errlen, "%s/unet: %s", dir, why);
		goto fail;
	}
	const struct diff_vae_config *vc = diff_pipeline_vae(m->pl);
	rc = vae_new(vc, diff_pipeline_vae_weights(m->pl), p->with_encoder, &m->vae, why,
	             sizeof why);
	if (rc < 0) {
		snprintf(err, errlen, "%s/vae: %s", dir, why);
		goto fail;
	}
	if (uc->in_channels != vc->latent_channels || uc->out_channels != vc->latent_channels ||
	    uc->cross_attention_dim != m->ctx_dim) {
		snprintf(err, errlen, "%s: the parts do not fit together (UNet in/out channels %d/%d, "
		         "VAE latent channels %d, UNet cross_attention_dim %d, text width %d)", dir,
		         uc->in_channels, uc->out_channels, vc->latent_channels,
		         uc->cross_attention_dim, m->ctx_dim);
		rc = -EBADMSG;
		goto fail;
	}
	m->tcond_dim = uc->time_cond_proj_dim;

	struct sd_model_info *in = &m->info;
	int f = vae_downscale(m->vae);
	in->size_multiple = f * unet_size_multiple(m->unet);
	in->default_width = in->default_height = uc->sample_size * f;
	in->guidance_embedded = m->tcond_dim > 0;
	in->default_scheduler = default_kind(diff_pipeline_scheduler(m->pl)->class_name);
	if (in->guidance_embedded)
		in->default_scheduler = NSCHED_LCM;
	in->default_steps = in->default_scheduler == NSCHED_LCM ? 4 : 20;
	in->default_guidance = in->guidance_embedded ? 8.5f : 7.5f;
	in->has_encoder = vae_has_encoder(m->vae);
	in->n_params = file_params(diff_pipeline_text_weights(m->pl)) +
	               file_params(diff_pipeline_unet_weights(m->pl)) +
	               file_params(diff_pipeline_vae_weights(m->pl));
	const struct st_tensor *t0 = st_get(diff_pipeline_unet_weights(m->pl), "conv_in.weight");
	snprintf(in->dtype, sizeof in->dtype, "%s", t0 ? t0->dtype_name : "?");
	snprintf(in->arch, sizeof in->arch, "sd-unet-%d", uc->block_out_channels[0]);
	in->ctx_len = clip_text_get_config(m->text)->n_ctx;
	in->latent_channels = vc->latent_channels;
	*out = m;
	return 0;
fail:
	sd_model_free(m);
	return rc;
}

void sd_model_free(struct sd_model *m)
{
	if (!m)
		return;
	vae_free(m->vae);
	unet_free(m->unet);
	clip_text_free(m->text);
	clip_tok_free(m->tok);
	diff_pipeline_free(m->pl);
	free(m);
}

void sd_model_get_info(const struct sd_model *m, struct sd_model_info *info)
{
	*info = m->info;
}
