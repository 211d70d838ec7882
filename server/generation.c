/* Generations in flight: requests to the worker, worker events to text pieces for a sink. */
#include "generation.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "models.h"
#include "server-internal.h"
#include "tokenizer.h"

struct generation {
	struct served_model *model;
	uint64_t id;
	const struct gen_sink *sink;
	void *arg;
	struct tok_stream *stream;
	struct stop_matcher *stop;      /* NULL without stop strings */
	bool stopped;                   /* a stop string ended it; waiting for nothing */
	struct generation *prev, *next; /* in model->gens */
};

struct served_model *generation_find_model(struct inferd_server *srv, const char *name)
{
	if ((!name || !*name) && srv->n_models == 1)
		return &srv->models[0];
	for (size_t i = 0; i < srv->n_models; i++)
		if (name && strcmp(srv->models[i].cfg->name, name) == 0)
			return &srv->models[i];
	return NULL;
}

int generation_tokenize(const struct served_model *m, const char *text, bool add_special,
                        bool parse_special, int32_t **ids, size_t *n)
{
	size_t len = strlen(text), cap = len + 8;
	int32_t *buf = malloc(cap * sizeof(*buf));
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = tok_encode(m->tok, text, len, add_special, parse_special, buf, cap, n);
	if (rc == -ENOBUFS) {
		int32_t *bigger = realloc(buf, *n * sizeof(*buf));
		if (!bigger) {
			free(buf);
			return -ENOMEM;
		}
		buf = bigger;
		rc = tok_encode(m->tok, text, len, add_special, parse_special, buf, *n, n);
	}
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*ids = buf;
	return 0;
}

static void unlink_gen(struct generation *g)
{
	struct served_model *m = g->model;
	if (g->prev)
		g->prev->next = g->next;
	else
		m->gens = g->next;
	if (g->next)
		g->next->prev = g->prev;
}

static void gen_free(struct generation *g)
{
	tok_stream_free(g->stream);
	stop_matcher_free(g->stop);
	free(g);
}

enum gen_status generation_start(struct inferd_server *srv, const struct gen_request *r,
                                 const struct gen_sink *sink, void *arg,
                                 struct generation **out, char *msg, size_t msglen)
{
	struct served_model *m = generation_find_model(srv, r->model);
	struct llm_gen_params gp = { 0 };
	struct generation *g = NULL;
	int32_t *ids = NULL;
	size_t n_ids = 0;
	enum gen_status st = GEN_OK;
	char why[256];
	int rc;

	*out = NULL;
	if (!m) {
		snprintf(msg, msglen, "no model named '%s'%s", r->model ? r->model : "",
		         srv->n_models ? "" : " (this daemon serves no model)");
		return GEN_NOT_FOUND;
	}
	if (!(r->sampling.temperature >= 0.0f && r->sampling.temperature <= 100.0f)) {
		snprintf(msg, msglen, "temperature must be in [0, 100] (0: greedy)");
		return GEN_INVALID_ARGUMENT;
	}
	if (sampling_params_check(&r->sampling, (int32_t)m->n_vocab, why, sizeof(why)) < 0) {
		snprintf(msg, msglen, "%s", why);
		return GEN_INVALID_ARGUMENT;
	}
	if (r->n_stop > GEN_MAX_STOP) {
		snprintf(msg, msglen, "at most %d stop strings", GEN_MAX_STOP);
		return GEN_INVALID_ARGUMENT;
	}
	for (size_t i = 0; i < r->n_stop; i++) {
		if (!r->stop[i][0]) {
			snprintf(msg, msglen, "stop strings must not be empty");
			return GEN_INVALID_ARGUMENT;
		}
	}
	if (r->text) {
		if ((rc = generation_tokenize(m, r->text, true, r->parse_special, &ids, &n_ids)) < 0) {
			snprintf(msg, msglen, "cannot tokenize the prompt: %s", strerror(-rc));
			return rc == -ENOMEM ? GEN_RESOURCE_EXHAUSTED : GEN_INVALID_ARGUMENT;
		}
	} else {
		for (size_t i = 0; i < r->n_ids; i++) {
			if (r->ids[i] < 0 || (uint32_t)r->ids[i] >= m->n_vocab) {
				snprintf(msg, msglen, "token id %d at %zu is outside the vocabulary of %u",
				         r->ids[i], i, m->n_vocab);
				return GEN_INVALID_ARGUMENT;
			}
		}
		n_ids = r->n_ids;
	}
	const int32_t *prompt = r->text ? ids : r->ids;
	if (n_ids == 0) {
		snprintf(msg, msglen, "the prompt is empty");
		st = GEN_INVALID_ARGUMENT;
		goto out;
	}
	if (n_ids >= m->max_context) {
		snprintf(msg, msglen, "the prompt of %zu tokens does not fit the context of %u tokens",
		         n_ids, m->max_context);
		st = GEN_INVALID_ARGUMENT;
		goto out;
	}
	uint32_t room = m->max_context - (uint32_t)n_ids;
	gp.prompt = prompt;
	gp.n_prompt = (uint32_t)n_ids;
	gp.max_new = r->max_tokens && r->max_tokens < room ? r->max_tokens : room;
	gp.priority = r->priority;
	gp.sampling = r->sampling;
	gp.ignore_eos = r->ignore_eos;
	gp.logprobs = r->logprobs;

