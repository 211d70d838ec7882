/* The method table and the methods served without a model: Health, ListModels, Stats, Cancel,
 * Echo. */
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "generate_image.h"
#include "inferd-config.h"
#include "llm_worker.h"
#include "log.h"
#include "server-internal.h"

#define ECHO_MAX_COUNT 100000u
#define ECHO_MAX_INTERVAL_MS 60000u

typedef Inferd__V1__StatusCode status_code;

static void finish_bad_payload(struct call *c)
{
	call_finish(c, INFERD__V1__STATUS_CODE__STATUS_INVALID_ARGUMENT, NULL,
	            "payload does not decode as a %s request", inferd_method_name(c->method));
}

/* ---- Health ------------------------------------------------------------------------------ */

static void method_health(struct call *c, const uint8_t *payload, size_t len)
{
	Inferd__V1__HealthRequest *req = inferd__v1__health_request__unpack(NULL, len, payload);
	Inferd__V1__HealthReply rep = INFERD__V1__HEALTH_REPLY__INIT;
	struct inferd_server *srv = c->srv;

	if (!req) {
		finish_bad_payload(c);
		return;
	}
	inferd__v1__health_request__free_unpacked(req, NULL);
	rep.state = srv->state == SERVER_STATE_SERVING ? INFERD__V1__SERVING_STATE__SERVING_STATE_SERVING
	                                               : INFERD__V1__SERVING_STATE__SERVING_STATE_DRAINING;
	rep.version = (char *)INFERD_VERSION;
	rep.uptime_seconds = server_now() - srv->started;
	rep.allocator = srv->allocator;
	call_finish(c, INFERD__V1__STATUS_CODE__STATUS_OK, &rep.base, NULL);
}

/* ---- ListModels -------------------------------------------------------------------------- */

static void method_list_models(struct call *c, const uint8_t *payload, size_t len)
{
	Inferd__V1__ListModelsRequest *req =
		inferd__v1__list_models_request__unpack(NULL, len, payload);
	Inferd__V1__ListModelsReply rep = INFERD__V1__LIST_MODELS_REPLY__INIT;
	struct inferd_server *srv = c->srv;
	Inferd__V1__ModelInfo info[CONFIG_MAX_MODELS], *ptrs[CONFIG_MAX_MODELS];

	if (!req) {
		finish_bad_payload(c);
		return;
	}
	inferd__v1__list_models_request__free_unpacked(req, NULL);
	for (size_t i = 0; i < srv->n_models; i++) {
		const struct served_model *m = &srv->models[i];
		inferd__v1__model_info__init(&info[i]);
		info[i].name = m->cfg->name;
		info[i].kind = INFERD__V1__MODEL_KIND__MODEL_KIND_LLM;
		info[i].path = m->cfg->path;
		info[i].architecture = (char *)m->arch;
		info[i].parameters = m->n_params;
		info[i].dtype = (char *)m->dtype;
		info[i].context_length = m->max_context;
		info[i].vocab_size = m->n_vocab;
		info[i].ready = true;
		ptrs[i] = &info[i];
	}
	size_t n = srv->n_models;
	for (size_t i = 0; i < srv->n_images && n < CONFIG_MAX_MODELS; i++, n++) {
		const struct served_image *m = &srv->images[i];
		inferd__v1__model_info__init(&info[n]);
		info[n].name = m->cfg->name;
		info[n].kind = INFERD__V1__MODEL_KIND__MODEL_KIND_DIFFUSION;
		info[n].path = m->cfg->path;
		info[n].architecture = (char *)m->info.arch;
		info[n].parameters = m->info.n_params;
		info[n].dtype = (char *)m->info.dtype;
		info[n].context_length = (uint32_t)m->info.ctx_len;
		info[n].ready = true;
		ptrs[n] = &info[n];
	}
	rep.n_models = n;
	rep.models = ptrs;
	call_finish(c, INFERD__V1__STATUS_CODE__STATUS_OK, &rep.base, NULL);
}

/* ---- Stats ------------------------------------------------------------------------------- */

