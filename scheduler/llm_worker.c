/* The LLM worker thread: inbox -> scheduler plan -> forward pass -> sampling -> outbox. */
#include "llm_worker.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "forward.h"
#include "kv_cache.h"
#include "llama.h"
#include "tokenizer.h"

/* One request inside the worker. */
struct gen {
	uint64_t id;
	struct sched_seq seq;          /* seq.user points back here */
	struct llm_gen_params p;       /* p.prompt owned (copied at submit) */
	struct sampler *sampler;       /* the request's own (penalty history, PRNG) */
	double t_submit, t_scheduled, t_first_token;
	struct gen *hash_next;
};

enum cmd_kind { CMD_SUBMIT, CMD_CANCEL };

struct cmd {
	enum cmd_kind kind;
	uint64_t id;
	struct gen *gen;               /* CMD_SUBMIT: handed over to the worker */
	struct cmd *next;
};

struct llm_worker {
	struct llm_worker_params p;
	struct kv_cache *kv;
	struct block_manager *bm;
	struct sched *sched;
	int n_vocab;
	float *logits;                 /* (max_sequences, n_vocab) */
	struct fwd_seq *fwd;           /* (max_sequences) */
	struct gen **table;            /* id -> gen, chained */
	size_t table_mask;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;          /* guards everything below */
	pthread_cond_t wake;
	bool stop;
	struct cmd *inbox_head, *inbox_tail;
	struct llm_event *outbox;
	size_t n_out, cap_out;
	struct llm_worker_stats stats;
	/* worker-thread-only: latency figures, copied into stats under the lock */
	struct llm_worker_stats lat;
	/* worker-thread-only staging of this iteration's events */
	struct llm_event *staged;
	size_t n_staged, cap_staged;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- requests by id (worker thread only) ------------------------------------------------- */

static struct gen **slot_of(struct llm_worker *w, uint64_t id)
{
	struct gen **pp = &w->table[(id * 0x9E3779B97F4A7C15ull >> 17) & w->table_mask];
	while (*pp && (*pp)->id != id)
		pp = &(*pp)->hash_next;
	return pp;
}

static void gen_free(struct gen *g)
{
	if (!g)
		return;
	free((void *)g->p.prompt);
	sampler_free(g->sampler);
	free(g);
}

/* ---- events ------------------------------------------------------------------------------ */

static struct llm_event *stage(struct llm_worker *w, uint64_t id, enum llm_event_kind kind)
{
	if (w->n_staged == w->cap_staged) {
		size_t cap = w->cap_staged ? w->cap_staged * 2 : 256;
		struct llm_event *e = realloc(w->staged, cap * sizeof(*e));
		if (!e)
			return NULL; /* the event is lost; the loop's deadline ends the call */
		w->staged = e;
		w->cap_staged = cap;
	}
	struct llm_event *e = &w->staged[w->n_staged++];
	memset(e, 0, sizeof(*e));
	e->id = id;
	e->kind = kind;
	e->logprob = NAN;
	return e;
}

static void stage_end(struct llm_worker *w, struct gen *g, enum llm_finish finish, int error)
{
	struct llm_event *e = stage(w, g->id, LLM_EVENT_END);
	double t = now_s();
	if (!e)
		return;
	e->finish = finish;
	e->error = error;
	e->prompt_tokens = g->p.n_prompt;
	e->completion_tokens = g->seq.tokens ? g->seq.n_tokens - g->seq.n_prompt : 0;
	e->cached_tokens = g->seq.n_cached;
	e->queue_s = g->t_scheduled ? g->t_scheduled - g->t_submit : t - g->t_submit;
	e->ttft_s = g->t_first_token ? g->t_first_token - g->t_submit : 0;
	e->total_s = t - g->t_submit;
	if (g->t_first_token) {
		struct llm_worker_stats *st = &w->lat;
		st->finished++;
		st->ttft_s_sum += e->ttft_s;
		st->ttft_s_max = e->ttft_s > st->ttft_s_max ? e->ttft_s : st->ttft_s_max;
		if (e->completion_tokens > 1) {
			double tpot = (t - g->t_first_token) / (double)(e->completion_tokens - 1);
			st->tpot_n++;
			st->tpot_s_sum += tpot;
			st->tpot_s_max = tpot > st->tpot_s_max ? tpot : st->tpot_s_max;
		}
	}
}

/* Ends a request inside the worker: event, scheduler, table, memory. */
static void gen_end(struct llm_worker *w, struct gen *g, enum llm_finish finish, int error)
{
	stage_end(w, g, finish, error);
	sched_finish(w->sched, &g->seq);
	struct gen **pp = slot_of(w, g->id);
	if (*pp == g)
		*pp = g->hash_next;
	gen_free(g);
}

static void publish(struct llm_worker *w)
{
	if (!w->n_staged)
		return;
	pthread_mutex_lock(&w->lock);
	if (w->n_out + w->n_staged > w->cap_out) {
		size_t cap = w->cap_out ? w->cap_out : 256;
		while (cap < w->n_out + w->n_staged)
			cap *= 2;
		struct llm_event *o = realloc(w->outbox, cap * sizeof(*o));
		if (!o) {
			pthread_mutex_unlock(&w->lock);
			w->n_staged = 0;
			return;
		}
		w->outbox = o;
		w->cap_out = cap;
	}
	memcpy(w->outbox + w->n_out, w->staged, w->n_staged * sizeof(*w->staged));
	w->n_out += w->n_staged;
	pthread_mutex_unlock(&w->lock);
	w->n_staged = 0;
	if (w->p.notify)
		w->p.notify(w->p.notify_arg);
}

size_t llm_worker_take_events(struct llm_worker *w, struct llm_event **events)
{
	size_t n;
	pthread_mutex_lock(&w->lock);
	*events = w->outbox;
	n = w->n_out;
	w->outbox = NULL;
	w->n_out = w->cap_out = 0;
	pthread_mutex_unlock(&w->lock);
	return n;
}

/* ---- one iteration ----------------------------------------------------------------------- */

static void iterate(struct llm_worker *w)
{
	double t0 = now_s(), t1, t2;
	const struct sched_plan *plan = sched_plan(w->sched);
	int rc;

	if (!plan->n_items) {
		/* Nothing can run now (cannot last: with nothing running every block is free). Do
		 * not spin on it. */
		sched_plan_done(w->sched);
		struct timespec nap = { .tv_sec = 0, .tv_nsec = 1000000 };
		nanosleep(&nap, NULL);
		return;
	}
	for (uint32_t i = 0; i < plan->n_items; i++) {
		const struct sched_item *it = &plan->items[i];
		struct gen *g = it->seq->user;
		if (!g->t_scheduled)
			g->t_scheduled = t0;
		w->fwd[i] = (struct fwd_seq){
			.tokens = it->seq->tokens + it->start,
			.n_tokens = (int32_t)it->n_tokens,
			.pos = (int32_t)it->start,
			.block_table = (const int32_t *)it->seq->blocks.blocks,
			.n_blocks = (int32_t)it->seq->blocks.n_blocks,
			.logits = it->want_logits ? FWD_LOGITS_LAST : FWD_LOGITS_NONE,
		};
	}
	rc = w->p.nano ? llama_forward_nano(w->p.model, w->kv, w->fwd, (int)plan->n_items,
	                                    w->logits, &w->p.nano_params)
	               : llama_forward(w->p.model, w->kv, w->fwd, (int)plan->n_items, w->logits);
	t1 = now_s();
	sched_plan_done(w->sched);
	if (rc < 0) {
		fprintf(stderr, "inferd: forward pass failed: %s\n", strerror(-rc));
		for (uint32_t i = 0; i < plan->n_items; i++)
			gen_end(w, plan->items[i].seq->user, LLM_FINISH_ERROR, rc);
		return;
	}
	uint32_t row = 0;
	for (uint32_t i = 0; i < plan->n_items; i++) {
		const struct sched_item *it = &plan->items[i];
		if (!it->want_logits)
			continue;
		struct gen *g = it->seq->user;
		float *lg = w->logits + (size_t)row++ * w->n_vocab;
		struct sampler_result res;
		if (sampler_sample(g->sampler, lg, &res) < 0) {
			gen_end(w, g, LLM_FINISH_ERROR, -EDOM); /* no finite logit */
			continue;
		}
		int32_t tok = res.token;
		int stop_id = sampler_accept(g->sampler, tok);
		struct llm_event *e = stage(w, g->id, LLM_EVENT_TOKEN);
		if (e) {
			e->token = tok;
			if (g->p.logprobs) {
				e->logprob = res.logprob;
				e->n_top = (uint32_t)res.n_top;
				memcpy(e->top, res.top, (size_t)res.n_top * sizeof(res.top[0]));
			}
		}
		if (!g->t_first_token)
			g->t_first_token = now_s();
		if (sched_seq_append(w->sched, &g->seq, tok) < 0) {
			gen_end(w, g, LLM_FINISH_ERROR, -ENOMEM);
			continue;
		}
		uint32_t generated = g->seq.n_tokens - g->seq.n_prompt;
		if (stop_id == 1 || (!g->p.ignore_eos && tok_is_eog(w->p.tok, tok)))
			gen_end(w, g, LLM_FINISH_STOP, 0);
		else if (generated >= g->p.max_new || g->seq.n_tokens >= w->p.sched.max_context)
			gen_end(w, g, LLM_FINISH_LENGTH, 0);
	}
	t2 = now_s();
	pthread_mutex_lock(&w->lock);
	w->stats.iteration_s_total += t2 - t0;
	w->stats.forward_s_total += t1 - t0;
	w->stats.sample_s_total += t2 - t1;
	pthread_mutex_unlock(&w->lock);
}

/* ---- commands ---------------------------------------------------------------------------- */

static void apply(struct llm_worker *w, struct cmd *c)
{
	if (c->kind == CMD_SUBMIT) {
		struct gen *g = c->gen;
		int rc = sched_submit(w->sched, &g->seq, g->p.prompt, g->p.n_prompt, g->p.max_new);
		if (rc < 0) {
			stage_end(w, g, LLM_FINISH_ERROR, rc);
			gen_free(g);
			return;
		}
		struct gen **pp = slot_of(w, g->id);
		g->hash_next = *pp;
		*pp = g;
		return;
	}
	struct gen **pp = slot_of(w, c->id);
	if (*pp)
		gen_end(w, *pp, LLM_FINISH_CANCELLED, 0);
}

static void *run(void *arg)
{
	struct llm_worker *w = arg;

	for (;;) {
		pthread_mutex_lock(&w->lock);
		while (!w->stop && !w->inbox_head && !sched_busy(w->sched))
			pthread_cond_wait(&w->wake, &w->lock);
		if (w->stop) {
			pthread_mutex_unlock(&w->lock);
			break;
		}
		struct cmd *cmds = w->inbox_head;
		w->inbox_head = w->inbox_tail = NULL;
		pthread_mutex_unlock(&w->lock);

		while (cmds) {
			struct cmd *next = cmds->next;
			apply(w, cmds);
			free(cmds);
			cmds = next;
		}
		if (sched_busy(w->sched))
			iterate(w);
		pthread_mutex_lock(&w->lock);
		sched_stats(w->sched, &w->stats.sched);
		block_manager_stats(w->bm, &w->stats.blocks);
		w->stats.finished = w->lat.finished;
		w->stats.ttft_s_sum = w->lat.ttft_s_sum;
		w->stats.ttft_s_max = w->lat.ttft_s_max;
		w->stats.tpot_n = w->lat.tpot_n;
		w->stats.tpot_s_sum = w->lat.tpot_s_sum;
		w->stats.tpot_s_max = w->lat.tpot_s_max;
		pthread_mutex_unlock(&w->lock);
		publish(w);
	}
	return NULL;
}

static int push(struct llm_worker *w, enum cmd_kind kind, uint64_t id, struct gen *g)
{
	struct cmd *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->kind = kind;
	c->id = id;
	c->gen = g;
	pthread_mutex_lock(&w->lock);
	if (w->inbox_tail)
		w->inbox_tail->next = c;
	else
		w->inbox_head = c;
	w->inbox_tail = c;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

int llm_worker_submit(struct llm_worker *w, uint64_t id, const struct llm_gen_params *p)
{
	struct gen *g = calloc(1, sizeof(*g));
	int32_t *prompt = malloc((p->n_prompt ? p->n_prompt : 1) * sizeof(*prompt));

	if (!g || !prompt) {
		free(g);
		free(prompt);
		return -ENOMEM;
	}
	memcpy(prompt, p->prompt, p->n_prompt * sizeof(*prompt));
	g->id = id;
	g->p = *p;
	g->p.prompt = prompt;
	/* Bias and stop ids are copied by the sampler: the caller's arrays are not kept. */
	g->p.sampling.logit_bias = NULL;
	g->p.sampling.n_logit_bias = 0;
	g->p.sampling.stop_ids = NULL;
	g->p.sampling.n_stop_ids = 0;
	g->sampler = sampler_new(&p->sampling, w->n_vocab);
	if (!g->sampler || sampler_accept_prompt(g->sampler, prompt, p->n_prompt) < 0) {
		gen_free(g);
		return -EINVAL;
	}
	g->seq.id = id;
	g->seq.priority = p->priority;
	g->seq.user = g;
	g->t_submit = now_s();
	int rc = push(w, CMD_SUBMIT, id, g);
	if (rc < 0)
		gen_free(g);
	return rc;
}

void llm_worker_cancel(struct llm_worker *w, uint64_t id)
{
	push(w, CMD_CANCEL, id, NULL);
}

void llm_worker_stats(struct llm_worker *w, struct llm_worker_stats *out)
{
	pthread_mutex_lock(&w->lock);
	*out = w->stats;
	pthread_mutex_unlock(&w->lock);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

int llm_worker_new(const struct llm_worker_params *p, struct llm_worker **out, char *err,
                   size_t errlen)
{
	struct llm_worker *w = calloc(1, sizeof(*w));
	const struct llama_hparams *hp = llama_model_hparams(p->model);
	struct kv_cache_params kvp;
	int rc = -ENOMEM;

	*out = NULL;
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	w->p = *p;
	if (!w->p.sched.max_context || w->p.sched.max_context > (uint32_t)hp->n_ctx_train)
		w->p.sched.max_context = (uint32_t)hp->n_ctx_train;
	w->n_vocab = hp->n_vocab;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	llama_kv_params(p->model, (int)p->kv_block_size, (int)p->kv_blocks, &kvp);
	kvp.type = p->kv_type;
	if ((rc = kv_cache_new(p->backend, &kvp, &w->kv)) < 0) {
		snprintf(err, errlen, "cannot allocate a KV cache of %u blocks x %u positions: %s",
		         p->kv_blocks, p->kv_block_size, strerror(-rc));
		goto fail;
	}
	if ((rc = block_manager_new(p->kv_blocks, p->kv_block_size, &w->bm)) < 0 ||
	    (rc = sched_new(&w->p.sched, w->bm, &w->sched)) < 0) {
		snprintf(err, errlen, "bad scheduler settings: %s", strerror(-rc));
		goto fail;
	}
	rc = -ENOMEM;
	w->table_mask = 1023;
	w->table = calloc(w->table_mask + 1, sizeof(*w->table));
	w->logits = malloc((size_t)p->sched.max_sequences * (size_t)w->n_vocab * sizeof(float));
	w->fwd = calloc(p->sched.max_sequences, sizeof(*w->fwd));
	if (!w->table || !w->logits || !w->fwd) {
		snprintf(err, errlen, "out of memory for %u sequences", p->sched.max_sequences);
		goto fail;
	}
	if ((rc = -pthread_create(&w->thread, NULL, run, w)) < 0) {
		snprintf(err, errlen, "cannot start the worker thread: %s", strerror(-rc));
		goto fail;
	}
	w->thread_started = true;
	*out = w;
	return 0;
fail:
	llm_worker_free(w);
	return rc;
}

void llm_worker_free(struct llm_worker *w)
{
	if (!w)
		return;
	if (w->thread_started) {
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	for (struct cmd *c = w->inbox_head, *n; c; c = n) {
		n = c->next;
		gen_free(c->gen);
		free(c);
	}
	for (size_t i = 0; w->table && i <= w->table_mask; i++) {
		for (struct gen *g = w->table[i], *n; g; g = n) {
			n = g->hash_next;
			sched_finish(w->sched, &g->seq);
			gen_free(g);
		}
	}
	sched_free(w->sched);
	block_manager_free(w->bm);
	kv_cache_free(w->kv);
	free(w->table);
	free(w->logits);
	free(w->fwd);
	free(w->outbox);
	free(w->staged);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->wake);
	free(w);
}
