/* POST /v1/completions and /v1/chat/completions: OpenAI requests to generations, pieces to
 * server-sent events or one JSON body. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat_template.h"
#include "generation.h"
#include "gguf.h"
#include "http-internal.h"
#include "log.h"
#include "models.h"
#include "server-internal.h"
#include "tokenizer.h"

/* A generation request in flight. WAITING: nothing sent yet (an error can still get its own
 * status); STREAMING: 200 and the event-stream headers are out. */
enum http_gen_state {
	HTTP_GEN_WAITING,
	HTTP_GEN_STREAMING,
};

struct http_gen {
	struct http_server *hs;
	struct http_conn *conn;          /* NULL once the client went away */
	struct evhttp_request *req;
	struct generation *gen;          /* NULL once it ended */
	const struct served_model *model;
	enum http_api api;
	enum http_gen_state state;
	bool stream, include_usage, logprobs, tokens_as_ids;
	int top_logprobs;
	char id[48];
	json_int_t created;
	struct evbuffer *out;            /* stream: one event at a time; else the text so far */
	json_t *lp;                      /* non-stream logprobs so far */
	size_t text_offset;
	struct http_gen *prev, *next;    /* in hs->gens */
};

/* ---- parsing ----------------------------------------------------------------------------- */

struct parsed {
	struct gen_request r;
	const char *stops[GEN_MAX_STOP];
	int32_t *ids;                    /* owned: a prompt given as token ids */
	char *chat_text;                 /* owned: the rendered chat */
	char **parts;                    /* owned: message contents joined from parts */
	size_t n_parts;
	bool stream, include_usage, logprobs, tokens_as_ids;
	int top_logprobs;
	/* the error, when parsing fails */
	int status;
	const char *param, *code;
	char msg[384];
};

static int bad(struct parsed *p, int status, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int bad(struct parsed *p, int status, const char *param, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
	va_end(ap);
	p->status = status;
	p->param = param;
	return -1;
}

static void parsed_fini(struct parsed *p)
{
	free(p->ids);
	free(p->chat_text);
	for (size_t i = 0; i < p->n_parts; i++)
		free(p->parts[i]);
	free(p->parts);
}

/* Absent or null: leaves *out. */
static int get_num(struct parsed *p, json_t *root, const char *key, double min, double max,
                   double *out)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return bad(p, 400, key, "'%s' must be a number", key);
	double x = json_number_value(v);
	if (!(x >= min && x <= max))
		return bad(p, 400, key, "'%s' must be in [%g, %g]", key, min, max);
	*out = x;
	return 0;
}

static int get_float(struct parsed *p, json_t *root, const char *key, double min, double max,
                     float *out)
{
	double d = *out;
	if (get_num(p, root, key, min, max, &d) < 0)
		return -1;
	*out = (float)d;
	return 0;
}

static int get_int(struct parsed *p, json_t *root, const char *key, json_int_t min,
                   json_int_t max, json_int_t *out)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return bad(p, 400, key, "'%s' must be an integer", key);
	json_int_t x = json_integer_value(v);
	if (x < min || x > max)
		return bad(p, 400, key, "'%s' must be in [%lld, %lld]", key, (long long)min,
		           (long long)max);
	*out = x;
	return 0;
}

static int get_bool(struct parsed *p, json_t *root, const char *key, bool *out)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return bad(p, 400, key, "'%s' must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int parse_ids(struct parsed *p, json_t *arr)
{
	size_t n = json_array_size(arr), i;
	json_t *v;

	p->ids = malloc((n ? n : 1) * sizeof(*p->ids));
	if (!p->ids)
		return bad(p, 500, NULL, "out of memory");
	json_array_foreach(arr, i, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > INT32_MAX)
			return bad(p, 400, "prompt", "prompt[%zu] is not a token id", i);
		p->ids[i] = (int32_t)json_integer_value(v);
	}
	p->r.ids = p->ids;
	p->r.n_ids = n;
	return 0;
}

