/* Loading the configured models and starting their workers. */
#include "models.h"

#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "dtype.h"
#include "generation.h"
#include "images.h"
#include "gguf.h"
#include "llama.h"
#include "llm_worker.h"
#include "nano_tune.h"
#include "log.h"
#include "server-internal.h"
#include "tokenizer.h"

/* Default KV pool: room for max_sequences sequences of up to 512 positions (or the context,
 * when shorter), within 1 GiB, and never less than one full context. */
static uint32_t default_kv_blocks(const struct served_model *m, const struct model_config *mc)
{
	const struct llama_hparams *hp = llama_model_hparams(m->model);
	uint64_t bs = mc->kv_block_size;
	uint64_t per_block = 2ull * (uint64_t)hp->n_layers * (uint64_t)hp->n_kv_heads *
	                     (uint64_t)hp->head_dim * bs * kv_cache_elem_size(mc->kv_type);
	uint64_t per_seq = (m->max_context < 512 ? m->max_context : 512);
	uint64_t want = (uint64_t)mc->max_sequences * ((per_seq + bs - 1) / bs);
	uint64_t cap = (1ull << 30) / per_block;
	uint64_t floor_blocks = (m->max_context + bs - 1) / bs;

	if (want > cap)
		want = cap;
	if (want < floor_blocks)
		want = floor_blocks;
	return (uint32_t)want;
}

/* The nano-batching profile's path: the configured one, or the model's path + ".tune". */
static void tune_path(const struct model_config *mc, char *out, size_t len)
{
	if (mc->tune_file)
		snprintf(out, len, "%s", mc->tune_file);
	else
		snprintf(out, len, "%s.tune", mc->path);
}

/* Decides whether iterations run as two nano-batches, and how. */
static void choose_nano(const struct model_config *mc, struct llm_worker_params *wp)
{
	struct nano_profile prof;
	char path[4096], why[512];
	int rc;

	wp->nano = false;
	wp->nano_params = (struct fwd_nano){ .split = 0.5, .min_tokens = 8, .threads = { 1, 1 } };
	if (mc->nano == NANO_MODE_OFF)
		return;
	tune_path(mc, path, sizeof(path));
	rc = nano_profile_load(path, &prof, why, sizeof(why));
	if (rc == 0) {
		wp->nano_params = prof.params;
		wp->nano = mc->nano == NANO_MODE_ON || prof.enabled;
		log_info("model %s: nano-batching %s (profile %s: split %.3f, threads %d+%d, from %lld "
		         "tokens)", mc->name, wp->nano ? "on" : "off", path, prof.params.split,
		         prof.params.threads[0], prof.params.threads[1],
		         (long long)prof.params.min_tokens);
		return;
	}
	if (rc != -ENOENT)
		log_warn("model %s: ignoring the nano-batching profile: %s", mc->name, why);
	wp->nano = mc->nano == NANO_MODE_ON;
	if (wp->nano)
		log_info("model %s: nano-batching on, untuned (even split from 8 tokens)", mc->name);
	if (mc->nano == NANO_MODE_AUTO)
		log_info("model %s: nano-batching off (not tuned: run inferd --tune %s)", mc->name,
		         mc->name);
}

