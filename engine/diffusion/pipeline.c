/* A diffusers folder: configs, weight files and tokenizer files (see pipeline.h). */
#include "pipeline.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct diff_pipeline {
	char *dir;
	struct diff_model_index index;
	struct diff_scheduler_config sched;
	struct diff_clip_config clip;
	struct diff_unet_config unet;
	struct diff_vae_config vae;
	struct st_file *text_w, *unet_w, *vae_w;
	char *vocab, *merges;
};

#define MERGES_MAX_BYTES (64u << 20)

/* dir/part/file as a new string; NULL when out of memory. */
static char *join(const char *dir, const char *part, const char *file)
{
	size_t n = strlen(dir) + strlen(part) + strlen(file) + 3;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s/%s%s%s", dir, part, *part ? "/" : "", file);
	return s;
}

static bool is_file(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Opens dir/part/base.safetensors, else the fp16 variant base.fp16.safetensors. */
static int open_weights(const char *dir, const char *part, const char *base, struct st_file **out,
                        char *err, size_t errlen)
{
	char file[96];
	snprintf(file, sizeof file, "%s.safetensors", base);
	char *path = join(dir, part, file);
	if (path == NULL)
		return -ENOMEM;
	if (!is_file(path)) {
		snprintf(file, sizeof file, "%s.fp16.safetensors", base);
		char *alt = join(dir, part, file);
		if (alt && is_file(alt)) {
			free(path);
			path = alt;
		} else {
			free(alt);
			snprintf(file, sizeof file, "%s.bin", base);
			char *bin = join(dir, part, file);
			if (bin && is_file(bin)) {
				snprintf(err, errlen, "%s: PyTorch pickle weights are not supported; convert "
				         "them to %s.safetensors", bin, base);
				free(bin);
				free(path);
				return -ENOTSUP;
			}
			free(bin);
		}
	}
	int rc = st_open(path, out, err, errlen);
	free(path);
	return rc;
}

/* vocab.json: an object token -> id, every id in [0, vocab_size). */
static int check_vocab(const char *path, int vocab_size, char *err, size_t errlen)
{
	json_error_t jerr;
	struct stat sb;
	if (stat(path, &sb) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	if ((uint64_t)sb.st_size > MERGES_MAX_BYTES) {
		snprintf(err, errlen, "%s: %lld bytes: too large for a vocabulary", path,
		         (long long)sb.st_size);
		return -EBADMSG;
	}
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	int rc = 0;
	if (root == NULL) {
		snprintf(err, errlen, "%s: not valid JSON: %s (line %d, column %d)", path, jerr.text,
		         jerr.line, jerr.column);
		return -EBADMSG;
	}
	if (!json_is_object(root) || json_object_size(root) == 0) {
		snprintf(err, errlen, "%s: not a JSON object of token -> id", path);
		rc = -EBADMSG;
		goto out;
	}
	const char *k;
	json_t *v;
	json_object_foreach(root, k, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) >= vocab_size) {
			snprintf(err, errlen, "%s: token \"%s\": id is not an integer in [0, %d) (the text "
			         "encoder's vocab_size)", path, k, vocab_size);
			rc = -EBADMSG;
			goto out;
		}
	}
out:
	json_decref(root);
	return rc;
}

/* merges.txt: an optional "#version" line, then "left right" lines. */
static int check_merges(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	long no = 0;
	int rc = 0;
	if (f == NULL) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	while (fgets(line, sizeof line, f)) {
		no++;
		size_t n = strlen(line);
		if (n && line[n - 1] == '\n')
			line[--n] = '\0';
		if (n && line[n - 1] == '\r')
			line[--n] = '\0';
		if (n == 0 || (no == 1 && line[0] == '#'))
			continue;
		char *sp = strchr(line, ' ');
		if (sp == NULL || sp == line || sp[1] == '\0' || strchr(sp + 1, ' ') != NULL) {
			snprintf(err, errlen, "%s: line %ld: not a \"left right\" merge", path, no);
			rc = -EBADMSG;
			break;
		}
	}
	fclose(f);
	return rc;
}

int diff_pipeline_open(const char *dir, struct diff_pipeline **out, char *err, size_t errlen)
{
	struct diff_pipeline *p = NULL;
	char *path = NULL;
	char dummy[1];
	int rc = -ENOMEM;

	*out = NULL;
	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof dummy;
	}
	err[0] = '\0';
	struct stat sb;
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		rc = stat(dir, &sb) < 0 ? -errno : -ENOTDIR;
		snprintf(err, errlen, "%s: not a diffusers folder: %s", dir, strerror(-rc));
		return rc;
	}
	if ((p = calloc(1, sizeof *p)) == NULL || (p->dir = strdup(dir)) == NULL)
		goto oom;