/* prompt: a string, an array of token ids, or an array holding one of those. */
static int parse_prompt(struct parsed *p, json_t *root)
{
	json_t *v = json_object_get(root, "prompt");

	if (!v)
		return bad(p, 400, "prompt", "'prompt' is required");
	if (json_is_array(v) && json_array_size(v) == 1 &&
	    (json_is_string(json_array_get(v, 0)) || json_is_array(json_array_get(v, 0))))
		v = json_array_get(v, 0);
	if (json_is_string(v)) {
		p->r.text = json_string_value(v);
		p->r.parse_special = true;
		return 0;
	}
	if (json_is_array(v)) {
		if (json_array_size(v) > 1 && !json_is_integer(json_array_get(v, 0)))
			return bad(p, 400, "prompt", "only one prompt per request is supported");
		return parse_ids(p, v);
	}
	return bad(p, 400, "prompt", "'prompt' must be a string or an array of token ids");
}

/* A message's content: a string or an array of {"type": "text", "text": ...} parts. */
static const char *message_content(struct parsed *p, json_t *c, size_t i)
{
	if (json_is_string(c))
		return json_string_value(c);
	if (json_is_null(c) || !c)
		return "";
	if (!json_is_array(c)) {
		bad(p, 400, "messages", "messages[%zu].content must be a string or an array", i);
		return NULL;
	}
	size_t len = 0, j;
	json_t *part;
	json_array_foreach(c, j, part) {
		json_t *t = json_object_get(part, "text");
		const char *type = json_string_value(json_object_get(part, "type"));
		if (!type || strcmp(type, "text") != 0 || !json_is_string(t)) {
			bad(p, 400, "messages", "messages[%zu].content[%zu]: only text parts are supported",
			    i, j);
			return NULL;
		}
		len += json_string_length(t);
	}
	char **parts = realloc(p->parts, (p->n_parts + 1) * sizeof(*parts));
	char *s = malloc(len + 1);
	if (parts)
		p->parts = parts;
	if (!parts || !s) {
		free(s);
		bad(p, 500, NULL, "out of memory");
		return NULL;
	}
	p->parts[p->n_parts++] = s;
	len = 0;
	json_array_foreach(c, j, part) {
		json_t *t = json_object_get(part, "text");
		memcpy(s + len, json_string_value(t), json_string_length(t));
		len += json_string_length(t);
	}
	s[len] = '\0';
	return s;
}

static int parse_messages(struct parsed *p, json_t *root, const struct served_model *m)
{
	json_t *msgs = json_object_get(root, "messages");
	size_t n = json_array_size(msgs), i;
	struct chat_message *cm;
	json_t *v;
	char err[256];
	enum chat_family f;
	const char *tmpl = NULL;

	if (!json_is_array(msgs) || n == 0)
		return bad(p, 400, "messages", "'messages' must be a non-empty array");
	if (m->cfg->chat_template) {
		f = chat_family_parse(m->cfg->chat_template);
	} else {
		if (gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl, NULL) < 0 || !tmpl)
			return bad(p, 400, "messages", "the model '%s' has no chat template: use "
			           "/v1/completions, or set [model.%s] chat_template = chatml|llama2|"
			           "llama3|mistral|gemma|zephyr", m->cfg->name, m->cfg->name);
		f = chat_template_detect(tmpl);
		if (f == CHAT_FAMILY_NONE) {
			p->code = "unsupported_chat_template";
			return bad(p, 500, NULL, "the chat template of model '%s' is not one inferd can "
			           "render (chatml, llama2, llama3, mistral, gemma, zephyr): set [model.%s] "
			           "chat_template to the family it follows", m->cfg->name, m->cfg->name);
		}
	}
	cm = calloc(n, sizeof(*cm));
	if (!cm)
		return bad(p, 500, NULL, "out of memory");
	json_array_foreach(msgs, i, v) {
		cm[i].role = json_string_value(json_object_get(v, "role"));
		cm[i].content = message_content(p, json_object_get(v, "content"), i);
		if (!cm[i].content) {
			free(cm);
			return -1;
		}
	}
	int32_t bos = tok_bos(m->tok), eos = tok_eos(m->tok);
	int rc = chat_render(f, cm, n, bos >= 0 ? tok_token_text(m->tok, bos, NULL) : NULL,
	                     eos >= 0 ? tok_token_text(m->tok, eos, NULL) : NULL, &p->chat_text,
	                     err, sizeof(err));
	free(cm);
	if (rc < 0)
		return bad(p, rc == -ENOMEM ? 500 : 400, "messages", "%s", err);
	p->r.text = p->chat_text;
	p->r.parse_special = true;
	return 0;
}

