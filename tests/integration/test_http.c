/* The HTTP API through the real daemon with libevent's HTTP client: completions and chat
 * (streaming and not), exact SSE framing, usage, errors, API keys, metrics, load shedding,
 * drain, client disconnect, and the same tokens as the native protocol. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "daemon-fixture.h"

#define STATUS(x) INFERD__V1__STATUS_CODE__STATUS_##x
#define KEY "test-key-0123456789"

static struct test_daemon d;
static int http_port;
static char model_dir[] = "/tmp/inferd-test-http-XXXXXX";
static char model_path[256];

/* A random llama model big enough that a long generation lasts seconds (context 4096). */
static void make_model(void)
{
	const char *mk = getenv("INFERD_MKMODEL");
	char cmd[1024];
	cr_assert_not_null(mk, "INFERD_MKMODEL is not set");
	cr_assert_not_null(mkdtemp(model_dir));
	snprintf(model_path, sizeof(model_path), "%s/m.gguf", model_dir);
	snprintf(cmd, sizeof(cmd),
	         "'%s' llm --out '%s' --dim 256 --layers 4 --heads 4 --kv-heads 2 --ffn 512 "
	         "--vocab 512 --context 4096 --seed 3 >/dev/null", mk, model_path);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* http_extra: more [http] keys; model_extra: [model.tiny] keys; tail: more sections. */
static void start(const char *http_extra, const char *model_extra, const char *tail,
                  const char *key)
{
	char extra[2048];
	make_model();
	http_port = td_free_port();
	snprintf(extra, sizeof(extra),
	         "[http]\nlisten = 127.0.0.1:%d\n%s\n[model.tiny]\npath = %s\nchat_template = "
	         "chatml\n%s\n%s", http_port, http_extra ? http_extra : "", model_path,
	         model_extra ? model_extra : "", tail ? tail : "");
	td_start(&d, extra, key);
}

static void cleanup(void)
{
	char cmd[300];
	td_cleanup(&d);
	if (strncmp(model_dir, "/tmp/inferd-test-http-", 22) == 0 && !strstr(model_dir, "XXXXXX")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", model_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", model_dir);
	}
}

TestSuite(http, .fini = cleanup, .timeout = 180);

/* ---- a small HTTP client ----------------------------------------------------------------- */

struct resp {
	bool done;
	int status;
	char *body;      /* NUL-terminated */
	size_t len;
	char ctype[128];
};

static void on_done(struct evhttp_request *req, void *arg)
{
	struct resp *r = arg;
	r->done = true;
	if (!req)
		return;
	r->status = evhttp_request_get_response_code(req);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	r->body = realloc(r->body, r->len + n + 1);
	evbuffer_remove(in, r->body + r->len, n);
	r->len += n;
	r->body[r->len] = '\0';
	const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
	snprintf(r->ctype, sizeof(r->ctype), "%s", ct ? ct : "");
}

static void on_chunk(struct evhttp_request *req, void *arg)
{
	struct resp *r = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	r->body = realloc(r->body, r->len + n + 1);
	evbuffer_remove(in, r->body + r->len, n);
	r->len += n;
	r->body[r->len] = '\0';
}

struct client {
	struct event_base *base;
	struct evhttp_connection *conn;
};

static void client_init(struct client *c)
{
	c->base = event_base_new();
	cr_assert_not_null(c->base);
	c->conn = evhttp_connection_base_new(c->base, NULL, "127.0.0.1", (ev_uint16_t)http_port);
	cr_assert_not_null(c->conn);
	evhttp_connection_set_timeout(c->conn, 120);
}

static void client_fini(struct client *c)
{
	evhttp_connection_free(c->conn);
	event_base_free(c->base);
}

/* Queues a request on c; run the base to get it done. */
static void send_req(struct client *c, const char *method, const char *path, const char *body,
                     const char *key, struct resp *r)
{
	memset(r, 0, sizeof(*r));
	struct evhttp_request *req = evhttp_request_new(on_done, r);
	cr_assert_not_null(req);
	evhttp_request_set_chunked_cb(req, on_chunk);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", "127.0.0.1");
	if (key) {
		char auth[128];
		snprintf(auth, sizeof(auth), "Bearer %s", key);
		evhttp_add_header(h, "Authorization", auth);
	}
	if (body) {
		evhttp_add_header(h, "Content-Type", "application/json");
		evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	}
	cr_assert_eq(evhttp_make_request(c->conn, req, strcmp(method, "GET") == 0 ? EVHTTP_REQ_GET
	                                 : strcmp(method, "PUT") == 0 ? EVHTTP_REQ_PUT
	                                                              : EVHTTP_REQ_POST, path), 0);
}