	g = calloc(1, sizeof(*g));
	if (!g || !(g->stream = tok_stream_new(m->tok, 0)) ||
	    (r->n_stop && !(g->stop = stop_matcher_new(r->stop, r->n_stop)))) {
		snprintf(msg, msglen, "out of memory");
		st = GEN_RESOURCE_EXHAUSTED;
		goto out;
	}
	g->model = m;
	g->id = m->next_gen_id++;
	g->sink = sink;
	g->arg = arg;
	if ((rc = llm_worker_submit(m->worker, g->id, &gp)) < 0) {
		snprintf(msg, msglen, "cannot queue the request: %s", strerror(-rc));
		st = rc == -EINVAL ? GEN_INVALID_ARGUMENT : GEN_RESOURCE_EXHAUSTED;
		goto out;
	}
	g->next = m->gens;
	if (m->gens)
		m->gens->prev = g;
	m->gens = g;
	*out = g;
	g = NULL;
out:
	if (g)
		gen_free(g);
	free(ids);
	return st;
}

void generation_abandon(struct generation *g)
{
	if (!g)
		return;
	llm_worker_cancel(g->model->worker, g->id);
	unlink_gen(g);
	gen_free(g);
}

/* ---- events ------------------------------------------------------------------------------ */

static void fill_usage(struct gen_end *e, const struct llm_event *ev)
{
	e->prompt_tokens = ev->prompt_tokens;
	e->completion_tokens = ev->completion_tokens;
	e->cached_tokens = ev->cached_tokens;
	e->queue_s = ev->queue_s;
	e->ttft_s = ev->ttft_s;
	e->total_s = ev->total_s;
	if (ev->completion_tokens > 1)
		e->tpot_s = (ev->total_s - ev->ttft_s) / (double)(ev->completion_tokens - 1);
}

/* Ends g through its sink (the worker may still be running it: cancel there). */
static void finish(struct generation *g, const struct gen_end *e, bool cancel_worker)
{
	metrics_observe_generation(g->model->srv, e);
	if (cancel_worker)
		llm_worker_cancel(g->model->worker, g->id);
	unlink_gen(g);
	const struct gen_sink *sink = g->sink;
	void *arg = g->arg;
	/* Free first: the sink's end may free what arg points to, and must not see g again. */
	gen_free(g);
	sink->end(e, arg);
}

static void on_token(struct generation *g, const struct llm_event *ev)
{
	const char *text = "", *out = "";
	size_t n = 0, out_len = 0;
	struct gen_piece p = {
		.token = ev->token, .logprob = ev->logprob, .top = ev->top, .n_top = ev->n_top,
	};

	if (tok_stream_feed(g->stream, ev->token, &text, &n) < 0)
		n = 0;
	out = text;
	out_len = n;
	if (g->stop) {
		int hit = stop_matcher_feed(g->stop, text, n, &out, &out_len, NULL);
		if (hit == 1) {
			/* The text before the stop string goes out with this token, then the end. */
			p.text = out;
			p.len = out_len;
			g->sink->piece(&p, g->arg);
			struct gen_end e = { .status = GEN_OK, .finish = LLM_FINISH_STOP, .text = "" };
			fill_usage(&e, ev);
			finish(g, &e, true);
			return;
		}
		if (hit < 0)
			out_len = 0;
	}
	p.text = out;
	p.len = out_len;
	g->sink->piece(&p, g->arg);
}

/* Appends len bytes to a growing buffer. @return 0 or -ENOMEM. */
static int append(char **buf, size_t *len, const char *text, size_t n)
{
	if (!n)
		return 0;
	char *b = realloc(*buf, *len + n + 1);
	if (!b)
		return -ENOMEM;
	memcpy(b + *len, text, n);
	*len += n;
	b[*len] = '\0';
	*buf = b;
	return 0;
}

static void on_end(struct generation *g, const struct llm_event *ev)
{
	struct gen_end e = { .status = GEN_OK, .finish = ev->finish, .text = "" };
	char *tail = NULL;
	size_t tail_len = 0;
	const char *t;
	size_t n;

	if (ev->error) {
		e.status = ev->error == -EAGAIN  ? GEN_RESOURCE_EXHAUSTED
		           : ev->error == -E2BIG ? GEN_INVALID_ARGUMENT
		                                 : GEN_INTERNAL;
		e.message = ev->error == -EAGAIN
		                    ? "the model's queue is full (max_queued / max_queued_tokens): retry later"
		            : ev->error == -E2BIG
		                    ? "the request needs more positions than the context or the KV pool holds"
		                    : "generation failed";
		finish(g, &e, false);
		return;
	}
	/* Held-back bytes: the detokenizer's incomplete tail (through the stop matcher), then
	 * what the stop matcher still holds. */
	if (tok_stream_flush(g->stream, &t, &n) == 0 && n) {
		if (g->stop) {
			const char *o;
			size_t on;
			if (stop_matcher_feed(g->stop, t, n, &o, &on, NULL) == 0)
				append(&tail, &tail_len, o, on);
		} else {
			append(&tail, &tail_len, t, n);
		}
	}
	if (g->stop && stop_matcher_flush(g->stop, &t, &n) == 0)
		append(&tail, &tail_len, t, n);
	e.text = tail ? tail : "";
	e.len = tail_len;
	fill_usage(&e, ev);
	finish(g, &e, false);
	free(tail);
}

static struct generation *find(struct served_model *m, uint64_t id)
{
	for (struct generation *g = m->gens; g; g = g->next)
		if (g->id == id)
			return g;
	return NULL; /* abandoned or stopped on this side before the event came */
}

void generation_collect(struct served_model *m)
{
	struct llm_event *ev = NULL;
	size_t n = llm_worker_take_events(m->worker, &ev);

	for (size_t i = 0; i < n; i++) {
		struct generation *g = find(m, ev[i].id);
		if (!g)
			continue;
		if (ev[i].kind == LLM_EVENT_TOKEN)
			on_token(g, &ev[i]);
		else
			on_end(g, &ev[i]);
	}
	free(ev);
}