static int parse_stop(struct parsed *p, json_t *root)
{
	json_t *v = json_object_get(root, "stop"), *s;
	size_t i;

	if (!v || json_is_null(v))
		return 0;
	if (json_is_string(v)) {
		p->stops[0] = json_string_value(v);
		p->r.n_stop = 1;
	} else if (json_is_array(v)) {
		if (json_array_size(v) > GEN_MAX_STOP)
			return bad(p, 400, "stop", "at most %d stop strings", GEN_MAX_STOP);
		json_array_foreach(v, i, s) {
			if (!json_is_string(s) || !json_string_length(s))
				return bad(p, 400, "stop", "stop[%zu] must be a non-empty string", i);
			p->stops[i] = json_string_value(s);
		}
		p->r.n_stop = json_array_size(v);
	} else {
		return bad(p, 400, "stop", "'stop' must be a string or an array of strings");
	}
	if (p->r.n_stop == 1 && !p->stops[0][0])
		return bad(p, 400, "stop", "stop strings must not be empty");
	p->r.stop = p->stops;
	return 0;
}

static int parse_request(struct parsed *p, json_t *root, enum http_api api,
                         const struct served_model *m, uint64_t salt)
{
	struct gen_request *r = &p->r;
	json_int_t i = 1, max_tokens = api == HTTP_API_COMPLETIONS ? 16 : 0, top_k = 0, seed = -1;
	bool echo = false;

	sampling_params_init(&r->sampling);
	r->model = m->cfg->name;
	if (api == HTTP_API_COMPLETIONS ? parse_prompt(p, root) < 0 : parse_messages(p, root, m) < 0)
		return -1;
	if (get_int(p, root, "n", 1, 1 << 20, &i) < 0)
		return -1;
	if (i > 1)
		return bad(p, 400, "n", "only n = 1 is supported");
	json_int_t best_of = 1;
	if (get_int(p, root, "best_of", 1, 1 << 20, &best_of) < 0 || get_bool(p, root, "echo", &echo) < 0)
		return -1;
	if (best_of > 1 || echo)
		return bad(p, 400, best_of > 1 ? "best_of" : "echo", "'%s' is not supported",
		           best_of > 1 ? "best_of" : "echo");
	if (get_int(p, root, "max_tokens", 0, 1 << 24, &max_tokens) < 0 ||
	    get_int(p, root, "max_completion_tokens", 0, 1 << 24, &max_tokens) < 0)
		return -1;
	r->max_tokens = (uint32_t)max_tokens;
	if (max_tokens == 0 && json_integer_value(json_object_get(root, "max_tokens")) == 0 &&
	    json_is_integer(json_object_get(root, "max_tokens")))
		return bad(p, 400, "max_tokens", "'max_tokens' must be at least 1");
	if (get_float(p, root, "temperature", 0.0, 2.0, &r->sampling.temperature) < 0 ||
	    get_float(p, root, "top_p", 0.0, 1.0, &r->sampling.top_p) < 0 ||
	    get_int(p, root, "top_k", -1, 1 << 30, &top_k) < 0 ||
	    get_float(p, root, "min_p", 0.0, 1.0, &r->sampling.min_p) < 0 ||
	    get_float(p, root, "presence_penalty", -2.0, 2.0, &r->sampling.presence_penalty) < 0 ||
	    get_float(p, root, "frequency_penalty", -2.0, 2.0, &r->sampling.frequency_penalty) < 0 ||
	    get_float(p, root, "repetition_penalty", 0.0, 10.0, &r->sampling.repeat_penalty) < 0 ||
	    get_int(p, root, "seed", INT64_MIN, INT64_MAX, &seed) < 0 ||
	    get_bool(p, root, "ignore_eos", &r->ignore_eos) < 0 ||
	    get_bool(p, root, "stream", &p->stream) < 0 ||
	    get_bool(p, root, "return_tokens_as_token_ids", &p->tokens_as_ids) < 0 ||
	    parse_stop(p, root) < 0)
		return -1;
	if (r->sampling.top_p <= 0.0f)
		return bad(p, 400, "top_p", "'top_p' must be in (0, 1]");
	r->sampling.top_k = top_k > 0 ? (int32_t)top_k : 0;
	r->sampling.seed = json_is_integer(json_object_get(root, "seed"))
	                           ? (uint64_t)seed
	                           : (uint64_t)(server_now() * 1e9) ^ (salt * 0x9E3779B97F4A7C15ull);
	json_t *so = json_object_get(root, "stream_options");
	if (so && !json_is_null(so)) {
		if (!json_is_object(so) || get_bool(p, so, "include_usage", &p->include_usage) < 0)
			return bad(p, 400, "stream_options",
			           "'stream_options' must be an object like {\"include_usage\": true}");
	}
	json_t *user = json_object_get(root, "user");
	if (user && !json_is_null(user) && !json_is_string(user))
		return bad(p, 400, "user", "'user' must be a string");
	/* logprobs: completions take a count of alternatives; chat takes a flag and top_logprobs. */
	json_t *lp = json_object_get(root, "logprobs");
	if (api == HTTP_API_COMPLETIONS) {
		json_int_t k = -1;
		if (json_is_boolean(lp))
			k = json_is_true(lp) ? 0 : -1;
		else if (get_int(p, root, "logprobs", 0, SAMPLER_MAX_LOGPROBS, &k) < 0)
			return -1;
		p->logprobs = k >= 0;
		p->top_logprobs = k > 0 ? (int)k : 0;
	} else {
		json_int_t k = 0;
		if (get_bool(p, root, "logprobs", &p->logprobs) < 0 ||
		    get_int(p, root, "top_logprobs", 0, SAMPLER_MAX_LOGPROBS, &k) < 0)
			return -1;
		if (k > 0 && !p->logprobs)
			return bad(p, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
		p->top_logprobs = (int)k;
	}
	r->logprobs = p->logprobs;
	r->sampling.n_logprobs = p->top_logprobs;
	return 0;
}

/* ---- JSON pieces ------------------------------------------------------------------------- */

/* A token's text for logprobs: its bytes when they are UTF-8, else "bytes:\xNN..." (as OpenAI
 * does), or "token_id:N" when the request asked for ids. */
static json_t *token_string(const struct http_gen *g, int32_t id)
{
	char buf[160];
	size_t len = 0;

	if (g->tokens_as_ids) {
		snprintf(buf, sizeof(buf), "token_id:%d", id);
		return json_string(buf);
	}
	const char *t = tok_token_piece(g->model->tok, id, TOK_DECODE_SPECIAL, &len);
	if (!t)
		return json_string("");
	json_t *s = json_stringn(t, len);
	if (s)
		return s;
	size_t o = (size_t)snprintf(buf, sizeof(buf), "bytes:");
	for (size_t i = 0; i < len && o + 5 < sizeof(buf); i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\\x%02x", (unsigned char)t[i]);
	return json_string(buf);
}

static json_t *token_bytes(const struct http_gen *g, int32_t id)
{
	size_t len = 0;
	const char *t = tok_token_piece(g->model->tok, id, TOK_DECODE_SPECIAL, &len);
	json_t *a = json_array();
	for (size_t i = 0; t && a && i < len; i++)
		json_array_append_new(a, json_integer((unsigned char)t[i]));
	return a;
}

/* Appends one token's logprobs to lp (completions: parallel arrays; chat: content[]). */
static void add_logprobs(struct http_gen *g, json_t *lp, const struct gen_piece *p)
{
	if (g->api == HTTP_API_COMPLETIONS) {
		json_t *top = json_object();
		for (uint32_t i = 0; top && i < p->n_top; i++) {
			json_t *k = token_string(g, p->top[i].id);
			if (k)
				json_object_set_new(top, json_string_value(k), json_real(p->top[i].logprob));
			json_decref(k);
		}
		json_array_append_new(json_object_get(lp, "tokens"), token_string(g, p->token));
		json_array_append_new(json_object_get(lp, "token_logprobs"), json_real(p->logprob));
		json_array_append_new(json_object_get(lp, "top_logprobs"), top);
		json_array_append_new(json_object_get(lp, "text_offset"),
		                      json_integer((json_int_t)g->text_offset));
		return;
	}
	json_t *top = json_array();
	for (uint32_t i = 0; top && i < p->n_top; i++)
		json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token",
		                                     token_string(g, p->top[i].id), "logprob",
		                                     (double)p->top[i].logprob, "bytes",
		                                     token_bytes(g, p->top[i].id)));
	json_array_append_new(json_object_get(lp, "content"),
	                      json_pack("{s:o, s:f, s:o, s:o}", "token", token_string(g, p->token),
	                                "logprob", (double)p->logprob, "bytes",
	                                token_bytes(g, p->token), "top_logprobs", top));
}