static void run_until(struct client *c, struct resp *rs, size_t n)
{
	for (;;) {
		size_t done = 0;
		for (size_t i = 0; i < n; i++)
			done += rs[i].done;
		if (done == n)
			return;
		cr_assert_geq(event_base_loop(c->base, EVLOOP_ONCE), 0);
	}
}

static void request(const char *method, const char *path, const char *body, const char *key,
                    struct resp *r)
{
	struct client c;
	client_init(&c);
	send_req(&c, method, path, body, key, r);
	run_until(&c, r, 1);
	client_fini(&c);
}

static json_t *parse(const struct resp *r)
{
	json_error_t e;
	json_t *j = json_loadb(r->body ? r->body : "", r->len, JSON_ALLOW_NUL, &e);
	cr_assert_not_null(j, "not JSON (%s): %s", e.text, r->body ? r->body : "");
	return j;
}

/* An OpenAI error body with the given status. */
static void expect_error(const struct resp *r, int status, const char *type)
{
	cr_expect_eq(r->status, status, "status %d, want %d: %s", r->status, status, r->body);
	json_t *j = parse(r);
	json_t *e = json_object_get(j, "error");
	cr_expect(json_is_object(e), "no error object: %s", r->body);
	cr_expect(json_is_string(json_object_get(e, "message")));
	if (type)
		cr_expect_str_eq(json_string_value(json_object_get(e, "type")), type);
	cr_expect(json_object_get(e, "param") && json_object_get(e, "code"));
	json_decref(j);
}

/* ---- server-sent events ------------------------------------------------------------------ */

struct sse {
	json_t *events[4096];
	size_t n;
	bool done;      /* the last event was [DONE] */
};

/* Checks the exact framing: "data: X\n\n" events and nothing else, [DONE] last. */
static void parse_sse(const char *body, struct sse *s)
{
	const char *p = body;
	memset(s, 0, sizeof(*s));
	while (*p) {
		cr_assert(!s->done, "an event after [DONE]");
		cr_assert(strncmp(p, "data: ", 6) == 0, "an event that is not 'data: ': %.40s", p);
		const char *end = strstr(p, "\n\n");
		cr_assert_not_null(end, "an event without its blank line");
		const char *nl = strchr(p, '\n');
		cr_assert_eq(nl, end, "an event of more than one line");
		p += 6;
		if ((size_t)(end - p) == 6 && strncmp(p, "[DONE]", 6) == 0) {
			s->done = true;
		} else {
			json_error_t e;
			/* A random model's text may hold any byte, NUL (\u0000) included. */
			json_t *j = json_loadb(p, (size_t)(end - p), JSON_ALLOW_NUL, &e);
			cr_assert_not_null(j, "an event that is not JSON: %s", e.text);
			cr_assert_lt(s->n, 4096);
			s->events[s->n++] = j;
		}
		p = end + 2;
	}
	cr_assert(s->done, "the stream does not end with data: [DONE]");
}

static void sse_free(struct sse *s)
{
	for (size_t i = 0; i < s->n; i++)
		json_decref(s->events[i]);
}

static json_t *choice0(json_t *ev)
{
	return json_array_get(json_object_get(ev, "choices"), 0);
}

static long usage_of(json_t *j, const char *key)
{
	return (long)json_integer_value(json_object_get(json_object_get(j, "usage"), key));
}

/* ---- tests ------------------------------------------------------------------------------- */

