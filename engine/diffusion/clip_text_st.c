/* CLIP text encoder weights from a diffusers text_encoder/model.safetensors. See clip_text.h. */
#include "clip_text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "safetensors.h"
#include "diff-internal.h"

/* Looks up name (printf-style) and checks its shape: d0 (and d1 when d1 > 0; 1-D when d1 is 0).
 * d0 < 0 accepts any first dimension and returns it in *got0. */
static int get(const struct st_file *f, struct clip_weight *w, int64_t d0, int64_t d1,
               int64_t *got0, char *err, size_t errlen, const char *fmt, ...)
{
	char name[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	const struct st_tensor *t = st_get(f, name);
	enum dtype dt;
	if (t == NULL) {
		diff_set_err(err, errlen, "%s: no tensor %s", st_path(f), name);
		return -EINVAL;
	}
	if (st_tensor_dtype(t, &dt) != 0) {
		diff_set_err(err, errlen, "%s: %s: dtype %s, want F32/F16/BF16", st_path(f), name,
		        t->dtype_name);
		return -EINVAL;
	}
	uint32_t want_dims = d1 > 0 ? 2 : 1;
	if (t->n_dims != want_dims || (d0 >= 0 && t->shape[0] != d0) ||
	    (d1 > 0 && t->shape[1] != d1) || t->shape[0] < 1) {
		diff_set_err(err, errlen, "%s: %s: wrong shape (want %lld x %lld)", st_path(f), name,
		        (long long)d0, (long long)(d1 > 0 ? d1 : 1));
		return -EINVAL;
	}
	if (got0 != NULL)
		*got0 = t->shape[0];
	w->type = dt;
	w->data = t->data;
	return 0;
}

int clip_text_weights_from_st(const struct st_file *f, struct clip_text_config *cfg,
                              struct clip_weights *w, struct clip_layer_weights *layers,
                              int max_layers, char *err, size_t errlen)
{
	if (f == NULL || cfg == NULL || w == NULL || layers == NULL || max_layers < 1)
		return -EINVAL;
	const char *pre = "text_model.";
	int64_t V = 0, T = 0, W = 0, F = 0;
	const struct st_tensor *te = st_get(f, "text_model.embeddings.token_embedding.weight");
	if (te == NULL || te->n_dims != 2) {
		diff_set_err(err, errlen, "%s: no 2-D text_model.embeddings.token_embedding.weight",
		        st_path(f));
		return -EINVAL;
	}
	W = te->shape[1];
	int rc = get(f, &w->tok_emb, -1, W, &V, err, errlen, "%sembeddings.token_embedding.weight",
	             pre);
	if (rc == 0)
		rc = get(f, &w->pos_emb, -1, W, &T, err, errlen,
		         "%sembeddings.position_embedding.weight", pre);
	if (rc == 0)
		rc = get(f, &w->final_ln_w, W, 0, NULL, err, errlen, "%sfinal_layer_norm.weight", pre);
	if (rc == 0)
		rc = get(f, &w->final_ln_b, W, 0, NULL, err, errlen, "%sfinal_layer_norm.bias", pre);
	if (rc == 0)
		rc = get(f, &(struct clip_weight){ 0 }, -1, W, &F, err, errlen,
		         "%sencoder.layers.0.mlp.fc1.weight", pre);
	if (rc != 0)
		return rc;

	int n = 0;
	for (;; n++) {
		char probe[128];
		snprintf(probe, sizeof probe, "text_model.encoder.layers.%d.layer_norm1.weight", n);
		if (st_find(f, probe) < 0)
			break;
		if (n >= max_layers) {
			diff_set_err(err, errlen, "%s: more than %d text encoder layers", st_path(f),
			        max_layers);
			return -E2BIG;
		}
		struct clip_layer_weights *L = &layers[n];
		const char *a = "encoder.layers";
#define G(field, d0, d1, suffix) \
		if (rc == 0) \
			rc = get(f, &L->field, d0, d1, NULL, err, errlen, "%s%s.%d." suffix, pre, a, n)
		G(ln1_w, W, 0, "layer_norm1.weight");
		G(ln1_b, W, 0, "layer_norm1.bias");
		G(q_w, W, W, "self_attn.q_proj.weight");
		G(q_b, W, 0, "self_attn.q_proj.bias");
		G(k_w, W, W, "self_attn.k_proj.weight");
		G(k_b, W, 0, "self_attn.k_proj.bias");
		G(v_w, W, W, "self_attn.v_proj.weight");
		G(v_b, W, 0, "self_attn.v_proj.bias");
		G(o_w, W, W, "self_attn.out_proj.weight");
		G(o_b, W, 0, "self_attn.out_proj.bias");
		G(ln2_w, W, 0, "layer_norm2.weight");
		G(ln2_b, W, 0, "layer_norm2.bias");
		G(fc1_w, F, W, "mlp.fc1.weight");
		G(fc1_b, F, 0, "mlp.fc1.bias");
		G(fc2_w, W, F, "mlp.fc2.weight");
		G(fc2_b, W, 0, "mlp.fc2.bias");
#undef G
		if (rc != 0)
			return rc;
	}
	if (n == 0) {
		diff_set_err(err, errlen, "%s: no text_model.encoder.layers", st_path(f));
		return -EINVAL;
	}
	if (V > (1 << 24) || T > 4096 || W > 65536 || F > 262144) {
		diff_set_err(err, errlen, "%s: text encoder sizes out of range", st_path(f));
		return -EINVAL;
	}
	cfg->n_vocab = (int)V;
	cfg->n_ctx = (int)T;
	cfg->width = (int)W;
	cfg->ffn = (int)F;
	cfg->n_layers = n;
	w->layers = layers;
	return 0;
}