static void method_stats(struct call *c, const uint8_t *payload, size_t len)
{
	Inferd__V1__StatsRequest *req = inferd__v1__stats_request__unpack(NULL, len, payload);
	Inferd__V1__StatsReply rep = INFERD__V1__STATS_REPLY__INIT;
	struct inferd_server *srv = c->srv;
	const struct server_stats *st = &srv->stats;
	Inferd__V1__CallCount counts[STATS_METHOD_SLOTS * STATS_STATUS_SLOTS];
	Inferd__V1__CallCount *ptrs[STATS_METHOD_SLOTS * STATS_STATUS_SLOTS];
	size_t n = 0;

	if (!req) {
		finish_bad_payload(c);
		return;
	}
	inferd__v1__stats_request__free_unpacked(req, NULL);
	for (int m = 0; m < STATS_METHOD_SLOTS; m++) {
		for (int s = 0; s < STATS_STATUS_SLOTS; s++) {
			if (!st->calls[m][s])
				continue;
			inferd__v1__call_count__init(&counts[n]);
			counts[n].method = (char *)inferd_method_name(m < STATS_METHOD_SLOTS - 1 ? m : -1);
			counts[n].status = (char *)inferd_status_name(s);
			counts[n].count = st->calls[m][s];
			ptrs[n] = &counts[n];
			n++;
		}
	}
	rep.uptime_seconds = server_now() - srv->started;
	/* This Stats call is itself in flight; it is not counted among the finished ones yet. */
	rep.calls_in_flight = srv->calls.count;
	rep.calls_total = st->calls_total;
	rep.n_calls = n;
	rep.calls = ptrs;
	rep.bytes_in = st->bytes_in;
	rep.bytes_out = st->bytes_out;
	rep.frames_in = st->frames_in;
	rep.frames_out = st->frames_out;
	rep.frames_rejected = st->frames_rejected;
	rep.calls_abandoned = st->calls_abandoned;
	uint64_t queries = 0, hits = 0, tpot_n = 0;
	double ttft_sum = 0, tpot_sum = 0;
	for (size_t i = 0; i < srv->n_models; i++) {
		struct llm_worker_stats ws;
		llm_worker_stats(srv->models[i].worker, &ws);
		rep.requests_running += ws.sched.running;
		rep.requests_waiting += ws.sched.waiting;
		rep.requests_preempted += ws.sched.preemptions;
		rep.kv_blocks_used += ws.blocks.used;
		rep.kv_blocks_free += ws.blocks.free + ws.blocks.cached;
		rep.tokens_generated += ws.sched.tokens_generated;
		rep.prompt_tokens += ws.sched.prompt_tokens_computed + ws.sched.prompt_tokens_cached;
		queries += ws.blocks.prefix_queries;
		hits += ws.blocks.prefix_hits;
		rep.iterations += ws.sched.iterations;
		rep.iteration_seconds += ws.iteration_s_total;
		rep.forward_seconds += ws.forward_s_total;
		rep.sample_seconds += ws.sample_s_total;
		rep.generations_finished += ws.finished;
		ttft_sum += ws.ttft_s_sum;
		tpot_sum += ws.tpot_s_sum;
		tpot_n += ws.tpot_n;
		if (ws.ttft_s_max > rep.ttft_seconds_max)
			rep.ttft_seconds_max = ws.ttft_s_max;
		if (ws.tpot_s_max > rep.tpot_seconds_max)
			rep.tpot_seconds_max = ws.tpot_s_max;
	}
	if (rep.generations_finished)
		rep.ttft_seconds_mean = ttft_sum / (double)rep.generations_finished;
	if (tpot_n)
		rep.tpot_seconds_mean = tpot_sum / (double)tpot_n;
	rep.prefix_cache_hit_rate = queries ? (double)hits / (double)queries : 0.0;
	for (size_t i = 0; i < srv->n_images; i++) {
		struct image_worker_stats is;
		image_worker_stats(srv->images[i].worker, &is);
		rep.images_generated += is.images;
		rep.image_requests_running += is.running;
		rep.image_requests_waiting += is.queued;
		rep.image_requests_finished += is.finished;
		rep.image_requests_failed += is.failed;
		rep.unet_calls += is.unet_calls;
		rep.unet_items += is.unet_items;
		rep.unet_seconds += is.unet_s;
		rep.vae_decode_seconds += is.decode_s;
		rep.png_encode_seconds += is.encode_s;
		rep.text_encode_seconds += is.text_s;
	}
	call_finish(c, INFERD__V1__STATUS_CODE__STATUS_OK, &rep.base, NULL);
}

/* ---- Cancel ------------------------------------------------------------------------------ */