Test(http, completions_non_streaming_and_streaming_agree)
{
	start(NULL, NULL, NULL, NULL);
	struct resp r;
	request("POST", "/v1/completions",
	        "{\"model\": \"tiny\", \"prompt\": \"hello world\", \"max_tokens\": 12, "
	        "\"temperature\": 0, \"ignore_eos\": true}", NULL, &r);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_expect(strncmp(r.ctype, "application/json", 16) == 0);
	json_t *j = parse(&r);
	cr_expect_str_eq(json_string_value(json_object_get(j, "object")), "text_completion");
	cr_expect_str_eq(json_string_value(json_object_get(j, "model")), "tiny");
	cr_expect_str_eq(json_string_value(json_object_get(choice0(j), "finish_reason")), "length");
	cr_expect_eq(usage_of(j, "completion_tokens"), 12);
	cr_expect_gt(usage_of(j, "prompt_tokens"), 1);
	cr_expect_eq(usage_of(j, "total_tokens"),
	             usage_of(j, "prompt_tokens") + usage_of(j, "completion_tokens"));
	const char *text = json_string_value(json_object_get(choice0(j), "text"));
	cr_assert_not_null(text);

	struct resp s;
	request("POST", "/v1/completions",
	        "{\"model\": \"tiny\", \"prompt\": \"hello world\", \"max_tokens\": 12, "
	        "\"temperature\": 0, \"ignore_eos\": true, \"stream\": true, "
	        "\"stream_options\": {\"include_usage\": true}}", NULL, &s);
	cr_assert_eq(s.status, 200, "%s", s.body);
	cr_expect_str_eq(s.ctype, "text/event-stream");
	struct sse ev;
	parse_sse(s.body, &ev);
	char joined[4096] = "";
	long content = 0;
	bool finished = false;
	for (size_t i = 0; i < ev.n; i++) {
		json_t *e = ev.events[i];
		cr_expect_str_eq(json_string_value(json_object_get(e, "object")), "text_completion");
		json_t *c = choice0(e);
		if (i + 1 == ev.n) { /* the usage chunk: no choices */
			cr_expect_eq(json_array_size(json_object_get(e, "choices")), 0);
			cr_expect_eq(usage_of(e, "completion_tokens"), content);
			cr_expect_eq(usage_of(e, "completion_tokens"), 12);
			continue;
		}
		cr_expect(json_is_null(json_object_get(e, "usage")));
		strncat(joined, json_string_value(json_object_get(c, "text")),
		        sizeof(joined) - strlen(joined) - 1);
		if (json_is_null(json_object_get(c, "finish_reason"))) {
			cr_expect(!finished);
			content++;
		} else {
			finished = true;
			cr_expect_str_eq(json_string_value(json_object_get(c, "finish_reason")), "length");
		}
	}
	cr_expect(finished);
	cr_expect_str_eq(joined, text, "streamed text equals the non-streamed text");
	sse_free(&ev);
	json_decref(j);
	free(r.body);
	free(s.body);
	cr_expect_eq(td_stop(&d), 0);
}

Test(http, chat_with_template_override_streams_and_not)
{
	start(NULL, NULL, NULL, NULL);
	const char *msgs = "\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, "
	                   "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": "
	                   "\"hi\"}]}]";
	char body[1024];
	struct resp r, s;
	snprintf(body, sizeof(body), "{%s, \"max_tokens\": 8, \"temperature\": 0, "
	         "\"ignore_eos\": true}", msgs);
	request("POST", "/v1/chat/completions", body, NULL, &r);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *j = parse(&r);
	cr_expect_str_eq(json_string_value(json_object_get(j, "object")), "chat.completion");
	json_t *msg = json_object_get(choice0(j), "message");
	cr_expect_str_eq(json_string_value(json_object_get(msg, "role")), "assistant");
	cr_expect_eq(usage_of(j, "completion_tokens"), 8);
	cr_expect_gt(usage_of(j, "prompt_tokens"), 10, "the rendered chat is the prompt");

	snprintf(body, sizeof(body), "{%s, \"max_tokens\": 8, \"temperature\": 0, "
	         "\"ignore_eos\": true, \"stream\": true}", msgs);
	request("POST", "/v1/chat/completions", body, NULL, &s);
	cr_assert_eq(s.status, 200, "%s", s.body);
	struct sse ev;
	parse_sse(s.body, &ev);
	cr_assert_geq(ev.n, 3);
	char joined[4096] = "";
	for (size_t i = 0; i < ev.n; i++) {
		json_t *c = choice0(ev.events[i]);
		cr_expect_str_eq(json_string_value(json_object_get(ev.events[i], "object")),
		                 "chat.completion.chunk");
		json_t *delta = json_object_get(c, "delta");
		cr_assert(json_is_object(delta));
		if (i == 0)
			cr_expect_str_eq(json_string_value(json_object_get(delta, "role")), "assistant");
		const char *t = json_string_value(json_object_get(delta, "content"));
		if (t)
			strncat(joined, t, sizeof(joined) - strlen(joined) - 1);
	}
	cr_expect_str_eq(json_string_value(json_object_get(choice0(ev.events[ev.n - 1]),
	                                                   "finish_reason")), "length");
	cr_expect_eq(ev.n, 1 + 8 + 1, "role chunk, one per token, the finish chunk");
	cr_expect_str_eq(joined, json_string_value(json_object_get(msg, "content")));
	sse_free(&ev);
	json_decref(j);
	free(r.body);
	free(s.body);
	cr_expect_eq(td_stop(&d), 0);
}

