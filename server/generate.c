/* The native LLM methods: Generate (GenerateReply frames from a generation) and Tokenize. */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generation.h"
#include "models.h"
#include "server-internal.h"
#include "tokenizer.h"

#define STATUS(x) INFERD__V1__STATUS_CODE__STATUS_##x

static int status_of(enum gen_status st)
{
	switch (st) {
	case GEN_OK: return STATUS(OK);
	case GEN_INVALID_ARGUMENT: return STATUS(INVALID_ARGUMENT);
	case GEN_NOT_FOUND: return STATUS(NOT_FOUND);
	case GEN_RESOURCE_EXHAUSTED: return STATUS(RESOURCE_EXHAUSTED);
	case GEN_INTERNAL:
	default: return STATUS(INTERNAL);
	}
}

/* ---- Generate ---------------------------------------------------------------------------- */

static void on_piece(const struct gen_piece *p, void *arg)
{
	struct call *c = arg;
	Inferd__V1__GenerateReply rep = INFERD__V1__GENERATE_REPLY__INIT;
	Inferd__V1__TokenLogprob lp = INFERD__V1__TOKEN_LOGPROB__INIT, *lpp = &lp;
	Inferd__V1__TopLogprob top[SAMPLER_MAX_LOGPROBS], *topp[SAMPLER_MAX_LOGPROBS];
	int32_t tok = p->token;
	char *text = malloc(p->len + 1);

	if (text) {
		memcpy(text, p->text, p->len);
		text[p->len] = '\0';
	}
	rep.text = text ? text : (char *)"";
	rep.n_token_ids = 1;
	rep.token_ids = &tok;
	if (!isnan(p->logprob)) {
		const struct served_model *m = ((struct generate_state *)c->method_state)->model;
		lp.token_id = tok;
		lp.logprob = p->logprob;
		for (uint32_t i = 0; i < p->n_top; i++) {
			inferd__v1__top_logprob__init(&top[i]);
			top[i].token_id = p->top[i].id;
			top[i].logprob = p->top[i].logprob;
			const char *t = tok_token_text(m->tok, p->top[i].id, NULL);
			top[i].text = (char *)(t ? t : "");
			topp[i] = &top[i];
		}
		lp.n_top = p->n_top;
		lp.top = topp;
		rep.n_logprobs = 1;
		rep.logprobs = &lpp;
	}
	call_reply(c, &rep.base);
	free(text);
}

static void on_end(const struct gen_end *e, void *arg)
{
	struct call *c = arg;
	Inferd__V1__GenerateReply rep = INFERD__V1__GENERATE_REPLY__INIT;
	Inferd__V1__Usage usage = INFERD__V1__USAGE__INIT;
	struct generate_state *st = c->method_state;
	char *tail = NULL;

	st->gen = NULL; /* gone */
	if (e->status != GEN_OK) {
		call_finish(c, status_of(e->status), NULL, "%s", e->message);
		return;
	}
	if (e->len && (tail = malloc(e->len + 1))) {
		memcpy(tail, e->text, e->len);
		tail[e->len] = '\0';
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
	usage.time_per_output_token_seconds = e->tpot_s;
	usage.total_seconds = e->total_s;
	rep.usage = &usage;
	call_finish(c, e->finish == LLM_FINISH_CANCELLED ? STATUS(CANCELLED) : STATUS(OK), &rep.base,
	            NULL);
	free(tail);
}

static const struct gen_sink call_sink = { .piece = on_piece, .end = on_end };

static void generate_release(struct call *c)
{
	struct generate_state *st = c->method_state;
	generation_abandon(st->gen); /* cancel, deadline, drain timeout: the worker lets go */
	free(st);
	c->method_state = NULL;
}

static const struct call_ops generate_ops = { .release = generate_release };

void method_generate(struct call *c, const uint8_t *payload, size_t len)
{
	Inferd__V1__GenerateRequest *req = inferd__v1__generate_request__unpack(NULL, len, payload);
	struct gen_request r = { 0 };
	struct sampler_bias bias[64];
	char msg[512];

	if (!req) {
		call_finish(c, STATUS(INVALID_ARGUMENT), NULL, "payload does not decode as a Generate request");
		return;
	}
	struct generate_state *st = calloc(1, sizeof(*st));
	if (!st) {
		call_finish(c, STATUS(RESOURCE_EXHAUSTED), NULL, "out of memory");
		goto out;
	}
	r.model = req->model;
	if (req->prompt_case == INFERD__V1__GENERATE_REQUEST__PROMPT_TEXT) {
		r.text = req->text;
	} else if (req->prompt_case == INFERD__V1__GENERATE_REQUEST__PROMPT_TOKENS) {
		r.ids = req->tokens->ids;
		r.n_ids = req->tokens->n_ids;
	}
	r.parse_special = req->parse_special;
	r.max_tokens = req->max_tokens;
	r.priority = req->priority;
	sampling_params_init(&r.sampling);
	r.sampling.temperature = 0; /* greedy unless asked: the proto's zero value */
	const Inferd__V1__SamplingParams *sp = req->sampling;
	if (sp) {
		if (sp->n_logit_bias > 64) {
			call_finish(c, STATUS(INVALID_ARGUMENT), NULL, "at most 64 logit_bias entries");
			free(st);
			goto out;
		}
		r.sampling.temperature = sp->temperature;
		r.sampling.top_k = (int32_t)(sp->top_k > 1u << 30 ? 1u << 30 : sp->top_k);
		r.sampling.top_p = sp->top_p > 0 ? sp->top_p : 1.0f;
		r.sampling.min_p = sp->min_p;
		r.sampling.repeat_penalty = sp->repetition_penalty > 0 ? sp->repetition_penalty : 1.0f;
		r.sampling.presence_penalty = sp->presence_penalty;
		r.sampling.frequency_penalty = sp->frequency_penalty;
		r.sampling.seed = sp->use_seed ? sp->seed : (uint64_t)(server_now() * 1e9) ^ c->call_id;
		r.sampling.n_logprobs = (int32_t)(sp->top_logprobs > 1000 ? 1000 : sp->top_logprobs);
		for (size_t i = 0; i < sp->n_logit_bias; i++) {
			bias[i].id = sp->logit_bias[i]->key;
			bias[i].bias = sp->logit_bias[i]->value;
		}
		r.sampling.logit_bias = bias;
		r.sampling.n_logit_bias = sp->n_logit_bias;
		r.sampling.stop_ids = sp->stop_token_ids;
		r.sampling.n_stop_ids = sp->n_stop_token_ids;
		r.ignore_eos = sp->ignore_eos;
		r.logprobs = sp->logprobs || sp->top_logprobs;
		r.stop = (const char *const *)sp->stop;
		r.n_stop = sp->n_stop;
	}
	enum gen_status gs = generation_start(c->srv, &r, &call_sink, c, &st->gen, msg, sizeof(msg));
	if (gs != GEN_OK) {
		call_finish(c, status_of(gs), NULL, "%s", msg);
		free(st);
		goto out;
	}
	st->model = generation_find_model(c->srv, req->model);
	c->method_state = st;
	c->ops = &generate_ops;
out:
	inferd__v1__generate_request__free_unpacked(req, NULL);
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
	if (!(m = generation_find_model(c->srv, req->model))) {
		call_finish(c, STATUS(NOT_FOUND), NULL, "no model named '%s'", req->model);
		goto out;
	}
	rc = generation_tokenize(m, req->text, req->add_special, req->parse_special, &ids, &n);
	if (rc < 0) {
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