#define CONFIG(part, file, fn, dst)                                   \
	do {                                                          \
		free(path);                                           \
		if ((path = join(dir, part, file)) == NULL)           \
			goto oom;                                     \
		if ((rc = fn(path, dst, err, errlen)) < 0)            \
			goto fail;                                    \
	} while (0)

	CONFIG("", "model_index.json", diff_model_index_load, &p->index);
	CONFIG("scheduler", "scheduler_config.json", diff_scheduler_config_load, &p->sched);
	CONFIG("text_encoder", "config.json", diff_clip_config_load, &p->clip);
	CONFIG("unet", "config.json", diff_unet_config_load, &p->unet);
	CONFIG("vae", "config.json", diff_vae_config_load, &p->vae);
#undef CONFIG
	if (p->unet.in_channels != p->vae.latent_channels ||
	    p->unet.out_channels != p->vae.latent_channels) {
		snprintf(err, errlen, "%s: unet in_channels %d / out_channels %d do not match the vae's "
		         "latent_channels %d", dir, p->unet.in_channels, p->unet.out_channels,
		         p->vae.latent_channels);
		rc = -EBADMSG;
		goto fail;
	}
	if (p->unet.cross_attention_dim != p->clip.hidden_size) {
		snprintf(err, errlen, "%s: unet cross_attention_dim %d does not match the text encoder's "
		         "hidden_size %d", dir, p->unet.cross_attention_dim, p->clip.hidden_size);
		rc = -EBADMSG;
		goto fail;
	}

	if ((rc = open_weights(dir, "text_encoder", "model", &p->text_w, err, errlen)) < 0 ||
	    (rc = diff_clip_check(p->text_w, &p->clip, err, errlen)) < 0 ||
	    (rc = open_weights(dir, "unet", "diffusion_pytorch_model", &p->unet_w, err, errlen)) < 0 ||
	    (rc = diff_unet_check(p->unet_w, &p->unet, err, errlen)) < 0 ||
	    (rc = open_weights(dir, "vae", "diffusion_pytorch_model", &p->vae_w, err, errlen)) < 0 ||
	    (rc = diff_vae_check(p->vae_w, &p->vae, err, errlen)) < 0)
		goto fail;

	if ((p->vocab = join(dir, "tokenizer", "vocab.json")) == NULL ||
	    (p->merges = join(dir, "tokenizer", "merges.txt")) == NULL)
		goto oom;
	if ((rc = check_vocab(p->vocab, p->clip.vocab_size, err, errlen)) < 0 ||
	    (rc = check_merges(p->merges, err, errlen)) < 0)
		goto fail;
	free(path);
	*out = p;
	return 0;

oom:
	rc = -ENOMEM;
	snprintf(err, errlen, "%s: out of memory", dir);
fail:
	free(path);
	diff_pipeline_free(p);
	return rc;
}

void diff_pipeline_free(struct diff_pipeline *p)
{
	if (p == NULL)
		return;
	st_free(p->text_w);
	st_free(p->unet_w);
	st_free(p->vae_w);
	free(p->vocab);
	free(p->merges);
	free(p->dir);
	free(p);
}

const char *diff_pipeline_dir(const struct diff_pipeline *p) { return p->dir; }
const struct diff_model_index *diff_pipeline_index(const struct diff_pipeline *p) { return &p->index; }
const struct diff_unet_config *diff_pipeline_unet(const struct diff_pipeline *p) { return &p->unet; }
const struct diff_vae_config *diff_pipeline_vae(const struct diff_pipeline *p) { return &p->vae; }
const struct diff_clip_config *diff_pipeline_clip(const struct diff_pipeline *p) { return &p->clip; }
const struct diff_scheduler_config *diff_pipeline_scheduler(const struct diff_pipeline *p)
{
	return &p->sched;
}
const struct st_file *diff_pipeline_unet_weights(const struct diff_pipeline *p) { return p->unet_w; }
const struct st_file *diff_pipeline_vae_weights(const struct diff_pipeline *p) { return p->vae_w; }
const struct st_file *diff_pipeline_text_weights(const struct diff_pipeline *p) { return p->text_w; }
const char *diff_pipeline_vocab_path(const struct diff_pipeline *p) { return p->vocab; }
const char *diff_pipeline_merges_path(const struct diff_pipeline *p) { return p->merges; }