/* ---- same tokens as the native protocol -------------------------------------------------- */

struct native {
	bool done;
	int status;
	int32_t ids[256];
	size_t n;
};

static int on_native(const struct inferd_reply *r, void *arg)
{
	struct native *g = arg;
	if (r->payload_len) {
		Inferd__V1__GenerateReply *rep =
			inferd__v1__generate_reply__unpack(NULL, r->payload_len, r->payload);
		cr_assert_not_null(rep);
		for (size_t i = 0; i < rep->n_token_ids && g->n < 256; i++)
			g->ids[g->n++] = rep->token_ids[i];
		inferd__v1__generate_reply__free_unpacked(rep, NULL);
	}
	if (r->end_of_stream) {
		g->done = true;
		g->status = r->status;
	}
	return 0;
}

Test(http, greedy_tokens_equal_the_native_protocol)
{
	start(NULL, NULL, NULL, NULL);
	static const int32_t prompt[] = { 1, 17, 42, 99, 7, 300, 12 };
	struct resp r;
	request("POST", "/v1/completions",
	        "{\"prompt\": [1, 17, 42, 99, 7, 300, 12], \"max_tokens\": 24, \"temperature\": 0, "
	        "\"ignore_eos\": true, \"logprobs\": 0, \"return_tokens_as_token_ids\": true}",
	        NULL, &r);
	cr_assert_eq(r.status, 200, "%s", r.body);
	json_t *j = parse(&r);
	json_t *toks = json_object_get(json_object_get(choice0(j), "logprobs"), "tokens");
	cr_assert_eq(json_array_size(toks), 24, "%s", r.body);

	struct inferd_client *c = td_client(&d, false, NULL);
	Inferd__V1__GenerateRequest req = INFERD__V1__GENERATE_REQUEST__INIT;
	Inferd__V1__SamplingParams sp = INFERD__V1__SAMPLING_PARAMS__INIT;
	Inferd__V1__TokenIds ids = INFERD__V1__TOKEN_IDS__INIT;
	struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;
	struct native g = { 0 };
	uint64_t call_id;
	req.model = "tiny";
	req.prompt_case = INFERD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
	ids.n_ids = sizeof(prompt) / sizeof(prompt[0]);
	ids.ids = (int32_t *)prompt;
	req.tokens = &ids;
	req.max_tokens = 24;
	sp.temperature = 0;
	sp.ignore_eos = true;
	req.sampling = &sp;
	cr_assert_eq(inferd_client_start_msg(c, INFERD__V1__METHOD__METHOD_GENERATE, &req.base, &o,
	                                     on_native, &g, &call_id), 0);
	while (!g.done)
		cr_assert(inferd_client_poll(c, 1000) >= 0);
	cr_assert_eq(g.status, STATUS(OK));
	cr_assert_eq(g.n, 24);
	for (size_t i = 0; i < 24; i++) {
		char want[32];
		snprintf(want, sizeof(want), "token_id:%d", g.ids[i]);
		cr_expect_str_eq(json_string_value(json_array_get(toks, i)), want, "token %zu", i);
	}
	inferd_client_free(c);
	json_decref(j);
	free(r.body);
	cr_expect_eq(td_stop(&d), 0);
}

/* ---- errors ------------------------------------------------------------------------------ */