static json_t *new_logprobs(enum http_api api)
{
	if (api == HTTP_API_COMPLETIONS)
		return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs",
		                 "top_logprobs", "text_offset");
	return json_pack("{s:[]}", "content");
}

/* One choice: text (completions) or message / delta (chat). Takes lp over (NULL: null). */
static json_t *choice(const struct http_gen *g, const char *text, size_t len, json_t *lp,
                      const char *finish, bool role)
{
	json_t *c, *t = json_stringn(text, len);

	if (!t)
		t = json_string("");
	if (g->api == HTTP_API_COMPLETIONS) {
		c = json_pack("{s:i, s:o, s:o, s:s?}", "index", 0, "text", t, "logprobs",
		              lp ? lp : json_null(), "finish_reason", finish);
	} else {
		json_t *msg = json_pack("{s:o}", "content", t);
		if (msg && (role || !g->stream))
			json_object_set_new(msg, "role", json_string("assistant"));
		if (msg && g->stream && finish && !len)
			json_object_clear(msg); /* the last chunk's delta is {} */
		c = json_pack("{s:i, s:o, s:o, s:s?}", "index", 0, g->stream ? "delta" : "message",
		              msg ? msg : json_object(), "logprobs", lp ? lp : json_null(),
		              "finish_reason", finish);
	}
	if (c && !finish)
		json_object_set_new(c, "finish_reason", json_null());
	return c;
}

