/* llama / qwen2 loader: hyper-parameters from GGUF metadata, weight tensors in
 * place, every missing or misshapen piece reported by name. */
#include "llama-internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct loader {
	const struct gguf *g;
	const char *arch;        /* "llama" / "qwen2" */
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 2, 3)))
static int fail(struct loader *ld, const char *fmt, ...)
{
	if (ld->err && ld->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(ld->err, ld->errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* ---- metadata ---------------------------------------------------------------------- */

/* {arch}.suffix as an int in [lo, hi]; def < 0 means required. */
static int get_int(struct loader *ld, const char *suffix, int64_t def, int64_t lo, int64_t hi,
                   int *out)
{
	char key[128];
	uint64_t v;
	snprintf(key, sizeof key, "%s.%s", ld->arch, suffix);
	int rc = gguf_get_uint(ld->g, key, &v);
	if (rc == -ENOENT && def >= 0) {
		*out = (int)def;
		return 0;
	}
	if (rc == -ENOENT)
		return fail(ld, "missing key %s", key);
	if (rc < 0)
		return fail(ld, "key %s is not a non-negative integer", key);
	if (v < (uint64_t)lo || v > (uint64_t)hi)
		return fail(ld, "key %s = %llu is out of range [%lld, %lld]", key,
		            (unsigned long long)v, (long long)lo, (long long)hi);
	*out = (int)v;
	return 0;
}

static int get_float(struct loader *ld, const char *suffix, float def, bool required, float *out)
{
	char key[128];
	snprintf(key, sizeof key, "%s.%s", ld->arch, suffix);
	int rc = gguf_get_f32(ld->g, key, out);
	if (rc == -ENOENT && !required) {
		*out = def;
		return 0;
	}
	if (rc == -ENOENT)
		return fail(ld, "missing key %s", key);
	if (rc < 0 || !isfinite(*out))
		return fail(ld, "key %s is not a finite float", key);
	return 0;
}

static int read_rope_scaling(struct loader *ld, struct llama_hparams *hp)
{
	char key[128];
	const char *type = NULL;
	float factor = 1.0f;

	snprintf(key, sizeof key, "%s.rope.scaling.type", ld->arch);
	int rc = gguf_get_str(ld->g, key, &type, NULL);
	if (rc < 0 && rc != -ENOENT)
		return fail(ld, "key %s is not a string", key);
	if (get_float(ld, "rope.scaling.factor", 1.0f, false, &factor) < 0)
		return -EINVAL;
	if (type == NULL) { /* older files: rope.scale_linear */
		if (get_float(ld, "rope.scale_linear", 1.0f, false, &factor) < 0)
			return -EINVAL;
		type = factor != 1.0f ? "linear" : "none";
	}
	if (strcmp(type, "none") == 0) {
		hp->rope.freq_scale = 1.0f;
	} else if (strcmp(type, "linear") == 0) {
		if (!(factor > 0.0f))
			return fail(ld, "rope scaling factor %g is not positive", (double)factor);
		hp->rope.freq_scale = 1.0f / factor;
	} else {
		snprintf(ld->err, ld->errlen, "unsupported rope scaling type '%s' (%s)", type, key);
		return -ENOTSUP;
	}
	return 0;
}

static int read_hparams(struct loader *ld, struct llama_hparams *hp)
{
	int rc = 0;
	const int big = 1 << 24;

	if ((rc = get_int(ld, "context_length", -1, 1, INT32_MAX, &hp->n_ctx_train)) < 0 ||
	    (rc = get_int(ld, "embedding_length", -1, 1, big, &hp->dim)) < 0 ||
	    (rc = get_int(ld, "block_count", -1, 1, 65536, &hp->n_layers)) < 0 ||
	    (rc = get_int(ld, "feed_forward_length", -1, 1, big, &hp->n_ff)) < 0 ||
	    (rc = get_int(ld, "attention.head_count", -1, 1, 65536, &hp->n_heads)) < 0 ||
	    (rc = get_int(ld, "attention.head_count_kv", hp->n_heads, 1, 65536, &hp->n_kv_heads)) < 0)
		return rc;
	if (hp->n_heads % hp->n_kv_heads != 0)
		return fail(ld, "%s.attention.head_count %d is not a multiple of head_count_kv %d",
		            ld->arch, hp->n_heads, hp->n_kv_heads);
	char klkey[128];
	snprintf(klkey, sizeof klkey, "%s.attention.key_length", ld->arch);
	if (hp->dim % hp->n_heads != 0 && gguf_find_key(ld->g, klkey) < 0)
		return fail(ld, "%s.embedding_length %d is not a multiple of head_count %d and %s "
		            "is absent", ld->arch, hp->dim, hp->n_heads, klkey);
	int def_hd = hp->dim % hp->n_heads == 0 ? hp->dim / hp->n_heads : -1;
	if ((rc = get_int(ld, "attention.key_length", def_hd, 2, ATTN_MAX_HEAD_DIM, &hp->head_dim)) < 0)
		return rc;
	int vlen;
	if ((rc = get_int(ld, "attention.value_length", hp->head_dim, 1, ATTN_MAX_HEAD_DIM, &vlen)) < 0)
		return rc;
	if (vlen != hp->head_dim)
		return fail(ld, "%s.attention.value_length %d differs from key_length %d (unsupported)",
		            ld->arch, vlen, hp->head_dim);
	if (hp->head_dim % 2)
		return fail(ld, "head dimension %d is odd", hp->head_dim);
	if ((rc = get_int(ld, "rope.dimension_count", hp->head_dim, 2, hp->head_dim, &hp->rope.n_rot)) < 0)
		return rc;
	if (hp->rope.n_rot % 2)
		return fail(ld, "%s.rope.dimension_count %d is odd", ld->arch, hp->rope.n_rot);
	if ((rc = get_float(ld, "attention.layer_norm_rms_epsilon", 1e-5f, true, &hp->norm_eps)) < 0 ||
	    (rc = get_float(ld, "rope.freq_base", 10000.0f, false, &hp->rope.freq_base)) < 0)
		return rc;
	if (!(hp->norm_eps >= 0.0f) || !(hp->rope.freq_base > 0.0f))
		return fail(ld, "bad %s (rms epsilon %g, rope base %g)", ld->arch,
		            (double)hp->norm_eps, (double)hp->rope.freq_base);
	hp->rope.style = hp->arch == LLAMA_ARCH_QWEN2 ? ROPE_STYLE_NEOX : ROPE_STYLE_NORMAL;
	return read_rope_scaling(ld, hp);
}

/* ---- tensors --------------------------------------------------------------------------- */

static void fmt_shape(char *buf, size_t len, int n, const int64_t *ne)
{
	size_t o = 0;
	buf[0] = 0;
	for (int i = 0; i < n && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, i ? " x %lld" : "%lld", (long long)ne[i]);
}

/* Tensor name with shape {ne0[, ne1]}; required unless optional (then *found says). */
static int get_tensor(struct loader *ld, const char *name, int n_dims, int64_t ne0, int64_t ne1,
                      bool optional, struct tensor *t, bool *found)
{
	const struct gguf_tensor_info *ti = gguf_get_tensor(ld->g, name);
	int64_t want[2] = { ne0, ne1 };
	char a[96], b[96];

	if (found)
		*found = ti != NULL;
	if (ti == NULL)
		return optional ? 0 : fail(ld, "missing tensor %s", name);
	int64_t ne[GGUF_MAX_DIMS];
	memcpy(ne, ti->ne, sizeof ne);
	bool ok = ti->n_dims <= (uint32_t)n_dims || (ti->n_dims == 2 && n_dims == 1 && ne[1] == 1);
	for (int i = 0; i < GGUF_MAX_DIMS && ok; i++)
		ok = ne[i] == (i < n_dims ? want[i] : 1);
	if (!ok) {
		fmt_shape(a, sizeof a, (int)ti->n_dims, ne);
		fmt_shape(b, sizeof b, n_dims, want);
		return fail(ld, "tensor %s has shape %s, expected %s", name, a, b);
	}
	if (!dtype_can_dequant(ti->type)) {
		snprintf(ld->err, ld->errlen, "tensor %s has unsupported type %s", name,
		         dtype_name(ti->type));
		return -ENOTSUP;
	}
	int rc = tensor_init(t, ti->type, n_dims, want, (void *)ti->data);
	if (rc < 0)
		return fail(ld, "tensor %s: bad layout", name);
	t->name = ti->name;
	return 0;
}

/* A 1-D tensor of n elements copied to an owned f32 array. */
static int get_vector(struct loader *ld, const char *name, int64_t n, bool optional, float **out)
{
	struct tensor t;
	bool found;
	int rc = get_tensor(ld, name, 1, n, 1, optional, &t, &found);
	if (rc < 0 || !found)
		return rc;
	*out = malloc((size_t)n * sizeof **out);
	if (*out == NULL)
		return -ENOMEM;
	if (dtype_dequant_row(t.type, t.data, *out, n) < 0)
		return fail(ld, "tensor %s: cannot convert %s to f32", name, dtype_name(t.type));
	return 0;
}

static int load_layer(struct loader *ld, struct llama_model *m, int l)
{
	const struct llama_hparams *hp = &m->hp;
	struct llama_layer *L = &m->layers[l];
	char nm[96];
	int rc;

#define T2(suffix, a, b, dst)                                                           \
	do {                                                                            \
		snprintf(nm, sizeof nm, "blk.%d." suffix, l);                           \
		if ((rc = get_tensor(ld, nm, 2, a, b, false, dst, NULL)) < 0)           \
			return rc;                                                      \
	} while (0)
#define T1(suffix, n, dst)                                                              \
	do {                                                                            \
		snprintf(nm, sizeof nm, "blk.%d." suffix, l);                           \
		if ((rc = get_vector(ld, nm, n, false, dst)) < 0)                       \
			return rc;                                                      \
	} while (0)
	T1("attn_norm.weight", hp->dim, &L->attn_norm);
	T2("attn_q.weight", hp->dim, m->q_dim, &L->wq);
	T2("attn_k.weight", hp->dim, m->kv_dim, &L->wk);
	T2("attn_v.weight", hp->dim, m->kv_dim, &L->wv);
	T2("attn_output.weight", m->q_dim, hp->dim, &L->wo);
	if (hp->qkv_bias) {
		T1("attn_q.bias", m->q_dim, &L->bq);
		T1("attn_k.bias", m->kv_dim, &L->bk);
		T1("attn_v.bias", m->kv_dim, &L->bv);
	}
	T1("ffn_norm.weight", hp->dim, &L->ffn_norm);
	T2("ffn_gate.weight", hp->dim, hp->n_ff, &L->w_gate);
	T2("ffn_up.weight", hp->dim, hp->n_ff, &L->w_up);
	T2("ffn_down.weight", hp->n_ff, hp->dim, &L->w_down);
#undef T1
#undef T2
	return 0;
}

/* ---- scratch ------------------------------------------------------------------------------- */

static int alloc_scratch(struct llama_model *m)
{
	const size_t T = (size_t)m->max_batch, f = sizeof(float);
	int rc;
	if ((rc = backend_alloc(m->b, T * (size_t)m->hp.dim * f, (void **)&m->x)) < 0 ||
	    (rc = backend_alloc(m->b, T * (size_t)m->hp.dim * f, (void **)&m->xn)) < 0 ||
	    (rc = backend_alloc(m->b, T * (size_t)m->q_dim * f, (void **)&m->q)) < 0 ||
	    (rc = backend_alloc(m->b, T * (size_t)m->q_dim * f, (void **)&m->att)) < 0 ||
	    (rc = backend_alloc(m->b, T * (size_t)m->kv_dim * f, (void **)&m->k)) < 0 ||
	    (rc = backend_alloc(m->b, T * (size_t)m->kv_dim * f, (void **)&m->v)) < 0 ||
	    (rc = backend_alloc(m->b, T * (size_t)m->hp.n_ff * f, (void **)&m->gate)) < 0 ||
	    (rc = backend_alloc(m->b, T * (size_t)m->hp.n_ff * f, (void **)&m->up)) < 0)
		return rc;
	m->pos = malloc(T * sizeof *m->pos);
	m->aseq = malloc(T * sizeof *m->aseq);
	return m->pos && m->aseq ? 0 : -ENOMEM;
}

/* ---- load ------------------------------------------------------------------------------------ */

int llama_model_load(const struct gguf *g, const struct llama_load_params *p,
                     struct llama_model **out, char *err, size_t errlen)
{
	struct loader ld = { .g = g, .err = err, .errlen = errlen };
	struct llama_model *m = NULL;
	const char *arch = NULL;
	char dummy[8];
	int rc;

	if (err == NULL || errlen == 0) {
		ld.err = dummy;
		ld.errlen = sizeof dummy;
	}
	ld.err[0] = 0;
	if (g == NULL || p == NULL || out == NULL || p->max_batch_tokens < 1 ||
	    backend_check(p->backend) < 0)
		return fail(&ld, "llama_model_load: bad arguments");
	if (gguf_get_str(g, "general.architecture", &arch, NULL) < 0)
		return fail(&ld, "missing key general.architecture");
	m = calloc(1, sizeof *m);
	if (m == NULL)
		return -ENOMEM;
	m->b = p->backend;
	m->max_batch = p->max_batch_tokens;
	if (strcmp(arch, "llama") == 0) {
		m->hp.arch = LLAMA_ARCH_LLAMA;
	} else if (strcmp(arch, "qwen2") == 0) {
		m->hp.arch = LLAMA_ARCH_QWEN2;
		m->hp.qkv_bias = true;
	} else {
		snprintf(ld.err, ld.errlen, "unsupported architecture '%s' (known: llama, qwen2)", arch);
		rc = -ENOTSUP;
		goto fail;
	}
	ld.arch = arch;
	struct llama_hparams *hp = &m->hp;
	if ((rc = read_hparams(&ld, hp)) < 0)
		goto fail;
	m->q_dim = hp->n_heads * hp->head_dim;
	m->kv_dim = hp->n_kv_heads * hp->head_dim;

	const struct gguf_tensor_info *te = gguf_get_tensor(g, "token_embd.weight");
	if (te == NULL) {
		rc = fail(&ld, "missing tensor token_embd.weight");
		goto fail;
	}
	if (te->n_dims != 2 || te->ne[1] < 1 || te->ne[1] > INT32_MAX) {
		rc = fail(&ld, "tensor token_embd.weight is not a (%d, n_vocab) matrix", hp->dim);
		goto fail;
	}
	hp->n_vocab = (int)te->ne[1];
	if ((rc = get_tensor(&ld, "token_embd.weight", 2, hp->dim, hp->n_vocab, false,
	                     &m->tok_embd, NULL)) < 0 ||
	    (rc = get_vector(&ld, "output_norm.weight", hp->dim, false, &m->out_norm)) < 0 ||
	    (rc = get_tensor(&ld, "output.weight", 2, hp->dim, hp->n_vocab, true, &m->output,
	                     NULL)) < 0 ||
	    (rc = get_vector(&ld, "rope_freqs.weight", hp->rope.n_rot / 2, true,
	                     &m->rope_factors)) < 0)
		goto fail;
	hp->tied_output = gguf_get_tensor(g, "output.weight") == NULL;
	if (hp->tied_output)
		m->output = m->tok_embd;
	hp->rope.freq_factors = m->rope_factors;

	m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
	if (m->layers == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	for (int l = 0; l < hp->n_layers; l++)
		if ((rc = load_layer(&ld, m, l)) < 0)
			goto fail;
	if (p->convert_weights && (rc = llama_convert_weights(m, p->weight_type, ld.err,
	                                                       ld.errlen)) < 0)
		goto fail;
	if ((rc = alloc_scratch(m)) < 0) {
		snprintf(ld.err, ld.errlen, "out of memory for %d-token scratch buffers", m->max_batch);
		goto fail;
	}
	*out = m;
	return 0;
fail:
	if (rc == -ENOMEM && ld.err[0] == 0)
		snprintf(ld.err, ld.errlen, "out of memory");
	llama_model_free(m);
	return rc;
}

void llama_model_free(struct llama_model *m)
{
	if (m == NULL)
		return;
	if (m->layers) {
		for (int l = 0; l < m->hp.n_layers; l++) {
			struct llama_layer *L = &m->layers[l];
			free(L->attn_norm);
			free(L->ffn_norm);
			free(L->bq);
			free(L->bk);
			free(L->bv);
		}
	}
	free(m->layers);
	free(m->out_norm);
	free(m->rope_factors);
	float *bufs[] = { m->x, m->xn, m->q, m->att, m->k, m->v, m->gate, m->up };
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		backend_free(m->b, bufs[i]);
	free(m->pos);
	free(m->aseq);
	for (int i = 0; i < m->n_owned; i++)
		free(m->owned[i]);
	free(m->owned);
	free(m);
}

/* ---- queries ----------------------------------------------------------------------------------- */

const struct llama_hparams *llama_model_hparams(const struct llama_model *m)
{
	return &m->hp;
}

static uint64_t mat_bytes(const struct tensor *t)
{
	return (uint64_t)t->nb[1] * (uint64_t)t->ne[1];
}

uint64_t llama_model_weight_bytes(const struct llama_model *m)
{
	uint64_t n = mat_bytes(&m->output) + (uint64_t)m->tok_embd.nb[1];
	for (int l = 0; l < m->hp.n_layers; l++) {
		const struct llama_layer *L = &m->layers[l];
		n += mat_bytes(&L->wq) + mat_bytes(&L->wk) + mat_bytes(&L->wv) + mat_bytes(&L->wo) +
		     mat_bytes(&L->w_gate) + mat_bytes(&L->w_up) + mat_bytes(&L->w_down);
	}
	return n;
}

uint64_t llama_model_n_params(const struct llama_model *m)
{
	const struct llama_hparams *hp = &m->hp;
	uint64_t per_layer = (uint64_t)hp->dim * (uint64_t)(2 * m->q_dim + 2 * m->kv_dim) +
	                     3ull * (uint64_t)hp->dim * (uint64_t)hp->n_ff;
	return per_layer * (uint64_t)hp->n_layers + (uint64_t)hp->dim * (uint64_t)hp->n_vocab;
}

void llama_kv_params(const struct llama_model *m, int block_size, int n_blocks,
                     struct kv_cache_params *out)
{
	memset(out, 0, sizeof *out);
	out->n_layers = m->hp.n_layers;
	out->n_kv_heads = m->hp.n_kv_heads;
	out->head_dim = m->hp.head_dim;
	out->block_size = block_size;
	out->n_blocks = n_blocks;
	out->type = DTYPE_F32;
}