Test(http, errors_have_openai_bodies_and_statuses)
{
	start(NULL, NULL, "", NULL);
	struct resp r;
	request("POST", "/v1/completions", "{not json", NULL, &r);
	expect_error(&r, 400, "invalid_request_error");
	free(r.body);
	request("POST", "/v1/completions", "{\"prompt\": \"x\", \"n\": 2}", NULL, &r);
	expect_error(&r, 400, "invalid_request_error");
	cr_expect(strstr(r.body, "\"param\":\"n\""), "%s", r.body);
	free(r.body);
	request("POST", "/v1/completions", "{\"prompt\": \"x\", \"temperature\": \"hot\"}", NULL, &r);
	expect_error(&r, 400, NULL);
	free(r.body);
	request("POST", "/v1/completions", "{\"prompt\": [1, 99999]}", NULL, &r);
	expect_error(&r, 400, NULL);
	free(r.body);
	request("POST", "/v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", "
	        "\"content\": \"x\"}]}", NULL, &r);
	expect_error(&r, 400, NULL);
	free(r.body);
	request("POST", "/v1/completions", "{\"model\": \"nope\", \"prompt\": \"x\"}", NULL, &r);
	expect_error(&r, 404, NULL);
	cr_expect(strstr(r.body, "model_not_found"), "%s", r.body);
	free(r.body);
	request("GET", "/v1/nothing-here", NULL, NULL, &r);
	expect_error(&r, 404, NULL);
	free(r.body);
	request("GET", "/v1/completions", NULL, NULL, &r);
	expect_error(&r, 405, NULL);
	free(r.body);
	/* Over max_body_bytes (8 MiB by default): 413 with a JSON body. */
	size_t big = (8u << 20) + 100;
	char *huge = malloc(big + 1);
	memset(huge, ' ', big);
	huge[0] = '{';
	huge[big - 1] = '}';
	huge[big] = '\0';
	request("POST", "/v1/completions", huge, NULL, &r);
	expect_error(&r, 413, NULL);
	free(huge);
	free(r.body);
	/* The connection limit and the rest still serve. */
	request("GET", "/v1/models", NULL, NULL, &r);
	cr_expect_eq(r.status, 200);
	json_t *j = parse(&r);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j, "data"),
	                                                                  0), "id")), "tiny");
	json_decref(j);
	free(r.body);
	cr_expect_eq(td_stop(&d), 0);
}

Test(http, api_keys_guard_everything_but_health_and_ready)
{
	start(NULL, NULL, "[auth]\napi_key = " KEY "\n", KEY);
	struct resp r;
	request("POST", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 2}", NULL, &r);
	expect_error(&r, 401, "authentication_error");
	free(r.body);
	request("POST", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 2}", "wrong-key-123",
	        &r);
	expect_error(&r, 401, "authentication_error");
	free(r.body);
	request("GET", "/v1/models", NULL, NULL, &r);
	expect_error(&r, 401, NULL);
	free(r.body);
	request("POST", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 2}", KEY, &r);
	cr_expect_eq(r.status, 200, "%s", r.body);
	free(r.body);
	request("GET", "/health", NULL, NULL, &r);
	cr_expect_eq(r.status, 200);
	free(r.body);
	request("GET", "/ready", NULL, NULL, &r);
	cr_expect_eq(r.status, 200);
	free(r.body);
	/* open_metrics_on_loopback: the test talks over loopback. */
	request("GET", "/metrics", NULL, NULL, &r);
	cr_expect_eq(r.status, 200);
	free(r.body);
	cr_expect_eq(td_stop(&d), 0);
}

Test(http, metrics_key_guards_metrics)
{
	start("metrics_key = metrics-secret-1\n", NULL, NULL, NULL);
	struct resp r;
	request("GET", "/metrics", NULL, NULL, &r);
	expect_error(&r, 401, NULL);
	free(r.body);
	request("GET", "/metrics", NULL, "metrics-secret-1", &r);
	cr_expect_eq(r.status, 200, "%s", r.body);
	free(r.body);
	cr_expect_eq(td_stop(&d), 0);
}

/* ---- metrics ----------------------------------------------------------------------------- */

/* The value of the first sample whose line starts with prefix (name and labels), or -1. */
static double sample(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	}
	return -1;
}