/* {id, object, created, model, choices: [choice]} (choice NULL: an empty choices list). */
static json_t *envelope(const struct http_gen *g, json_t *ch)
{
	const char *object = g->api == HTTP_API_COMPLETIONS ? "text_completion"
	                     : g->stream                    ? "chat.completion.chunk"
	                                                    : "chat.completion";
	json_t *choices = json_array();
	if (ch)
		json_array_append_new(choices, ch);
	return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", g->id, "object", object, "created",
	                 g->created, "model", g->model->cfg->name, "choices", choices);
}

static json_t *usage_json(const struct gen_end *e)
{
	return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", (int)e->prompt_tokens,
	                 "completion_tokens", (int)e->completion_tokens, "total_tokens",
	                 (int)(e->prompt_tokens + e->completion_tokens), "prompt_tokens_details",
	                 "cached_tokens", (int)e->cached_tokens);
}

static const char *finish_name(enum llm_finish f)
{
	switch (f) {
	case LLM_FINISH_STOP: return "stop";
	case LLM_FINISH_LENGTH: return "length";
	case LLM_FINISH_CANCELLED: return "cancelled";
	default: return "error";
	}
}

static int status_of(enum gen_status st)
{
	switch (st) {
	case GEN_INVALID_ARGUMENT: return 400;
	case GEN_NOT_FOUND: return 404;
	case GEN_RESOURCE_EXHAUSTED: return 429;
	default: return 500;
	}
}

/* ---- the stream -------------------------------------------------------------------------- */

static enum metrics_endpoint ep_of(const struct http_gen *g)
{
	return g->api == HTTP_API_CHAT ? METRICS_EP_CHAT : METRICS_EP_COMPLETIONS;
}

/* Sends one server-sent event: "data: JSON\n\n" (body NULL: "data: [DONE]\n\n"). Takes body. */
static void send_event(struct http_gen *g, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

	json_decref(body);
	if (body && !text)
		return;
	evbuffer_add_printf(g->out, "data: %s\n\n", text ? text : "[DONE]");
	free(text);
	evhttp_send_reply_chunk(g->req, g->out); /* drains g->out; a no-op once the peer left */
}

static void start_stream(struct http_gen *g)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(g->req);

	if (g->state == HTTP_GEN_STREAMING)
		return;
	evhttp_add_header(h, "Content-Type", "text/event-stream");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_send_reply_start(g->req, 200, "OK");
	g->state = HTTP_GEN_STREAMING;
	if (g->api == HTTP_API_CHAT) {
		json_t *first = envelope(g, choice(g, "", 0, NULL, NULL, true));
		if (first && g->include_usage)
			json_object_set_new(first, "usage", json_null());
		send_event(g, first);
	}
}

