/* Helpers of the engine/model tests: temporary folders, generated models
 * (inferd-mkmodel, or hand-written GGUF files for qwen2 and broken models), the
 * numpy reference (tests/reference/llama_ref.py) and a loaded-engine fixture.
 * Test code: failures end the test through criterion asserts in the callers. */
#ifndef INFERD_TEST_MODEL_UTIL_H
#define INFERD_TEST_MODEL_UTIL_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "forward.h"
#include "gguf.h"
#include "gguf_write.h"
#include "kv_cache.h"
#include "llama.h"

/* ---- temporary files -------------------------------------------------------------- */

static inline const char *tmpdir_get(void)
{
	static char dir[256];
	if (dir[0] == 0) {
		const char *t = getenv("TMPDIR");
		snprintf(dir, sizeof dir, "%s/inferd-model-test-XXXXXX", t ? t : "/tmp");
		if (mkdtemp(dir) == NULL)
			return NULL;
	}
	return dir;
}

static inline void tmpdir_remove(void)
{
	const char *d = tmpdir_get();
	char cmd[400];
	if (d != NULL) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", d);
	}
}

/* Runs inferd-mkmodel llm --out DIR/name ARGS; returns 0 and the path in out. */
static inline int mkmodel(const char *name, const char *args, char *out, size_t outlen)
{
	const char *mk = getenv("INFERD_MKMODEL");
	char cmd[1024];
	if (mk == NULL || tmpdir_get() == NULL)
		return -ENOENT;
	snprintf(out, outlen, "%s/%s", tmpdir_get(), name);
	snprintf(cmd, sizeof cmd, "'%s' llm --out '%s' %s", mk, out, args);
	return system(cmd) == 0 ? 0 : -EIO;
}

/* ---- hand-written models ------------------------------------------------------------ */

struct wm_opts {
	const char *arch;       /* "llama", "qwen2", anything */
	int dim, layers, heads, kv_heads, ffn, vocab;
	bool bias;              /* q/k/v biases (qwen2) */
	const char *drop;       /* tensor name to leave out, or NULL */
	const char *misshape;   /* tensor name written with ne[0] + 32, or NULL */
	const char *drop_key;   /* metadata suffix after "{arch}." to leave out, or NULL */
	unsigned seed;
};

struct wm_tensor {
	char name[64];
	int n_dims;
	int64_t ne[2];
	double sd, mean;
};

struct wm_state {
	struct wm_tensor t[256];
	size_t n;
	unsigned seed;
};

static inline double wm_rand(uint64_t *s) /* ~N(0,1) from the sum of 4 uniforms */
{
	double a = 0.0;
	for (int i = 0; i < 4; i++) {
		*s = *s * 6364136223846793005ull + 1442695040888963407ull;
		a += (double)(*s >> 11) / 9007199254740992.0;
	}
	return (a - 2.0) * 1.7320508;
}

static inline int wm_fill(size_t idx, void *buf, size_t nbytes, void *arg)
{
	struct wm_state *st = arg;
	const struct wm_tensor *t = &st->t[idx];
	uint64_t s = st->seed * 7919u + idx * 104729u + 1;
	float *f = buf;
	for (size_t i = 0; i < nbytes / 4; i++)
		f[i] = (float)(t->mean + t->sd * wm_rand(&s));
	return 0;
}