static char *scrape(void)
{
	struct resp r;
	request("GET", "/metrics", NULL, NULL, &r);
	cr_assert_eq(r.status, 200);
	cr_expect(strncmp(r.ctype, "text/plain; version=0.0.4", 25) == 0, "%s", r.ctype);
	/* Every line is a comment or "name{labels} value". */
	for (char *p = r.body; *p;) {
		char *nl = strchr(p, '\n');
		cr_assert_not_null(nl, "the exposition ends with a newline");
		if (*p != '#') {
			char *sp = memchr(p, ' ', (size_t)(nl - p));
			cr_assert_not_null(sp, "a sample without a value: %.60s", p);
			char *end;
			strtod(sp + 1, &end);
			cr_assert_eq(end, nl, "a sample whose value does not parse: %.60s", p);
		}
		p = nl + 1;
	}
	return r.body;
}

Test(http, metrics_move_after_requests)
{
	start(NULL, NULL, NULL, NULL);
	char *before = scrape();
	cr_expect_eq(sample(before, "inferd_models_loaded"), 1);
	cr_expect_eq(sample(before, "inferd_time_to_first_token_seconds_count"), 0);
	struct resp r;
	request("POST", "/v1/completions", "{\"prompt\": \"count me\", \"max_tokens\": 5, "
	        "\"ignore_eos\": true}", NULL, &r);
	cr_assert_eq(r.status, 200);
	free(r.body);
	/* A native Generate is observed as well. */
	struct inferd_client *c = td_client(&d, false, NULL);
	Inferd__V1__GenerateRequest req = INFERD__V1__GENERATE_REQUEST__INIT;
	struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;
	struct native g = { 0 };
	uint64_t call_id;
	req.model = "tiny";
	req.prompt_case = INFERD__V1__GENERATE_REQUEST__PROMPT_TEXT;
	req.text = "native too";
	req.max_tokens = 3;
	cr_assert_eq(inferd_client_start_msg(c, INFERD__V1__METHOD__METHOD_GENERATE, &req.base, &o,
	                                     on_native, &g, &call_id), 0);
	while (!g.done)
		cr_assert(inferd_client_poll(c, 1000) >= 0);
	inferd_client_free(c);
	request("POST", "/v1/nothing", "{}", NULL, &r);
	free(r.body);

	char *after = scrape();
	cr_expect_eq(sample(after, "inferd_time_to_first_token_seconds_count"), 2);
	cr_expect_eq(sample(after, "inferd_e2e_request_latency_seconds_count"), 2);
	cr_expect_eq(sample(after, "inferd_e2e_request_latency_seconds_bucket{le=\"+Inf\"}"), 2);
	cr_expect_eq(sample(after, "inferd_request_queue_time_seconds_count"), 2);
	cr_expect_eq(sample(after, "inferd_time_per_output_token_seconds_count"), 2);
	cr_expect_eq(sample(after, "inferd_generation_tokens_total{model=\"tiny\"}"),
	             sample(before, "inferd_generation_tokens_total{model=\"tiny\"}") + 5 + 3);
	cr_expect_gt(sample(after, "inferd_prompt_tokens_total{model=\"tiny\"}"),
	             sample(before, "inferd_prompt_tokens_total{model=\"tiny\"}"));
	cr_expect_eq(sample(after, "inferd_http_requests_total{endpoint=\"/v1/completions\","
	                           "status=\"200\"}"), 1);
	cr_expect_eq(sample(after, "inferd_http_requests_total{endpoint=\"other\",status=\"404\"}"),
	             1);
	cr_expect_eq(sample(after, "inferd_requests_running{model=\"tiny\"}"), 0);
	cr_expect_eq(sample(after, "inferd_kv_cache_usage_ratio{model=\"tiny\"}"), 0);
	cr_expect_geq(sample(after, "inferd_preemptions_total{model=\"tiny\"}"), 0);
	cr_expect_geq(sample(after, "inferd_prefix_cache_hits_total{model=\"tiny\"}"), 0);
	free(before);
	free(after);
	cr_expect_eq(td_stop(&d), 0);
}

/* ---- load, drain, disconnect ------------------------------------------------------------- */