/* Unlinks g from the server and its connection and frees it; the drain may go on after. */
static void gen_release(struct http_gen *g)
{
	struct http_server *hs = g->hs;

	if (g->prev)
		g->prev->next = g->next;
	else
		hs->gens = g->next;
	if (g->next)
		g->next->prev = g->prev;
	hs->n_gens--;
	if (g->conn) {
		g->conn->gen = NULL;
		evhttp_connection_set_timeout_tv(g->conn->evcon, &hs->timeout);
	}
	if (g->out)
		evbuffer_free(g->out);
	json_decref(g->lp);
	free(g);
	if (!hs->closing)
		server_call_ended(hs->srv);
}

/* Ends a stream that already started: a last event (may be NULL), [DONE], the last chunk. */
static void end_stream(struct http_gen *g, json_t *last, int status)
{
	struct evhttp_request *req = g->req;
	struct http_server *hs = g->hs;

	if (last)
		send_event(g, last);
	send_event(g, NULL);
	metrics_count_http(hs->srv->metrics, ep_of(g), status);
	gen_release(g);
	evhttp_send_reply_end(req); /* may free the connection: g is gone already */
}

static void on_piece(const struct gen_piece *p, void *arg)
{
	struct http_gen *g = arg;
	json_t *lp = NULL;

	if (g->logprobs) {
		lp = g->stream ? new_logprobs(g->api) : json_incref(g->lp);
		if (lp)
			add_logprobs(g, lp, p);
		if (!g->stream)
			json_decref(lp);
	}
	g->text_offset += p->len;
	if (!g->stream) {
		evbuffer_add(g->out, p->text, p->len);
		return;
	}
	start_stream(g);
	json_t *ev = envelope(g, choice(g, p->text, p->len, lp, NULL, false));
	if (ev && g->include_usage)
		json_object_set_new(ev, "usage", json_null());
	send_event(g, ev);
}

static void on_end(const struct gen_end *e, void *arg)
{
	struct http_gen *g = arg;
	struct http_server *hs = g->hs;
	struct evhttp_request *req = g->req;

	g->gen = NULL; /* gone */
	if (e->status != GEN_OK) {
		int status = status_of(e->status);
		const char *code = status == 429 ? "queue_full" : NULL;
		if (g->state == HTTP_GEN_STREAMING) {
			end_stream(g, http_error_json(status, NULL, NULL, code, e->message), status);
			return;
		}
		enum metrics_endpoint ep = ep_of(g);
		gen_release(g);
		http_reply_error(hs, req, status, NULL, NULL, code, ep, "%s", e->message);
		return;
	}
	const char *finish = finish_name(e->finish);
	if (g->stream) {
		start_stream(g);
		json_t *last = envelope(g, choice(g, e->text, e->len, NULL, finish, false));
		if (last && g->include_usage)
			json_object_set_new(last, "usage", json_null());
		send_event(g, last);
		json_t *usage = NULL;
		if (g->include_usage && (usage = envelope(g, NULL)))
			json_object_set_new(usage, "usage", usage_json(e));
		end_stream(g, usage, 200);
		return;
	}
	evbuffer_add(g->out, e->text, e->len);
	size_t n = evbuffer_get_length(g->out);
	const char *text = (const char *)evbuffer_pullup(g->out, -1);
	json_t *body = envelope(g, choice(g, text ? text : "", text ? n : 0,
	                                  g->logprobs ? json_incref(g->lp) : NULL, finish, false));
	if (body)
		json_object_set_new(body, "usage", usage_json(e));
	enum metrics_endpoint ep = ep_of(g);
	gen_release(g);
	http_reply_json(hs, req, body ? 200 : 500, body, ep);
}

static const struct gen_sink http_sink = { .piece = on_piece, .end = on_end };

void http_gen_client_gone(struct http_gen *g)
{
	struct evhttp_request *req = g->req;
	bool detached = evhttp_request_get_connection(req) == NULL;

	generation_abandon(g->gen);
	g->gen = NULL;
	g->conn = NULL; /* being freed */
	metrics_count_http(g->hs->srv->metrics, ep_of(g), 499);
	log_debug("http: %s: the client went away; generation abandoned", g->id);
	gen_release(g);
	/* evhttp hands a request it detached from a failed connection back to its owner. */
	if (detached)
		evhttp_request_free(req);
}