static void method_cancel(struct call *c, const uint8_t *payload, size_t len)
{
	Inferd__V1__CancelRequest *req = inferd__v1__cancel_request__unpack(NULL, len, payload);
	Inferd__V1__CancelReply rep = INFERD__V1__CANCEL_REPLY__INIT;

	if (!req) {
		finish_bad_payload(c);
		return;
	}
	uint64_t target_id = req->call_id;
	inferd__v1__cancel_request__free_unpacked(req, NULL);
	struct call *target = target_id == c->call_id
	                              ? NULL
	                              : call_table_find(&c->srv->calls, c->lis, c->header,
	                                                c->header_len, target_id);
	if (!target) {
		call_finish(c, INFERD__V1__STATUS_CODE__STATUS_NOT_FOUND, NULL,
		            "no call %llu in flight on this connection",
		            (unsigned long long)target_id);
		return;
	}
	call_finish(target, INFERD__V1__STATUS_CODE__STATUS_CANCELLED, NULL, "cancelled by the client");
	call_finish(c, INFERD__V1__STATUS_CODE__STATUS_OK, &rep.base, NULL);
}

/* ---- Echo -------------------------------------------------------------------------------- */

struct echo_state {
	struct call *call;
	struct event *timer;
	struct timeval interval;
	uint32_t count, index;
	ProtobufCBinaryData data;
};

static void echo_release(struct call *c)
{
	struct echo_state *es = c->method_state;
	if (es->timer)
		event_free(es->timer);
	free(es->data.data);
	free(es);
	c->method_state = NULL;
}

static const struct call_ops echo_ops = { .release = echo_release };

static void echo_tick(evutil_socket_t fd, short what, void *arg)
{
	struct echo_state *es = arg;
	Inferd__V1__EchoReply rep = INFERD__V1__ECHO_REPLY__INIT;
	(void)fd;
	(void)what;

	rep.data = es->data;
	rep.index = es->index++;
	if (es->index >= es->count) {
		call_finish(es->call, INFERD__V1__STATUS_CODE__STATUS_OK, &rep.base, NULL);
		return;
	}
	call_reply(es->call, &rep.base);
	evtimer_add(es->timer, &es->interval);
}

static void method_echo(struct call *c, const uint8_t *payload, size_t len)
{
	Inferd__V1__EchoRequest *req = inferd__v1__echo_request__unpack(NULL, len, payload);
	struct echo_state *es;

	if (!req) {
		finish_bad_payload(c);
		return;
	}
	if (req->count > ECHO_MAX_COUNT || req->interval_ms > ECHO_MAX_INTERVAL_MS) {
		call_finish(c, INFERD__V1__STATUS_CODE__STATUS_INVALID_ARGUMENT, NULL,
		            "Echo: count must be at most %u and interval_ms at most %u",
		            ECHO_MAX_COUNT, ECHO_MAX_INTERVAL_MS);
		goto out;
	}
	es = calloc(1, sizeof(*es));
	if (!es)
		goto oom;
	es->call = c;
	es->count = req->count ? req->count : 1;
	es->interval.tv_sec = req->interval_ms / 1000;
	es->interval.tv_usec = (suseconds_t)(req->interval_ms % 1000) * 1000;
	if (req->data.len) {
		es->data.data = malloc(req->data.len);
		if (!es->data.data) {
			free(es);
			goto oom;
		}
		memcpy(es->data.data, req->data.data, req->data.len);
		es->data.len = req->data.len;
	}
	es->timer = evtimer_new(c->srv->base, echo_tick, es);
	c->method_state = es;
	c->ops = &echo_ops;
	if (!es->timer || evtimer_add(es->timer, &es->interval) < 0) {
		call_finish(c, INFERD__V1__STATUS_CODE__STATUS_INTERNAL, NULL, "cannot arm a timer");
		goto out;
	}
	goto out;
oom:
	call_finish(c, INFERD__V1__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
out:
	inferd__v1__echo_request__free_unpacked(req, NULL);
}

/* ---- table ------------------------------------------------------------------------------- */

static const struct method_entry methods[] = {
	{ INFERD__V1__METHOD__METHOD_HEALTH, method_health, true },
	{ INFERD__V1__METHOD__METHOD_LIST_MODELS, method_list_models, true },
	{ INFERD__V1__METHOD__METHOD_STATS, method_stats, true },
	{ INFERD__V1__METHOD__METHOD_CANCEL, method_cancel, true },
	{ INFERD__V1__METHOD__METHOD_ECHO, method_echo, false },
	{ INFERD__V1__METHOD__METHOD_GENERATE, method_generate, false },
	{ INFERD__V1__METHOD__METHOD_GENERATE_IMAGE, method_generate_image, false },
	{ INFERD__V1__METHOD__METHOD_TOKENIZE, method_tokenize, true },
};

const struct method_entry *method_lookup(int method)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (methods[i].method == method)
			return &methods[i];
	return NULL;
}