Test(http, a_full_queue_answers_429)
{
	start(NULL, "max_sequences = 1\nmax_queued = 1\n", NULL, NULL);
	struct client c[12];
	struct resp r[12];
	/* All on one base, one connection each, so they are in flight together. */
	struct event_base *base = event_base_new();
	for (int i = 0; i < 12; i++) {
		c[i].base = base;
		c[i].conn = evhttp_connection_base_new(base, NULL, "127.0.0.1", (ev_uint16_t)http_port);
		send_req(&c[i], "POST", "/v1/completions", "{\"prompt\": \"queue me\", "
		         "\"max_tokens\": 60, \"ignore_eos\": true}", NULL, &r[i]);
	}
	run_until(&c[0], r, 12);
	int ok = 0, shed = 0;
	for (int i = 0; i < 12; i++) {
		if (r[i].status == 200) {
			ok++;
		} else {
			expect_error(&r[i], 429, "rate_limit_error");
			shed++;
		}
		free(r[i].body);
		evhttp_connection_free(c[i].conn);
	}
	event_base_free(base);
	cr_expect_gt(shed, 0);
	cr_expect_geq(ok, 1);
	cr_expect_eq(td_stop(&d), 0);
}

Test(http, draining_answers_503_and_streams_finish)
{
	/* drain_timeout well above the stream's length, even under the sanitizers. */
	start(NULL, NULL, "[server]\ndrain_timeout = 300\n", NULL);
	struct client c;
	struct resp s, r;
	client_init(&c);
	send_req(&c, "POST", "/v1/completions", "{\"prompt\": \"drain\", \"max_tokens\": 300, "
	         "\"ignore_eos\": true, \"stream\": true}", NULL, &s);
	/* Wait for the stream to start, then SIGTERM. */
	while (!s.done && s.len == 0)
		cr_assert_geq(event_base_loop(c.base, EVLOOP_ONCE), 0);
	td_signal(&d, SIGTERM);
	bool saw_503 = false;
	for (int i = 0; i < 200 && !saw_503 && !s.done; i++) {
		struct resp ready;
		request("GET", "/ready", NULL, NULL, &ready);
		if (ready.status == 503) {
			expect_error(&ready, 503, "service_unavailable_error");
			request("POST", "/v1/completions", "{\"prompt\": \"late\"}", NULL, &r);
			expect_error(&r, 503, "service_unavailable_error");
			free(r.body);
			saw_503 = true;
		}
		free(ready.body);
		event_base_loop(c.base, EVLOOP_NONBLOCK);
	}
	cr_expect(saw_503, "the daemon answered 503 while draining");
	run_until(&c, &s, 1);
	cr_expect_eq(s.status, 200);
	struct sse ev;
	parse_sse(s.body, &ev);
	cr_expect_str_eq(json_string_value(json_object_get(choice0(ev.events[ev.n - 1]),
	                                                   "finish_reason")), "length");
	sse_free(&ev);
	free(s.body);
	client_fini(&c);
	cr_expect_eq(td_wait(&d), 0);
}

static Inferd__V1__StatsReply *stats(void)
{
	struct inferd_client *c = td_client(&d, false, NULL);
	Inferd__V1__StatsRequest req = INFERD__V1__STATS_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	cr_assert_eq(inferd_client_unary(c, INFERD__V1__METHOD__METHOD_STATS, &req.base,
	                                 &inferd__v1__stats_reply__descriptor, &rep, NULL, NULL, 0),
	             STATUS(OK));
	inferd_client_free(c);
	return (Inferd__V1__StatsReply *)rep;
}

