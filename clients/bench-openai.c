/* inferd-bench: the OpenAI-compatible target. POST {URL}/v1/completions with "stream": true
 * through libevent's evhttp client; the response is server-sent events, one "data: {json}"
 * line per chunk and "data: [DONE]" at the end. A chunk whose choices[0].text is not empty
 * counts as one token for the latencies (the usual one token per chunk); the final usage chunk,
 * asked for with "stream_options": {"include_usage": true}, gives the counts used for
 * throughput and TPOT when present.
 * Requests also carry "ignore_eos": true (a vLLM / llama.cpp extension other servers ignore). */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

struct openai_target;

struct oa_call {
	struct openai_target *t;
	struct bench_call *call;
	struct evhttp_connection *conn;
	struct evbuffer *lines;        /* SSE bytes not yet split into lines */
	char err_body[200];            /* start of an error response's body */
	size_t err_len;
	int error_kind;                /* from the error callback, -1 = none */
	char stream_error[120];        /* an "error" object inside the stream */
	uint32_t usage_prompt, usage_completion;
	bool saw_done;
	struct oa_call *prev, *next;
};

struct openai_target {
	struct bench_target base;
	const struct bench_config *cfg;
	struct event_base *evb;
	char host[256];
	int port;
	char path[512];                /* .../v1/completions */
	char host_header[300];
	struct evhttp_connection **all, **idle;
	size_t n_all, n_idle, cap;
	struct oa_call *calls;         /* in flight */
	unsigned n_printed;            /* error bodies printed (the first few only) */
};

/* ---- connections ---------------------------------------------------------------------------- */

static struct evhttp_connection *conn_get(struct openai_target *t)
{
	struct evhttp_connection *c;

	if (t->n_idle)
		return t->idle[--t->n_idle];
	if (t->n_all == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct evhttp_connection **na = realloc(t->all, cap * sizeof(*na));
		if (!na)
			return NULL;
		t->all = na;
		struct evhttp_connection **ni = realloc(t->idle, cap * sizeof(*ni));
		if (!ni)
			return NULL;
		t->idle = ni;
		t->cap = cap;
	}
	if (!(c = evhttp_connection_base_new(t->evb, NULL, t->host, (unsigned short)t->port)))
		return NULL;
	evhttp_connection_set_timeout(c, (int)(t->cfg->request_timeout_s + 0.5));
	evhttp_connection_set_retries(c, 0);
	t->all[t->n_all++] = c;
	return c;
}

/* ---- the event stream ----------------------------------------------------------------------- */

static void on_event(struct oa_call *oc, const char *data)
{
	json_error_t je;
	json_t *o, *choices, *usage, *error;

	if (strcmp(data, "[DONE]") == 0) {
		oc->saw_done = true;
		return;
	}
	if (!(o = json_loads(data, 0, &je)))
		return; /* not JSON: ignored, as SSE clients do with unknown events */
	choices = json_object_get(o, "choices");
	if (json_is_array(choices) && json_array_size(choices)) {
		const char *text = json_string_value(json_object_get(json_array_get(choices, 0),
		                                                     "text"));
		if (text && *text)
			bench_call_tokens(oc->call, 1);
	}
	usage = json_object_get(o, "usage");
	if (json_is_object(usage)) {
		oc->usage_prompt = (uint32_t)json_integer_value(json_object_get(usage,
		                                                                "prompt_tokens"));
		oc->usage_completion = (uint32_t)json_integer_value(json_object_get(usage,
		                                                                    "completion_tokens"));
	}
	error = json_object_get(o, "error");
	if (error && !json_is_null(error)) {
		const char *m = json_string_value(json_object_get(error, "message"));
		snprintf(oc->stream_error, sizeof(oc->stream_error), "%s", m ? m : "error");
	}
	json_decref(o);
}

