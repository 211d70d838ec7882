/* Generate and Tokenize: requests in, token events out as GenerateReply frames. */
#include "generate.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llm_worker.h"
#include "log.h"
#include "models.h"
#include "server-internal.h"
#include "tokenizer.h"

#define STATUS(x) INFERD__V1__STATUS_CODE__STATUS_##x

/* A Generate call in flight. */
struct gen_call {
	struct call *call;
	struct served_model *model;
	uint64_t gen_id;
	struct tok_stream *stream;
	bool worker_done;              /* the worker sent its END: nothing to cancel */
	uint32_t n_prompt;
	struct gen_call *prev, *next;  /* in model->calls */
};

static struct served_model *find_model(struct inferd_server *srv, const char *name)
{
	if ((!name || !*name) && srv->n_models == 1)
		return &srv->models[0]; /* one model: the name may be left out */
	for (size_t i = 0; i < srv->n_models; i++)
		if (name && strcmp(srv->models[i].cfg->name, name) == 0)
			return &srv->models[i];
	return NULL;
}

static void gen_release(struct call *c)
{
	struct gen_call *g = c->method_state;
	struct served_model *m = g->model;

	if (!g->worker_done)
		llm_worker_cancel(m->worker, g->gen_id);
	if (g->prev)
		g->prev->next = g->next;
	else
		m->calls = g->next;
	if (g->next)
		g->next->prev = g->prev;
	tok_stream_free(g->stream);
	free(g);
	c->method_state = NULL;
}

static const struct call_ops gen_ops = { .release = gen_release };

/* Encodes a prompt's text. @return 0 and *ids (free with free()), or a negative errno. */
static int encode_text(const struct tokenizer *tok, const char *text, bool add_special,
                       bool parse_special, int32_t **ids, size_t *n)
{
	size_t len = strlen(text), cap = len + 8;
	int32_t *buf = malloc(cap * sizeof(*buf));
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = tok_encode(tok, text, len, add_special, parse_special, buf, cap, n);
	if (rc == -ENOBUFS) {
		int32_t *bigger = realloc(buf, *n * sizeof(*buf));
		if (!bigger) {
			free(buf);
			return -ENOMEM;
		}
		buf = bigger;
		rc = tok_encode(tok, text, len, add_special, parse_special, buf, *n, n);
	}
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*ids = buf;
	return 0;
}

/* Fills the worker's sampling parameters; @return NULL or the reason they are invalid. */
static const char *convert_sampling(const Inferd__V1__SamplingParams *sp, uint32_t n_vocab,
                                    struct llm_sampling *out)
{
	memset(out, 0, sizeof(*out));
	if (!sp)
		return NULL;
	if (!(sp->temperature >= 0 && sp->temperature <= 100))
		return "temperature must be in [0, 100]";
	if (!(sp->top_p >= 0 && sp->top_p <= 1))
		return "top_p must be in [0, 1]";
	if (!(sp->min_p >= 0 && sp->min_p <= 1))
		return "min_p must be in [0, 1]";
	if (!(sp->repetition_penalty >= 0 && sp->repetition_penalty <= 10))
		return "repetition_penalty must be in [0, 10]";
	if (!(fabsf(sp->presence_penalty) <= 2 && fabsf(sp->frequency_penalty) <= 2))
		return "presence_penalty and frequency_penalty must be in [-2, 2]";
	if (sp->top_logprobs > LLM_MAX_TOP)
		return "top_logprobs must be at most 20";
	if (sp->n_stop_token_ids > LLM_MAX_STOP_IDS)
		return "at most 16 stop_token_ids";
	if (sp->n_logit_bias > LLM_MAX_BIAS)
		return "at most 64 logit_bias entries";
	out->temperature = sp->temperature;
	out->top_k = sp->top_k;
	out->top_p = sp->top_p;
	out->min_p = sp->min_p;
	out->repetition_penalty = sp->repetition_penalty;
	out->presence_penalty = sp->presence_penalty;
	out->frequency_penalty = sp->frequency_penalty;
	out->use_seed = sp->use_seed;
	out->seed = sp->seed;
	out->ignore_eos = sp->ignore_eos;
	out->logprobs = sp->logprobs || sp->top_logprobs;
	out->top_logprobs = sp->top_logprobs;
	for (size_t i = 0; i < sp->n_stop_token_ids; i++) {
		if (sp->stop_token_ids[i] < 0 || (uint32_t)sp->stop_token_ids[i] >= n_vocab)
			return "stop_token_ids holds an id outside the vocabulary";
		out->stop_ids[out->n_stop_ids++] = sp->stop_token_ids[i];
	}
	for (size_t i = 0; i < sp->n_logit_bias; i++) {
		int32_t id = sp->logit_bias[i]->key;
		float b = sp->logit_bias[i]->value;
		if (id < 0 || (uint32_t)id >= n_vocab)
			return "logit_bias names a token outside the vocabulary";
		if (!(fabsf(b) <= 100))
			return "logit_bias values must be in [-100, 100]";
		out->bias_ids[out->n_bias] = id;
		out->bias[out->n_bias++] = b;
	}
	return NULL;
}