int models_tune(const struct inferd_config *cfg, const char *name, char *err, size_t errlen)
{
	const struct model_config *mc = config_find_model(cfg, name);
	struct gguf *g = NULL;
	struct llama_model *model = NULL;
	struct backend be;
	struct nano_profile prof;
	char why[512], path[4096];
	int rc;

	if (!mc) {
		snprintf(err, errlen, "--tune %s: no such model in the configuration", name);
		return -ENOENT;
	}
	if ((rc = gguf_open(mc->path, &g, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "model %s: %s", name, why);
		return rc;
	}
	backend_cpu_init(&be, (int)mc->threads);
	struct llama_load_params lp = { .backend = &be, .max_batch_tokens = 256,
	                                .convert_weights = mc->convert_weights,
	                                .weight_type = mc->weight_type };
	if ((rc = llama_model_load(g, &lp, &model, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "model %s: %s", name, why);
		goto out;
	}
	const struct llama_hparams *hp = llama_model_hparams(model);
	int batch = (int)(mc->tune_batch ? mc->tune_batch : mc->max_sequences);
	if (!mc->tune_batch && batch > 32)
		batch = 32;
	int context = (int)(mc->tune_context ? mc->tune_context : 512);
	if (context >= hp->n_ctx_train)
		context = hp->n_ctx_train - 1;
	int n_threads = mc->threads ? (int)mc->threads : omp_get_max_threads();
	if ((rc = nano_tune(model, &be, batch, context, (int)mc->kv_block_size, mc->kv_type,
	                    n_threads, &prof, stdout, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "model %s: %s", name, why);
		goto out;
	}
	tune_path(mc, path, sizeof(path));
	if ((rc = nano_profile_save(path, &prof, mc->path, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "model %s: %s", name, why);
		goto out;
	}
	printf("wrote %s\n", path);
out:
	llama_model_free(model);
	gguf_free(g);
	return rc;
}

static void on_worker_events(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	generation_collect(arg);
}

/* Runs on the worker thread: wake the loop (libevent is set up for threads). */
static void notify_loop(void *arg)
{
	struct served_model *m = arg;
	event_active(m->events_ev, EV_READ, 0);
}

static int open_one(struct inferd_server *srv, struct served_model *m,
                    const struct model_config *mc, char *err, size_t errlen)
{
	char why[384];
	int rc;

	m->cfg = mc;
	m->srv = srv;
	m->next_gen_id = 1;
	if ((rc = gguf_open(mc->path, &m->gguf, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "model %s: %s", mc->name, why);
		return rc;
	}
	backend_cpu_init(&m->backend, (int)mc->threads);
	struct llama_load_params lp = { .backend = &m->backend,
	                                .max_batch_tokens = (int)mc->max_batched_tokens,
	                                .convert_weights = mc->convert_weights,
	                                .weight_type = mc->weight_type };
	if ((rc = llama_model_load(m->gguf, &lp, &m->model, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "model %s (%s): %s", mc->name, mc->path, why);
		return rc;
	}
	if ((rc = tok_new_from_gguf(m->gguf, &m->tok, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "model %s (%s): tokenizer: %s", mc->name, mc->path, why);
		return rc;
	}
	const struct llama_hparams *hp = llama_model_hparams(m->model);
	m->max_context = mc->max_context && mc->max_context < (uint32_t)hp->n_ctx_train
	                         ? mc->max_context
	                         : (uint32_t)hp->n_ctx_train;
	m->n_vocab = (uint32_t)hp->n_vocab;
	m->n_params = llama_model_n_params(m->model);
	snprintf(m->arch, sizeof(m->arch), "%s", hp->arch == LLAMA_ARCH_QWEN2 ? "qwen2" : "llama");
	const struct gguf_tensor_info *ti = gguf_get_tensor(m->gguf, "blk.0.attn_q.weight");
	snprintf(m->dtype, sizeof(m->dtype), "%s", ti ? dtype_name(ti->type) : "?");
	if (mc->convert_weights && ti &&
	    (ti->type == DTYPE_F32 || ti->type == DTYPE_F16 || ti->type == DTYPE_BF16) &&
	    llama_model_n_converted(m->model) > 0) {
		snprintf(m->dtype, sizeof(m->dtype), "%s", dtype_name(mc->weight_type));
		log_info("model %s: %d matrices converted to %s at load (weight_dtype)", mc->name,
		         llama_model_n_converted(m->model), dtype_name(mc->weight_type));
	}

	m->events_ev = event_new(srv->base, -1, 0, on_worker_events, m);
	if (!m->events_ev) {
		snprintf(err, errlen, "model %s: out of memory", mc->name);
		return -ENOMEM;
	}
	struct llm_worker_params wp = {
		.model = m->model,
		.backend = &m->backend,
		.tok = m->tok,
		.sched = {
			.max_batched_tokens = mc->max_batched_tokens,
			.max_sequences = mc->max_sequences,
			.max_queued = mc->max_queued,
			.max_queued_tokens = mc->max_queued_tokens,
			.max_context = m->max_context,
			.policy = mc->policy == MODEL_POLICY_FAIR       ? SCHED_POLICY_FAIR
			          : mc->policy == MODEL_POLICY_PRIORITY ? SCHED_POLICY_PRIORITY
			                                                : SCHED_POLICY_FCFS,
		},
		.kv_blocks = mc->kv_blocks ? mc->kv_blocks : default_kv_blocks(m, mc),
		.kv_block_size = mc->kv_block_size,
		.kv_type = mc->kv_type,
		.notify = notify_loop,
		.notify_arg = m,
	};
	choose_nano(mc, &wp);
	if (wp.kv_blocks * (uint64_t)wp.kv_block_size < m->max_context)
		log_warn("model %s: the KV pool (%u blocks of %u) holds less than one full context "
		         "of %u positions", mc->name, wp.kv_blocks, wp.kv_block_size, m->max_context);
	if ((rc = llm_worker_new(&wp, &m->worker, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "model %s: %s", mc->name, why);
		return rc;
	}
	log_info("model %s: %s, %s, %.1fM parameters (%s), context %u, vocab %u, KV pool %u x %u "
	         "positions (%s), policy %s", mc->name, mc->path, m->arch,
	         (double)m->n_params / 1e6, m->dtype, m->max_context, m->n_vocab, wp.kv_blocks,
	         wp.kv_block_size, dtype_name(mc->kv_type), model_policy_name(mc->policy));
	return 0;
}

int models_open(struct inferd_server *srv, struct served_model **out, size_t *n_out, char *err,
                size_t errlen)
{
	const struct inferd_config *cfg = srv->cfg;
	struct served_model *ms;
	size_t n = 0;

	*out = NULL;
	*n_out = 0;
	if (!cfg->n_models)
		return 0;
	ms = calloc(cfg->n_models, sizeof(*ms));
	if (!ms) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_models; i++) {
		if (model_path_is_image(cfg->models[i].path))
			continue; /* a diffusers folder: images.c */
		int rc = open_one(srv, &ms[n], &cfg->models[i], err, errlen);
		n++;
		if (rc < 0) {
			models_close(ms, n);
			return rc;
		}
	}
	*out = ms;
	*n_out = n;
	return 0;
}

void models_close(struct served_model *models, size_t n)
{
	for (size_t i = 0; models && i < n; i++) {
		struct served_model *m = &models[i];
		llm_worker_free(m->worker); /* first: the thread may still notify */
		if (m->events_ev)
			event_free(m->events_ev);
		tok_free(m->tok);
		llama_model_free(m->model);
		gguf_free(m->gguf);
	}
	free(models);
}