static void split_lines(struct oa_call *oc)
{
	char *line;
	size_t n;

	while ((line = evbuffer_readln(oc->lines, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		if (strncmp(line, "data:", 5) == 0)
			on_event(oc, line + 5 + strspn(line + 5, " "));
		free(line);
	}
}

static void on_chunk(struct evhttp_request *req, void *arg)
{
	struct oa_call *oc = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);

	if (evhttp_request_get_response_code(req) != 200) {
		size_t room = sizeof(oc->err_body) - 1 - oc->err_len;
		size_t take = len < room ? len : room;
		evbuffer_remove(in, oc->err_body + oc->err_len, take);
		oc->err_len += take;
		oc->err_body[oc->err_len] = '\0';
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	evbuffer_add_buffer(oc->lines, in);
	split_lines(oc);
}

static void on_error(enum evhttp_request_error e, void *arg)
{
	struct oa_call *oc = arg;
	oc->error_kind = (int)e;
}

static void oa_call_free(struct oa_call *oc)
{
	if (!oc)
		return;
	if (oc->lines)
		evbuffer_free(oc->lines);
	free(oc);
}

static void unlink_oc(struct openai_target *t, struct oa_call *oc)
{
	if (oc->prev)
		oc->prev->next = oc->next;
	else
		t->calls = oc->next;
	if (oc->next)
		oc->next->prev = oc->prev;
}

static void on_done(struct evhttp_request *req, void *arg)
{
	struct oa_call *oc = arg;
	struct openai_target *t = oc->t;
	struct bench_call *call = oc->call;
	char status[BENCH_STATUS_LEN];
	int code = req ? evhttp_request_get_response_code(req) : 0;
	uint32_t up, uc;

	if (req && code == 200) {
		evbuffer_add_buffer(oc->lines, evhttp_request_get_input_buffer(req));
		evbuffer_add(oc->lines, "\n", 1); /* a last line without its end */
		split_lines(oc);
	}
	if (code == 0)
		snprintf(status, sizeof(status), "%s", oc->error_kind == EVREQ_HTTP_TIMEOUT
		         ? "TIMEOUT" : "CONNECTION_FAILED");
	else if (code != 200)
		snprintf(status, sizeof(status), "HTTP_%d", code);
	else if (oc->stream_error[0])
		snprintf(status, sizeof(status), "STREAM_ERROR");
	else if (!oc->saw_done)
		snprintf(status, sizeof(status), "INCOMPLETE_STREAM");
	else
		snprintf(status, sizeof(status), "OK");
	if (code != 200 && oc->err_len && t->n_printed++ < 3)
		fprintf(stderr, "inferd-bench: %s: %.*s\n", status, (int)oc->err_len, oc->err_body);
	if (code == 200 && t->n_idle < t->cap)
		t->idle[t->n_idle++] = oc->conn; /* reusable; a failed one is only freed at the end */
	up = oc->usage_prompt;
	uc = oc->usage_completion;
	unlink_oc(t, oc);
	oa_call_free(oc);
	bench_call_done(call, status, up, uc);
}

/* ---- submit --------------------------------------------------------------------------------- */

static json_t *prompt_json(const struct bench_item *it)
{
	json_t *a;

	if (it->text)
		return json_string(it->text);
	if (!(a = json_array()))
		return NULL;
	for (uint32_t i = 0; i < it->n_ids; i++)
		json_array_append_new(a, json_integer(it->ids[i]));
	return a;
}

static int openai_submit(struct bench_target *bt, struct bench_call *call)
{
	struct openai_target *t = (struct openai_target *)bt;
	struct oa_call *oc = calloc(1, sizeof(*oc));
	struct evhttp_request *req = NULL;
	struct evkeyvalq *h;
	char *body = NULL, auth[300];
	json_t *o = NULL;
	int rc = -ENOMEM;

	if (!oc || !(oc->lines = evbuffer_new()))
		goto fail;
	oc->t = t;
	oc->call = call;
	oc->error_kind = -1;
	o = json_pack("{s:s, s:o, s:i, s:b, s:{s:b}, s:b, s:f}", "model", t->cfg->model,
	              "prompt", prompt_json(call->item), "max_tokens", (int)call->item->output_len,
	              "stream", 1, "stream_options", "include_usage", 1, "ignore_eos", 1,
	              "temperature", 0.0);
	if (!o || !(body = json_dumps(o, JSON_COMPACT)))
		goto fail;
	if (!(oc->conn = conn_get(t)) || !(req = evhttp_request_new(on_done, oc)))
		goto fail;
	evhttp_request_set_chunked_cb(req, on_chunk);
	evhttp_request_set_error_cb(req, on_error);
	h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", t->host_header);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Accept", "text/event-stream");
	if (t->cfg->api_key) {
		snprintf(auth, sizeof(auth), "Bearer %s", t->cfg->api_key);
		evhttp_add_header(h, "Authorization", auth);
	}
	evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	if (evhttp_make_request(oc->conn, req, EVHTTP_REQ_POST, t->path) != 0) {
		req = NULL; /* freed by evhttp on failure */
		rc = -EIO;
		goto fail;
	}
	oc->next = t->calls;
	if (t->calls)
		t->calls->prev = oc;
	t->calls = oc;
	json_decref(o);
	free(body);
	return 0;
fail:
	if (req)
		evhttp_request_free(req);
	if (oc && oc->conn && t->n_idle < t->cap)
		t->idle[t->n_idle++] = oc->conn;
	json_decref(o);
	free(body);
	oa_call_free(oc);
	return rc;
}

static void openai_free(struct bench_target *bt)
{
	struct openai_target *t = (struct openai_target *)bt;

	if (!t)
		return;
	for (size_t i = 0; i < t->n_all; i++)
		evhttp_connection_free(t->all[i]); /* drops pending requests without callbacks */
	while (t->calls) {
		struct oa_call *oc = t->calls;
		unlink_oc(t, oc);
		oa_call_free(oc);
	}
	free(t->all);
	free(t->idle);
	free(t);
}

static const struct bench_target_ops openai_ops = {
	.name = "openai",
	.submit = openai_submit,
	.free = openai_free,
};

int bench_openai_new(struct event_base *base, const struct bench_config *cfg,
                     struct bench_target **out, char *err, size_t errlen)
{
	struct openai_target *t = calloc(1, sizeof(*t));
	struct evhttp_uri *uri = NULL;
	const char *host, *path, *scheme;
	size_t plen;
	int rc = -EINVAL;

	*out = NULL;
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	t->base.ops = &openai_ops;
	t->cfg = cfg;
	t->evb = base;
	if (!(uri = evhttp_uri_parse(cfg->openai_url)) || !(scheme = evhttp_uri_get_scheme(uri)) ||
	    strcmp(scheme, "http") != 0 || !(host = evhttp_uri_get_host(uri))) {
		snprintf(err, errlen, "--openai: expected http://HOST:PORT[/PATH], got '%s' "
		         "(https is not supported)", cfg->openai_url);
		goto cleanup;
	}
	snprintf(t->host, sizeof(t->host), "%s", host);
	t->port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
	snprintf(t->host_header, sizeof(t->host_header), "%s:%d", t->host, t->port);
	path = evhttp_uri_get_path(uri) ? evhttp_uri_get_path(uri) : "";
	plen = strlen(path);
	while (plen && path[plen - 1] == '/')
		plen--;
	if (plen >= 3 && strncmp(path + plen - 3, "/v1", 3) == 0)
		snprintf(t->path, sizeof(t->path), "%.*s/completions", (int)plen, path);
	else
		snprintf(t->path, sizeof(t->path), "%.*s/v1/completions", (int)plen, path);
	*out = &t->base;
	t = NULL;
	rc = 0;
cleanup:
	if (uri)
		evhttp_uri_free(uri);
	openai_free(t ? &t->base : NULL);
	return rc;
}
