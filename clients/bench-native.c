/* inferd-bench: the native target. One libinferd-client for the run, driven by libevent:
 * a persistent read event per receive fd (inferd_client_fds) and a timer re-armed from
 * inferd_client_next_timeout_ms after every poll, so connects, retries and deadlines run. */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "inferd-client.h"

#define MAX_FDS 16

struct native_target {
	struct bench_target base;
	const struct bench_config *cfg;
	struct event_base *evb;
	struct inferd_client *client;
	struct event *fd_ev[MAX_FDS];
	size_t n_fd;
	struct event *timer_ev;
};

/* ---- the event loop glue ------------------------------------------------------------------ */

static void rearm(struct native_target *t)
{
	int ms = inferd_client_next_timeout_ms(t->client);
	struct timeval tv;

	if (ms < 0) {
		event_del(t->timer_ev);
		return;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	event_add(t->timer_ev, &tv);
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
	struct native_target *t = arg;

	inferd_client_poll(t->client, 0);
	rearm(t);
}

/* ---- calls ---------------------------------------------------------------------------------- */

static const char *status_name(int status)
{
	return status == INFERD__V1__STATUS_CODE__STATUS_OK ? "OK" : inferd_client_status_name(status);
}

static int on_frame(const struct inferd_reply *r, void *arg)
{
	struct bench_call *call = arg;
	uint32_t prompt = 0, completion = 0;

	if (r->payload_len) {
		Inferd__V1__GenerateReply *rep =
			inferd__v1__generate_reply__unpack(NULL, r->payload_len, r->payload);
		if (rep) {
			bench_call_tokens(call, (uint32_t)rep->n_token_ids);
			if (rep->usage) {
				call->rec.usage_output_tokens = rep->usage->completion_tokens;
				call->rec.input_tokens = rep->usage->prompt_tokens;
			}
			inferd__v1__generate_reply__free_unpacked(rep, NULL);
		}
	}
	if (r->end_of_stream) {
		prompt = call->rec.input_tokens;
		completion = call->rec.usage_output_tokens;
		bench_call_done(call, status_name(r->status), prompt, completion);
	}
	return 0;
}

static int native_submit(struct bench_target *bt, struct bench_call *call)
{
	struct native_target *t = (struct native_target *)bt;
	const struct bench_item *it = call->item;
	Inferd__V1__GenerateRequest req = INFERD__V1__GENERATE_REQUEST__INIT;
	Inferd__V1__SamplingParams sp = INFERD__V1__SAMPLING_PARAMS__INIT;
	Inferd__V1__TokenIds toks = INFERD__V1__TOKEN_IDS__INIT;
	struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;
	int rc;

	req.model = (char *)(t->cfg->model ? t->cfg->model : "");
	if (it->text) {
		req.prompt_case = INFERD__V1__GENERATE_REQUEST__PROMPT_TEXT;
		req.text = it->text;
	} else {
		req.prompt_case = INFERD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
		toks.n_ids = it->n_ids;
		toks.ids = it->ids;
		req.tokens = &toks;
	}
	req.max_tokens = it->output_len;
	sp.ignore_eos = true;          /* output lengths are the workload's */
	sp.use_seed = true;
	sp.seed = t->cfg->seed;
	req.sampling = &sp;
	o.deadline_ms = (uint64_t)(t->cfg->request_timeout_s * 1000.0);
	rc = inferd_client_start_msg(t->client, INFERD__V1__METHOD__METHOD_GENERATE, &req.base, &o,
	                             on_frame, call, NULL);
	if (rc == 0)
		rearm(t);
	return rc;
}

static void native_free(struct bench_target *bt)
{
	struct native_target *t = (struct native_target *)bt;

	if (!t)
		return;
	for (size_t i = 0; i < t->n_fd; i++)
		event_free(t->fd_ev[i]);
	if (t->timer_ev)
		event_free(t->timer_ev);
	inferd_client_free(t->client);
	free(t);
}

static const struct bench_target_ops native_ops = {
	.name = "native",
	.submit = native_submit,
	.free = native_free,
};

/* ---- construction and blocking helpers ----------------------------------------------------- */

static int make_client(const struct bench_config *cfg, struct inferd_client **out, char *err,
                       size_t errlen)
{
	struct inferd_client_options o = { .api_key = cfg->api_key, .client_name = "inferd-bench",
	                                   .connect_timeout_ms = 5000 };
	int rc = inferd_client_new(cfg->connect_urls, cfg->n_connect, &o, out, err, errlen);
	return rc < 0 ? rc : 0;
}

/* A Health call to every endpoint: all connected before the clock starts. */
static int warm_up(struct inferd_client *c, const struct bench_config *cfg, char *err,
                   size_t errlen)
{
	for (size_t i = 0; i < cfg->n_connect; i++) {
		Inferd__V1__HealthRequest req = INFERD__V1__HEALTH_REQUEST__INIT;
		struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;
		ProtobufCMessage *rep = NULL;
		char msg[200];
		o.deadline_ms = 10000;
		o.endpoint = (int)i;
		int st = inferd_client_unary(c, INFERD__V1__METHOD__METHOD_HEALTH, &req.base,
		                             &inferd__v1__health_reply__descriptor, &rep, &o, msg,
		                             sizeof(msg));
		if (rep)
			protobuf_c_message_free_unpacked(rep, NULL);
		if (st == INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE || st < 0) {
			snprintf(err, errlen, "%s: %s", cfg->connect_urls[i],
			         st < 0 ? strerror(-st) : msg);
			return -ECONNREFUSED;
		}
	}
	return 0; /* any answer (even UNAUTHENTICATED) proves the connection */
}

int bench_native_new(struct event_base *base, const struct bench_config *cfg,
                     struct bench_target **out, char *err, size_t errlen)
{
	struct native_target *t = calloc(1, sizeof(*t));
	int fds[MAX_FDS], rc = -ENOMEM;
	size_t n;

	*out = NULL;
	if (!t)
		goto fail;
	t->base.ops = &native_ops;
	t->cfg = cfg;
	t->evb = base;
	if ((rc = make_client(cfg, &t->client, err, errlen)) < 0)
		goto cleanup;
	/* Connect before the clock starts, so the first requests do not wait for it. */
	if ((rc = warm_up(t->client, cfg, err, errlen)) < 0)
		goto cleanup;
	rc = -ENOMEM;
	n = inferd_client_fds(t->client, fds, MAX_FDS);
	for (size_t i = 0; i < n; i++) {
		if (!(t->fd_ev[i] = event_new(base, fds[i], EV_READ | EV_PERSIST, on_ready, t)))
			goto fail;
		t->n_fd++;
		event_add(t->fd_ev[i], NULL);
	}
	if (!(t->timer_ev = evtimer_new(base, on_ready, t)))
		goto fail;
	*out = &t->base;
	return 0;
fail:
	snprintf(err, errlen, "out of memory");
cleanup:
	native_free(t ? &t->base : NULL);
	return rc;
}

/* Runs one unary call to endpoint ep (index into connect_urls) on a fresh blocking client. */
static int unary_at(const struct bench_config *cfg, size_t ep, int method,
                    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **reply, char *err, size_t errlen)
{
	struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;
	struct inferd_client *c = NULL;
	char msg[256];
	int st, rc;

	if ((rc = make_client(cfg, &c, err, errlen)) < 0)
		return rc;
	o.deadline_ms = 10000;
	o.endpoint = (int)ep;
	st = inferd_client_unary(c, method, req, desc, reply, &o, msg, sizeof(msg));
	inferd_client_free(c);
	if (st < 0) {
		snprintf(err, errlen, "cannot call %s: %s", cfg->connect_urls[ep], strerror(-st));
		return st;
	}
	if (st != INFERD__V1__STATUS_CODE__STATUS_OK) {
		snprintf(err, errlen, "%s: %s: %s", cfg->connect_urls[ep],
		         inferd_client_status_name(st), msg);
		return st == INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE ? -ECONNREFUSED : -EIO;
	}
	return 0;
}

int bench_native_model_info(const struct bench_config *cfg, uint32_t *vocab, uint32_t *context,
                            char *err, size_t errlen)
{
	Inferd__V1__ListModelsRequest req = INFERD__V1__LIST_MODELS_REQUEST__INIT;
	Inferd__V1__ListModelsReply *rep = NULL;
	int rc = unary_at(cfg, 0, INFERD__V1__METHOD__METHOD_LIST_MODELS, &req.base,
	               &inferd__v1__list_models_reply__descriptor, (ProtobufCMessage **)&rep, err,
	               errlen);

	if (rc < 0)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < rep->n_models; i++) {
		const Inferd__V1__ModelInfo *m = rep->models[i];
		bool pick = cfg->model && *cfg->model ? strcmp(m->name, cfg->model) == 0
		                                      : rep->n_models == 1;
		if (pick) {
			*vocab = m->vocab_size;
			*context = m->context_length;
			rc = 0;
		}
	}
	if (rc < 0 && cfg->model && *cfg->model)
		snprintf(err, errlen, "the daemon serves no model named '%s'", cfg->model);
	else if (rc < 0)
		snprintf(err, errlen, "the daemon serves %zu models: choose one with --model",
		         rep->n_models);
	inferd__v1__list_models_reply__free_unpacked(rep, NULL);
	return rc;
}

int bench_native_tokens_generated(const struct bench_config *cfg, uint64_t *tokens, char *err,
                                  size_t errlen)
{
	/* Summed over the endpoints: each daemon counts what it generated. */
	*tokens = 0;
	for (size_t i = 0; i < cfg->n_connect; i++) {
		Inferd__V1__StatsRequest req = INFERD__V1__STATS_REQUEST__INIT;
		Inferd__V1__StatsReply *rep = NULL;
		int rc = unary_at(cfg, i, INFERD__V1__METHOD__METHOD_STATS, &req.base,
		                  &inferd__v1__stats_reply__descriptor, (ProtobufCMessage **)&rep, err,
		                  errlen);
		if (rc < 0)
			return rc;
		*tokens += rep->tokens_generated;
		inferd__v1__stats_reply__free_unpacked(rep, NULL);
	}
	return 0;
}