Test(http, a_client_that_disconnects_cancels_its_generation)
{
	start(NULL, NULL, NULL, NULL);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)http_port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	const char *body = "{\"prompt\": \"go on\", \"max_tokens\": 4000, \"ignore_eos\": true, "
	                   "\"stream\": true}";
	char head[512], buf[4096];
	snprintf(head, sizeof(head), "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
	         "application/json\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
	cr_assert_eq(write(fd, head, strlen(head)), (ssize_t)strlen(head));
	/* Read until a few events came, then go away. */
	size_t seen = 0;
	int events = 0;
	while (events < 3) {
		ssize_t n = read(fd, buf + seen, sizeof(buf) - 1 - seen);
		cr_assert_gt(n, 0, "the stream ended early");
		seen += (size_t)n;
		buf[seen] = '\0';
		events = 0;
		for (const char *p = buf; (p = strstr(p, "data: ")); p += 6)
			events++;
		if (seen > sizeof(buf) - 512)
			seen = 0; /* keep reading; only the count matters */
	}
	close(fd);
	/* The worker lets go of the sequence and its blocks. */
	bool freed = false;
	for (int i = 0; i < 400 && !freed; i++) {
		Inferd__V1__StatsReply *st = stats();
		freed = st->requests_running == 0 && st->requests_waiting == 0 && st->kv_blocks_used == 0;
		protobuf_c_message_free_unpacked(&st->base, NULL);
		if (!freed)
			usleep(25000);
	}
	cr_expect(freed, "the generation is still running after its client left");
	char *m = scrape();
	cr_expect_eq(sample(m, "inferd_http_requests_total{endpoint=\"/v1/completions\","
	                       "status=\"499\"}"), 1);
	cr_expect_lt(sample(m, "inferd_generation_tokens_total{model=\"tiny\"}"), 4000);
	free(m);
	cr_expect_eq(td_stop(&d), 0);
}

/* ---- connection limits, header size, keep-alive ------------------------------------------ */

Test(http, keep_alive_reuses_a_connection_and_max_connections_answers_503)
{
	start("max_connections = 2\n", NULL, NULL, NULL);
	/* Two clients whose keep-alive connections stay open after a request each. */
	struct client a, b, c;
	struct resp ra[3], rb, rc;
	client_init(&a);
	client_init(&b);
	client_init(&c);
	send_req(&a, "GET", "/v1/models", NULL, NULL, &ra[0]);
	run_until(&a, ra, 1);
	cr_assert_eq(ra[0].status, 200, "%s", ra[0].body);
	send_req(&b, "GET", "/v1/models", NULL, NULL, &rb);
	run_until(&b, &rb, 1);
	cr_assert_eq(rb.status, 200, "%s", rb.body);
	/* A third connection is over the limit: 503, and the daemon closes it. */
	send_req(&c, "GET", "/v1/models", NULL, NULL, &rc);
	run_until(&c, &rc, 1);
	expect_error(&rc, 503, NULL);
	cr_assert(strstr(rc.body, "max_connections"), "%s", rc.body);
	/* The first connection serves more requests (keep-alive: still one of the two). */
	send_req(&a, "GET", "/v1/models", NULL, NULL, &ra[1]);
	run_until(&a, ra + 1, 1);
	cr_assert_eq(ra[1].status, 200, "%s", ra[1].body);
	send_req(&a, "POST", "/v1/completions",
	         "{\"model\": \"tiny\", \"prompt\": \"hi\", \"max_tokens\": 2}", NULL, &ra[2]);
	run_until(&a, ra + 2, 1);
	cr_assert_eq(ra[2].status, 200, "%s", ra[2].body);
	for (int i = 0; i < 3; i++)
		free(ra[i].body);
	free(rb.body);
	free(rc.body);
	client_fini(&c);
	client_fini(&b);
	client_fini(&a);
}

Test(http, headers_over_max_header_bytes_are_refused)
{
	start("max_header_bytes = 2048\n", NULL, NULL, NULL);
	/* Headers over max_header_bytes: refused by evhttp (libevent 2.1 answers 400). */
	struct client big;
	struct resp rbig;
	static char filler[4096];
	memset(filler, 'x', sizeof(filler) - 1);
	client_init(&big);
	memset(&rbig, 0, sizeof(rbig));
	struct evhttp_request *req = evhttp_request_new(on_done, &rbig);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Filler", filler);
	cr_assert_eq(evhttp_make_request(big.conn, req, EVHTTP_REQ_GET, "/v1/models"), 0);
	run_until(&big, &rbig, 1);
	cr_assert(rbig.status == 400 || rbig.status == 413 || rbig.status == 431 || rbig.status == 0,
	          "a 4 KiB header got %d", rbig.status);
	cr_assert_neq(rbig.status, 200);
	free(rbig.body);
	client_fini(&big);
	/* The daemon goes on serving. */
	struct resp ok;
	request("GET", "/health", NULL, NULL, &ok);
	cr_assert_eq(ok.status, 200);
	free(ok.body);
}