void http_gen_abort(struct http_gen *g, bool reply)
{
	struct http_server *hs = g->hs;
	struct evhttp_request *req = g->req;

	generation_abandon(g->gen);
	g->gen = NULL;
	if (!reply) {
		gen_release(g);
		return;
	}
	if (g->state == HTTP_GEN_STREAMING) {
		end_stream(g, http_error_json(503, NULL, NULL, "draining", "the daemon shut down "
		                              "before the generation finished"), 503);
		return;
	}
	enum metrics_endpoint ep = ep_of(g);
	gen_release(g);
	http_reply_error(hs, req, 503, NULL, NULL, "draining", ep,
	                 "the daemon shut down before the generation finished");
}

/* ---- the request ------------------------------------------------------------------------- */

void http_generate(struct http_server *hs, struct http_conn *conn, struct evhttp_request *req,
                   enum http_api api)
{
	enum metrics_endpoint ep = api == HTTP_API_CHAT ? METRICS_EP_CHAT : METRICS_EP_COMPLETIONS;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *body = (const char *)evbuffer_pullup(in, -1);
	struct parsed p = { 0 };
	struct http_gen *g = NULL;
	json_error_t jerr;
	json_t *root = NULL;
	char msg[512];

	root = body ? json_loadb(body, len, 0, &jerr) : NULL;
	if (!root) {
		http_reply_error(hs, req, 400, NULL, NULL, "invalid_json", ep,
		                 "the body is not valid JSON: %s", body ? jerr.text : "empty body");
		return;
	}
	if (!json_is_object(root)) {
		http_reply_error(hs, req, 400, NULL, NULL, "invalid_json", ep,
		                 "the body must be a JSON object");
		goto out;
	}
	json_t *mv = json_object_get(root, "model");
	if (mv && !json_is_string(mv)) {
		http_reply_error(hs, req, 400, NULL, "model", NULL, ep, "'model' must be a string");
		goto out;
	}
	const struct served_model *m = generation_find_model(hs->srv, json_string_value(mv));
	if (!m) {
		http_reply_error(hs, req, 404, NULL, "model", "model_not_found", ep,
		                 "the model '%s' does not exist%s", mv ? json_string_value(mv) : "",
		                 hs->srv->n_models ? "" : " (this daemon serves no model)");
		goto out;
	}
	uint64_t id = hs->next_id++;
	if (parse_request(&p, root, api, m, id) < 0) {
		http_reply_error(hs, req, p.status, NULL, p.param, p.code, ep, "%s", p.msg);
		goto out;
	}
	g = calloc(1, sizeof(*g));
	if (!g || !(g->out = evbuffer_new()) ||
	    (p.logprobs && !p.stream && !(g->lp = new_logprobs(api)))) {
		http_reply_error(hs, req, 500, NULL, NULL, NULL, ep, "out of memory");
		goto out;
	}
	g->hs = hs;
	g->conn = conn;
	g->req = req;
	g->model = m;
	g->api = api;
	g->stream = p.stream;
	g->include_usage = p.stream && p.include_usage;
	g->logprobs = p.logprobs;
	g->tokens_as_ids = p.tokens_as_ids;
	g->top_logprobs = p.top_logprobs;
	g->created = (json_int_t)time(NULL);
	snprintf(g->id, sizeof(g->id), "%s-%llx%08llx", api == HTTP_API_CHAT ? "chatcmpl" : "cmpl",
	         (unsigned long long)g->created, (unsigned long long)id);
	enum gen_status gs = generation_start(hs->srv, &p.r, &http_sink, g, &g->gen, msg,
	                                      sizeof(msg));
	if (gs != GEN_OK) {
		int status = status_of(gs);
		http_reply_error(hs, req, status, NULL, status == 404 ? "model" : NULL,
		                 status == 429 ? "queue_full" : NULL, ep, "%s", msg);
		goto out;
	}
	/* Generating may take longer than the idle timeout: the client is waiting, not idle. */
	struct timeval day = { .tv_sec = 86400, .tv_usec = 0 };
	evhttp_connection_set_timeout_tv(conn->evcon, &day);
	conn->gen = g;
	g->next = hs->gens;
	if (hs->gens)
		hs->gens->prev = g;
	hs->gens = g;
	hs->n_gens++;
	g = NULL;
out:
	if (g) {
		if (g->out)
			evbuffer_free(g->out);
		json_decref(g->lp);
		free(g);
	}
	parsed_fini(&p);
	json_decref(root);
}