static inline void wm_add(struct wm_state *st, const struct wm_opts *o, const char *name,
                          int n_dims, int64_t ne0, int64_t ne1, double sd, double mean)
{
	if (o->drop && strcmp(o->drop, name) == 0)
		return;
	struct wm_tensor *t = &st->t[st->n++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->n_dims = n_dims;
	t->ne[0] = ne0 + (o->misshape && strcmp(o->misshape, name) == 0 ? 32 : 0);
	t->ne[1] = ne1;
	t->sd = sd;
	t->mean = mean;
}

/* Writes an f32 model of o's shape to DIR/name; 0 or a negative errno. */
static inline int write_model(const char *name, const struct wm_opts *o, char *out, size_t outlen)
{
	struct wm_state *st = calloc(1, sizeof *st);
	struct gguf_writer *w = gguf_writer_new(0);
	char key[128], err[256], nm[64];
	int rc = -ENOMEM;
	if (st == NULL || w == NULL || tmpdir_get() == NULL)
		goto out;
	st->seed = o->seed;
	snprintf(out, outlen, "%s/%s", tmpdir_get(), name);
	const int hd = o->dim / o->heads, kvd = hd * o->kv_heads;
	const double lin = 1.0 / sqrt((double)o->dim);
	rc = gguf_writer_add_str(w, "general.architecture", o->arch);
#define KEY(suffix, v)                                                              \
	if (!o->drop_key || strcmp(o->drop_key, suffix) != 0) {                     \
		snprintf(key, sizeof key, "%s.%s", o->arch, suffix);                \
		rc |= gguf_writer_add_u32(w, key, (uint32_t)(v));                   \
	}
	KEY("context_length", 256);
	KEY("embedding_length", o->dim);
	KEY("block_count", o->layers);
	KEY("feed_forward_length", o->ffn);
	KEY("attention.head_count", o->heads);
	KEY("attention.head_count_kv", o->kv_heads);
#undef KEY
	snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", o->arch);
	rc |= gguf_writer_add_f32(w, key, 1e-6f);
	snprintf(key, sizeof key, "%s.rope.freq_base", o->arch);
	rc |= gguf_writer_add_f32(w, key, 1000000.0f);
	if (rc)
		goto out;
	wm_add(st, o, "token_embd.weight", 2, o->dim, o->vocab, 1.0, 0.0);
	for (int l = 0; l < o->layers; l++) {
#define T(suffix, nd, a, b, sd, mean)                                               \
	snprintf(nm, sizeof nm, "blk.%d." suffix, l);                               \
	wm_add(st, o, nm, nd, a, b, sd, mean)
		T("attn_norm.weight", 1, o->dim, 1, 0.02, 1.0);
		T("attn_q.weight", 2, o->dim, o->dim, lin, 0.0);
		T("attn_k.weight", 2, o->dim, kvd, lin, 0.0);
		T("attn_v.weight", 2, o->dim, kvd, lin, 0.0);
		if (o->bias) {
			T("attn_q.bias", 1, o->dim, 1, 0.5, 0.0);
			T("attn_k.bias", 1, kvd, 1, 0.5, 0.0);
			T("attn_v.bias", 1, kvd, 1, 0.5, 0.0);
		}
		T("attn_output.weight", 2, o->dim, o->dim, lin, 0.0);
		T("ffn_norm.weight", 1, o->dim, 1, 0.02, 1.0);
		T("ffn_gate.weight", 2, o->dim, o->ffn, lin, 0.0);
		T("ffn_up.weight", 2, o->dim, o->ffn, lin, 0.0);
		T("ffn_down.weight", 2, o->ffn, o->dim, 1.0 / sqrt((double)o->ffn), 0.0);
#undef T
	}
	wm_add(st, o, "output_norm.weight", 1, o->dim, 1, 0.02, 1.0);
	wm_add(st, o, "output.weight", 2, o->dim, o->vocab, lin, 0.0);
	for (size_t i = 0; i < st->n; i++)
		if ((rc = gguf_writer_add_tensor(w, st->t[i].name, DTYPE_F32,
		                                 (uint32_t)st->t[i].n_dims, st->t[i].ne)) < 0)
			goto out;
	rc = gguf_writer_write(w, out, wm_fill, st, err, sizeof err);
	if (rc < 0)
		fprintf(stderr, "write_model: %s\n", err);
out:
	gguf_writer_free(w);
	free(st);
	return rc;
}

/* ---- the numpy reference ------------------------------------------------------------- */

static inline int ref_tokens_arg(const int32_t *toks, int n, char *buf, size_t len)
{
	size_t o = 0;
	for (int i = 0; i < n && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, i ? ",%d" : "%d", toks[i]);
	return o < len ? 0 : -E2BIG;
}

/* Logits of every prompt position, (n, vocab) doubles into out. */
static inline int ref_logits(const char *model, const int32_t *toks, int n, int vocab, double *out)
{
	const char *py = getenv("INFERD_PYTHON"), *ref = getenv("INFERD_LLAMA_REF");
	char cmd[8192], tl[4096], path[512];
	if (py == NULL || ref == NULL || ref_tokens_arg(toks, n, tl, sizeof tl) < 0)
		return -ENOENT;
	snprintf(path, sizeof path, "%s/ref-logits-%d.bin", tmpdir_get(), (int)getpid());
	snprintf(cmd, sizeof cmd, "'%s' '%s' --model '%s' --tokens %s --logits '%s'", py, ref,
	         model, tl, path);
	if (system(cmd) != 0)
		return -EIO;
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return -EIO;
	size_t got = fread(out, sizeof(double), (size_t)n * (size_t)vocab, f);
	fclose(f);
	unlink(path);
	return got == (size_t)n * (size_t)vocab ? 0 : -EIO;
}

/* Greedy continuation: n_gen ids and the reference's top1-top2 margin of each. */
static inline int ref_greedy(const char *model, const int32_t *toks, int n, int n_gen,
                             int32_t *ids, double *margins)
{
	const char *py = getenv("INFERD_PYTHON"), *ref = getenv("INFERD_LLAMA_REF");
	char cmd[8192], tl[4096];
	if (py == NULL || ref == NULL || ref_tokens_arg(toks, n, tl, sizeof tl) < 0)
		return -ENOENT;
	snprintf(cmd, sizeof cmd, "'%s' '%s' --model '%s' --tokens %s --greedy %d", py, ref,
	         model, tl, n_gen);
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return -EIO;
	int ok = 1;
	for (int i = 0; i < n_gen && ok; i++)
		ok = fscanf(p, "%d", &ids[i]) == 1;
	for (int i = 0; i < n_gen && ok; i++)
		ok = fscanf(p, "%lf", &margins[i]) == 1;
	return pclose(p) == 0 && ok ? 0 : -EIO;
}

/* ---- the engine ------------------------------------------------------------------------ */

struct eng {
	struct gguf *g;
	struct backend b;
	struct llama_model *m;
	struct kv_cache *kv;
	char err[256];
};

static inline int eng_open(struct eng *e, const char *path, int max_batch, int block_size,
                           int n_blocks)
{
	int rc;
	memset(e, 0, sizeof *e);
	backend_cpu_init(&e->b, 0);
	if ((rc = gguf_open(path, &e->g, e->err, sizeof e->err)) < 0)
		return rc;
	struct llama_load_params lp = { .backend = &e->b, .max_batch_tokens = max_batch };
	if ((rc = llama_model_load(e->g, &lp, &e->m, e->err, sizeof e->err)) < 0)
		return rc;
	struct kv_cache_params kp;
	llama_kv_params(e->m, block_size, n_blocks, &kp);
	return kv_cache_new(&e->b, &kp, &e->kv);
}

static inline void eng_close(struct eng *e)
{
	kv_cache_free(e->kv);
	llama_model_free(e->m);
	gguf_free(e->g);
	memset(e, 0, sizeof *e);
}

static inline int argmax(const float *x, int n)
{
	int best = 0;
	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

/* Prefill toks (logits of all positions into out, (n, vocab)), then greedy
 * decode n_gen tokens one at a time into gen (when n_gen > 0). */
static inline int eng_run(struct eng *e, const int32_t *toks, int n, float *out, int n_gen,
                          int32_t *gen)
{
	const int vocab = llama_model_hparams(e->m)->n_vocab;
	struct kv_seq s;
	float *last = malloc((size_t)vocab * sizeof *last);
	int rc = kv_seq_init(&s, e->kv, n + n_gen + 1);
	if (rc < 0 || last == NULL)
		goto out;
	if ((rc = kv_seq_reserve(&s, e->kv, n)) < 0)
		goto out;
	struct fwd_seq fs = { .tokens = toks, .n_tokens = n, .pos = 0, .block_table = s.blocks,
	                      .n_blocks = s.n_blocks, .logits = FWD_LOGITS_ALL };
	if ((rc = llama_forward(e->m, e->kv, &fs, 1, out)) < 0)
		goto out;
	int32_t tok = argmax(out + (size_t)(n - 1) * vocab, vocab);
	for (int i = 0; i < n_gen; i++) {
		gen[i] = tok;
		if ((rc = kv_seq_reserve(&s, e->kv, n + i + 1)) < 0)
			goto out;
		struct fwd_seq d = { .tokens = &gen[i], .n_tokens = 1, .pos = n + i,
		                     .block_table = s.blocks, .n_blocks = s.n_blocks,
		                     .logits = FWD_LOGITS_LAST };
		if ((rc = llama_forward(e->m, e->kv, &d, 1, last)) < 0)
			goto out;
		tok = argmax(last, vocab);
	}
out:
	kv_seq_fini(&s, e->kv);
	free(last);
	return rc;
}

#endif