void method_generate(struct call *c, const uint8_t *payload, size_t len)
{
	Inferd__V1__GenerateRequest *req = inferd__v1__generate_request__unpack(NULL, len, payload);
	struct served_model *m;
	struct llm_gen_params gp = { 0 };
	int32_t *ids = NULL;
	size_t n_ids = 0;
	const char *why;
	int rc;

	if (!req) {
		call_finish(c, STATUS(INVALID_ARGUMENT), NULL, "payload does not decode as a Generate request");
		return;
	}
	m = find_model(c->srv, req->model);
	if (!m) {
		call_finish(c, STATUS(NOT_FOUND), NULL, "no model named '%s'%s", req->model,
		            c->srv->n_models ? "" : " (this daemon serves no model)");
		goto out;
	}
	if (req->sampling && req->sampling->n_stop) {
		call_finish(c, STATUS(UNIMPLEMENTED), NULL, "stop strings are not supported yet");
		goto out;
	}
	if ((why = convert_sampling(req->sampling, m->n_vocab, &gp.sampling))) {
		call_finish(c, STATUS(INVALID_ARGUMENT), NULL, "%s", why);
		goto out;
	}
	if (req->prompt_case == INFERD__V1__GENERATE_REQUEST__PROMPT_TEXT) {
		rc = encode_text(m->tok, req->text, true, req->parse_special, &ids, &n_ids);
		if (rc < 0) {
			call_finish(c, STATUS(INVALID_ARGUMENT), NULL, "cannot tokenize the prompt: %s",
			            strerror(-rc));
			goto out;
		}
	} else if (req->prompt_case == INFERD__V1__GENERATE_REQUEST__PROMPT_TOKENS) {
		n_ids = req->tokens->n_ids;
		ids = malloc((n_ids ? n_ids : 1) * sizeof(*ids));
		if (!ids) {
			call_finish(c, STATUS(RESOURCE_EXHAUSTED), NULL, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < n_ids; i++) {
			if (req->tokens->ids[i] < 0 || (uint32_t)req->tokens->ids[i] >= m->n_vocab) {
				call_finish(c, STATUS(INVALID_ARGUMENT), NULL,
				            "token id %d at %zu is outside the vocabulary of %u",
				            req->tokens->ids[i], i, m->n_vocab);
				goto out;
			}
			ids[i] = req->tokens->ids[i];
		}
	}
	if (n_ids == 0) {
		call_finish(c, STATUS(INVALID_ARGUMENT), NULL, "the prompt is empty");
		goto out;
	}
	if (n_ids >= m->max_context) {
		call_finish(c, STATUS(INVALID_ARGUMENT), NULL,
		            "the prompt of %zu tokens does not fit the context of %u tokens", n_ids,
		            m->max_context);
		goto out;
	}
	uint32_t room = m->max_context - (uint32_t)n_ids;
	gp.prompt = ids;
	gp.n_prompt = (uint32_t)n_ids;
	gp.max_new = req->max_tokens && req->max_tokens < room ? req->max_tokens : room;
	gp.priority = req->priority;

	struct gen_call *g = calloc(1, sizeof(*g));
	if (!g || !(g->stream = tok_stream_new(m->tok, 0))) {
		free(g);
		call_finish(c, STATUS(RESOURCE_EXHAUSTED), NULL, "out of memory");
		goto out;
	}
	g->call = c;
	g->model = m;
	g->gen_id = m->next_gen_id++;
	g->n_prompt = gp.n_prompt;
	if ((rc = llm_worker_submit(m->worker, g->gen_id, &gp)) < 0) {
		tok_stream_free(g->stream);
		free(g);
		call_finish(c, STATUS(RESOURCE_EXHAUSTED), NULL, "cannot queue the request: %s",
		            strerror(-rc));
		goto out;
	}
	g->next = m->calls;
	if (m->calls)
		m->calls->prev = g;
	m->calls = g;
	c->method_state = g;
	c->ops = &gen_ops;
out:
	free(ids);
	inferd__v1__generate_request__free_unpacked(req, NULL);
}

/* ---- events from the worker -------------------------------------------------------------- */

static struct gen_call *find_call(struct served_model *m, uint64_t id)
{
	for (struct gen_call *g = m->calls; g; g = g->next)
		if (g->gen_id == id)
			return g;
	return NULL; /* ended on the loop side (cancel, deadline) before the event came */
}

static void send_token(struct gen_call *g, const struct llm_event *e)
{
	Inferd__V1__GenerateReply rep = INFERD__V1__GENERATE_REPLY__INIT;
	Inferd__V1__TokenLogprob lp = INFERD__V1__TOKEN_LOGPROB__INIT, *lpp = &lp;
	int32_t tok = e->token;
	const char *text = "";
	size_t n = 0;
	char *piece = NULL;

	if (tok_stream_feed(g->stream, tok, &text, &n) == 0 && n) {
		piece = malloc(n + 1);
		if (piece) {
			memcpy(piece, text, n);
			piece[n] = '\0';
		}
	}
	rep.text = piece ? piece : (char *)"";
	rep.n_token_ids = 1;
	rep.token_ids = &tok;
	if (!isnan(e->logprob)) {
		lp.token_id = tok;
		lp.logprob = e->logprob;
		rep.n_logprobs = 1;
		rep.logprobs = &lpp;
	}
	call_reply(g->call, &rep.base);
	free(piece);
}

static void send_end(struct gen_call *g, const struct llm_event *e)
{
	Inferd__V1__GenerateReply rep = INFERD__V1__GENERATE_REPLY__INIT;
	Inferd__V1__Usage usage = INFERD__V1__USAGE__INIT;
	struct call *c = g->call;
	const char *text = "";
	size_t n = 0;
	char *tail = NULL;

	g->worker_done = true;
	if (e->error) {
		if (e->error == -EAGAIN)
			call_finish(c, STATUS(RESOURCE_EXHAUSTED), NULL,
			            "the model's queue is full (max_queued / max_queued_tokens): retry later");
		else if (e->error == -E2BIG)
			call_finish(c, STATUS(INVALID_ARGUMENT), NULL,
			            "the request needs more positions than the context or the KV pool holds");
		else
			call_finish(c, STATUS(INTERNAL), NULL, "generation failed: %s", strerror(-e->error));
		return;
	}
	if (tok_stream_flush(g->stream, &text, &n) == 0 && n && (tail = malloc(n + 1))) {
		memcpy(tail, text, n);
		tail[n] = '\0';
		rep.text = tail;
	}
	switch (e->finish) {
	case LLM_FINISH_STOP: rep.finish_reason = INFERD__V1__FINISH_REASON__FINISH_REASON_STOP; break;
	case LLM_FINISH_LENGTH: rep.finish_reason = INFERD__V1__FINISH_REASON__FINISH_REASON_LENGTH; break;
	case LLM_FINISH_CANCELLED: rep.finish_reason = INFERD__V1__FINISH_REASON__FINISH_REASON_CANCELLED; break;
	default: rep.finish_reason = INFERD__V1__FINISH_REASON__FINISH_REASON_ERROR; break;
	}
	usage.prompt_tokens = e->prompt_tokens;
	usage.completion_tokens = e->completion_tokens;
	usage.cached_prompt_tokens = e->cached_tokens;
	usage.queue_seconds = e->queue_s;
	usage.time_to_first_token_seconds = e->ttft_s;
	usage.total_seconds = e->total_s;
	if (e->completion_tokens > 1)
		usage.time_per_output_token_seconds =
			(e->total_s - e->ttft_s) / (double)(e->completion_tokens - 1);
	rep.usage = &usage;
	call_finish(c, e->finish == LLM_FINISH_CANCELLED ? STATUS(CANCELLED) : STATUS(OK), &rep.base,
	            NULL);
	free(tail);
}

void generate_collect(struct served_model *m)
{
	struct llm_event *ev = NULL;
	size_t n = llm_worker_take_events(m->worker, &ev);

	for (size_t i = 0; i < n; i++) {
		struct gen_call *g = find_call(m, ev[i].id);
		if (!g)
			continue;
		if (ev[i].kind == LLM_EVENT_TOKEN)
			send_token(g, &ev[i]);
		else
			send_end(g, &ev[i]);
	}
	free(ev);
}

/* ---- Tokenize ---------------------------------------------------------------------------- */

void method_tokenize(struct call *c, const uint8_t *payload, size_t len)
{
	Inferd__V1__TokenizeRequest *req = inferd__v1__tokenize_request__unpack(NULL, len, payload);
	Inferd__V1__TokenizeReply rep = INFERD__V1__TOKENIZE_REPLY__INIT;
	struct served_model *m;
	int32_t *ids = NULL;
	char **pieces = NULL;
	size_t n = 0;
	int rc;

	if (!req) {
		call_finish(c, STATUS(INVALID_ARGUMENT), NULL, "payload does not decode as a Tokenize request");
		return;
	}
	if (!(m = find_model(c->srv, req->model))) {
		call_finish(c, STATUS(NOT_FOUND), NULL, "no model named '%s'", req->model);
		goto out;
	}
	if ((rc = encode_text(m->tok, req->text, req->add_special, req->parse_special, &ids, &n)) < 0) {
		call_finish(c, STATUS(INVALID_ARGUMENT), NULL, "cannot tokenize: %s", strerror(-rc));
		goto out;
	}
	pieces = calloc(n ? n : 1, sizeof(*pieces));
	if (!pieces) {
		call_finish(c, STATUS(RESOURCE_EXHAUSTED), NULL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *t = tok_token_text(m->tok, ids[i], NULL);
		pieces[i] = (char *)(t ? t : "");
	}
	rep.n_token_ids = n;
	rep.token_ids = ids;
	rep.n_pieces = n;
	rep.pieces = pieces;
	call_finish(c, STATUS(OK), &rep.base, NULL);
out:
	free(ids);
	free(pieces);
	inferd__v1__tokenize_request__free_unpacked(req, NULL);
}
