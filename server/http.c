/* The HTTP API's listener, connections, routing, authentication and replies (evhttp). */
#include "http.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "activation.h"
#include "auth.h"
#include "http-internal.h"
#include "log.h"
#include "metrics.h"
#include "models.h"
#include "server-internal.h"

/* ---- replies ----------------------------------------------------------------------------- */

static const char *reason_of(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

static const char *type_of(int status)
{
	switch (status) {
	case 401: return "authentication_error";
	case 404: return "not_found_error";
	case 429: return "rate_limit_error";
	case 500: return "server_error";
	case 503: return "service_unavailable_error";
	default: return "invalid_request_error";
	}
}

json_t *http_error_json(int status, const char *type, const char *param, const char *code,
                        const char *message)
{
	return json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", message, "type",
	                 type ? type : type_of(status), "param", param, "code", code);
}

void http_reply_json(struct http_server *hs, struct evhttp_request *req, int status,
                     json_t *body, enum metrics_endpoint ep)
{
	struct evbuffer *out = evbuffer_new();
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

	json_decref(body);
	metrics_count_http(hs->srv->metrics, ep, status);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "application/json");
	if (out) {
		evbuffer_add_printf(out, "%s\n", text ? text : "{}");
		if (status == 401)
			evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
			                  "Bearer");
	}
	/* May free the connection (Connection: close): nothing of it is used after. */
	evhttp_send_reply(req, status, reason_of(status), out);
	if (out)
		evbuffer_free(out);
	free(text);
}

void http_reply_error(struct http_server *hs, struct evhttp_request *req, int status,
                      const char *type, const char *param, const char *code,
                      enum metrics_endpoint ep, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	http_reply_json(hs, req, status, http_error_json(status, type, param, code, msg), ep);
}

/* ---- connections ------------------------------------------------------------------------- */

static struct http_conn *conn_find(struct http_server *hs, struct evhttp_connection *evcon)
{
	/* Linear: at most max_connections, and only looked up once per request. */
	for (struct http_conn *c = hs->conns; c; c = c->next)
		if (c->evcon == evcon)
			return c;
	return NULL;
}

/* evhttp is freeing the connection (the peer closed, a timeout, shutdown). */
static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
	struct http_conn *c = arg;
	struct http_server *hs = c->hs;

	(void)evcon;
	if (c->gen)
		http_gen_client_gone(c->gen); /* clears c->gen */
	if (c->img)
		http_img_client_gone(c->img); /* clears c->img */
	if (c->prev)
		c->prev->next = c->next;
	else
		hs->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	hs->n_conns--;
	free(c);
}

static struct http_conn *conn_track(struct http_server *hs, struct evhttp_connection *evcon)
{
	struct http_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->hs = hs;
	c->evcon = evcon;
	c->next = hs->conns;
	if (hs->conns)
		hs->conns->prev = c;
	hs->conns = c;
	hs->n_conns++;
	evhttp_connection_set_closecb(evcon, on_conn_close, c);
	return c;
}

/* ---- authentication ---------------------------------------------------------------------- */

static const char *bearer_of(struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return h;
}

static bool peer_is_loopback(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	char *addr = NULL;
	ev_uint16_t port = 0;

	if (!evcon)
		return false;
	evhttp_connection_get_peer(evcon, &addr, &port);
	return addr && (strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
	                strncmp(addr, "::ffff:127.", 11) == 0);
}

static bool authorized(struct http_server *hs, struct evhttp_request *req, bool metrics)
{
	const struct http_config *hc = &hs->srv->cfg->http;
	const char *key = bearer_of(req);

	if (metrics) {
		if (hc->metrics_key)
			return key && auth_ct_equal(key, strlen(key), hc->metrics_key,
			                            strlen(hc->metrics_key));
		if (hc->open_metrics_on_loopback && peer_is_loopback(req))
			return true;
	}
	return auth_is_open(hs->srv->auth) || auth_check(hs->srv->auth, key);
}

/* ---- simple endpoints -------------------------------------------------------------------- */

static void get_health(struct http_server *hs, struct evhttp_request *req)
{
	http_reply_json(hs, req, 200, json_pack("{s:s}", "status", "ok"), METRICS_EP_HEALTH);
}

static void get_ready(struct http_server *hs, struct evhttp_request *req)
{
	struct inferd_server *srv = hs->srv;

	if (srv->state != SERVER_STATE_SERVING) {
		http_reply_error(hs, req, 503, NULL, NULL, "draining", METRICS_EP_READY,
		                 "the daemon is draining");
		return;
	}
	if (srv->n_models + srv->n_images == 0) {
		http_reply_error(hs, req, 503, NULL, NULL, "no_models", METRICS_EP_READY,
		                 "no model is loaded");
		return;
	}
	http_reply_json(hs, req, 200, json_pack("{s:s, s:I}", "status", "ready", "models",
	                                        (json_int_t)(srv->n_models + srv->n_images)),
	                METRICS_EP_READY);
}

static json_t *model_json(const struct inferd_server *srv, const struct served_model *m)
{
	time_t created = time(NULL) - (time_t)(server_now() - srv->started);
	return json_pack("{s:s, s:s, s:I, s:s, s:I}", "id", m->cfg->name, "object", "model",
	                 "created", (json_int_t)created, "owned_by", "inferd", "max_model_len",
	                 (json_int_t)m->max_context);
}

static json_t *image_model_json(const struct inferd_server *srv, const struct served_image *m)
{
	time_t created = time(NULL) - (time_t)(server_now() - srv->started);
	char size[32];
	snprintf(size, sizeof size, "%dx%d", m->info.default_width, m->info.default_height);
	return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "id", m->cfg->name, "object", "model",
	                 "created", (json_int_t)created, "owned_by", "inferd", "kind", "image",
	                 "default_size", size);
}

static void get_models(struct http_server *hs, struct evhttp_request *req, const char *one)
{
	struct inferd_server *srv = hs->srv;
	json_t *data = json_array();

	if (one) {
		json_decref(data);
		for (size_t i = 0; i < srv->n_models; i++) {
			if (strcmp(srv->models[i].cfg->name, one) == 0) {
				http_reply_json(hs, req, 200, model_json(srv, &srv->models[i]),
				                METRICS_EP_MODELS);
				return;
			}
		}
		for (size_t i = 0; i < srv->n_images; i++) {
			if (strcmp(srv->images[i].cfg->name, one) == 0) {
				http_reply_json(hs, req, 200, image_model_json(srv, &srv->images[i]),
				                METRICS_EP_MODELS);
				return;
			}
		}
		http_reply_error(hs, req, 404, NULL, "model", "model_not_found", METRICS_EP_MODELS,
		                 "the model '%s' does not exist", one);
		return;
	}
	for (size_t i = 0; data && i < srv->n_models; i++)
		json_array_append_new(data, model_json(srv, &srv->models[i]));
	for (size_t i = 0; data && i < srv->n_images; i++)
		json_array_append_new(data, image_model_json(srv, &srv->images[i]));
	http_reply_json(hs, req, 200, json_pack("{s:s, s:o*}", "object", "list", "data", data),
	                METRICS_EP_MODELS);
}

static void get_metrics(struct http_server *hs, struct evhttp_request *req)
{
	struct evbuffer *out = evbuffer_new();

	if (!out || metrics_render(hs->srv, out) < 0) {
		if (out)
			evbuffer_free(out);
		http_reply_error(hs, req, 500, NULL, NULL, NULL, METRICS_EP_METRICS, "out of memory");
		return;
	}
	metrics_count_http(hs->srv->metrics, METRICS_EP_METRICS, 200);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

/* ---- routing ----------------------------------------------------------------------------- */

static enum metrics_endpoint endpoint_of(const char *path)
{
	if (strcmp(path, "/v1/completions") == 0)
		return METRICS_EP_COMPLETIONS;
	if (strcmp(path, "/v1/chat/completions") == 0)
		return METRICS_EP_CHAT;
	if (strcmp(path, "/v1/images/generations") == 0)
		return METRICS_EP_IMAGES;
	if (strcmp(path, "/v1/models") == 0 || strncmp(path, "/v1/models/", 11) == 0)
		return METRICS_EP_MODELS;
	if (strcmp(path, "/health") == 0)
		return METRICS_EP_HEALTH;
	if (strcmp(path, "/ready") == 0)
		return METRICS_EP_READY;
	if (strcmp(path, "/metrics") == 0)
		return METRICS_EP_METRICS;
	return METRICS_EP_OTHER;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct http_server *hs = arg;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct http_conn *c;

	if (!evhttp_request_get_uri(req) || !uri) {
		http_reply_error(hs, req, 400, NULL, NULL, NULL, METRICS_EP_OTHER,
		                 "malformed HTTP request");
		return;
	}
	const char *path = evhttp_uri_get_path(uri);
	path = path ? path : "/";
	enum metrics_endpoint ep = endpoint_of(path);

	c = evcon ? conn_find(hs, evcon) : NULL;
	if (!c) {
		if (hs->n_conns >= hs->srv->cfg->http.max_connections) {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
			http_reply_error(hs, req, 503, NULL, NULL, "too_many_connections", ep,
			                 "too many connections (max_connections = %u)",
			                 hs->srv->cfg->http.max_connections);
			return;
		}
		if (!evcon || !(c = conn_track(hs, evcon))) {
			http_reply_error(hs, req, 500, NULL, NULL, NULL, ep, "out of memory");
			return;
		}
		/* Streamed chunks are small: without this, Nagle's algorithm holds them until the
		 * client's delayed ACK (bursts of ~40 ms between tokens). */
		struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
		evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
		int one = 1;
		if (fd >= 0)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) >
	    hs->srv->cfg->http.max_body_bytes) {
		http_reply_error(hs, req, 413, NULL, NULL, "request_too_large", ep,
		                 "the body exceeds max_body_bytes (%zu)",
		                 hs->srv->cfg->http.max_body_bytes);
		return;
	}
	bool get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
	bool post = cmd == EVHTTP_REQ_POST;

	if (ep == METRICS_EP_OTHER) {
		http_reply_error(hs, req, 404, NULL, NULL, "not_found", ep, "no route for %s", path);
		return;
	}
	bool want_post = ep == METRICS_EP_COMPLETIONS || ep == METRICS_EP_CHAT ||
	                 ep == METRICS_EP_IMAGES;
	if ((want_post && !post) || (!want_post && !get)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
		                  want_post ? "POST" : "GET, HEAD");
		http_reply_error(hs, req, 405, NULL, NULL, "method_not_allowed", ep,
		                 "%s takes %s", path, want_post ? "POST" : "GET");
		return;
	}
	if (ep == METRICS_EP_HEALTH) {
		get_health(hs, req);
		return;
	}
	if (ep == METRICS_EP_READY) {
		get_ready(hs, req);
		return;
	}
	if (!authorized(hs, req, ep == METRICS_EP_METRICS)) {
		http_reply_error(hs, req, 401, NULL, NULL, "invalid_api_key", ep,
		                 bearer_of(req) ? "the API key is not valid"
		                                : "an API key is required (Authorization: Bearer KEY)");
		return;
	}
	switch (ep) {
	case METRICS_EP_METRICS:
		get_metrics(hs, req);
		return;
	case METRICS_EP_MODELS:
		get_models(hs, req, strncmp(path, "/v1/models/", 11) == 0 ? path + 11 : NULL);
		return;
	case METRICS_EP_COMPLETIONS:
	case METRICS_EP_CHAT:
		if (hs->srv->state != SERVER_STATE_SERVING) {
			http_reply_error(hs, req, 503, NULL, NULL, "draining", ep,
			                 "the daemon is shutting down: retry on another instance");
			return;
		}
		http_generate(hs, c, req, ep == METRICS_EP_CHAT ? HTTP_API_CHAT : HTTP_API_COMPLETIONS);
		return;
	case METRICS_EP_IMAGES:
		if (hs->srv->state != SERVER_STATE_SERVING) {
			http_reply_error(hs, req, 503, NULL, NULL, "draining", ep,
			                 "the daemon is shutting down: retry on another instance");
			return;
		}
		http_images(hs, c, req);
		return;
	default:
		http_reply_error(hs, req, 404, NULL, NULL, "not_found", ep, "no route for %s", path);
		return;
	}
}

/* ---- lifecycle --------------------------------------------------------------------------- */

/* @return 0 when a passed socket named 'http' now serves the API; -ENOENT when none was
 * passed (or it was unusable: logged); another negative errno with a message. */
static int http_adopt_activated(struct http_server *hs, char *err, size_t errlen)
{
	const struct inferd_config *cfg = hs->srv->cfg;
	char addr[256];
	int fd = activation_take("http", ACTIVATION_ANY_STREAM, err, errlen);

	if (fd == -EPROTOTYPE) {
		log_error("%s: serving HTTP on %s instead", err, cfg->http.listen);
		return -ENOENT;
	}
	if (fd < 0)
		return fd;
	activation_describe(fd, addr, sizeof(addr), NULL, 0);
	/* The same rule as for [http] listen (config.c), applied to the address systemd bound. */
	if (activation_is_remote_inet(fd) && !cfg->api_keys.n && !cfg->api_key_file &&
	    !cfg->allow_insecure_remote) {
		snprintf(err, errlen, "refusing to serve HTTP on the passed socket %s: it is not a "
		         "loopback address and no API keys are configured (set [auth] api_key or "
		         "api_key_file, or [server] allow_insecure_remote = true)", addr);
		close(fd);
		return -EINVAL;
	}
	if (evutil_make_socket_nonblocking(fd) < 0 ||
	    !(hs->sock = evhttp_accept_socket_with_handle(hs->evh, fd))) {
		snprintf(err, errlen, "cannot serve HTTP on the passed socket %s", addr);
		close(fd);
		return -ENOMEM;
	}
	log_info("socket activation: adopted 'http' (%s); HTTP API on http://%s", addr, addr);
	return 0;
}

int http_server_new(struct inferd_server *srv, struct http_server **out, char *err,
                    size_t errlen)
{
	const struct http_config *hc = &srv->cfg->http;
	struct http_server *hs = calloc(1, sizeof(*hs));
	char host[256];
	int rc = -ENOMEM;

	*out = NULL;
	if (!hs) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	hs->srv = srv;
	hs->next_id = 1;
	hs->timeout.tv_sec = (time_t)hc->timeout_s;
	hs->timeout.tv_usec = (suseconds_t)((hc->timeout_s - (double)(time_t)hc->timeout_s) * 1e6);
	hs->evh = evhttp_new(srv->base);
	if (!hs->evh) {
		snprintf(err, errlen, "http: out of memory");
		goto fail;
	}
	/* Bodies up to twice the limit are read and refused with a JSON 413 here; evhttp refuses
	 * larger ones itself (413 with its own HTML body) without reading them. */
	evhttp_set_max_body_size(hs->evh, (ev_ssize_t)hc->max_body_bytes * 2);
	evhttp_set_max_headers_size(hs->evh, (ev_ssize_t)hc->max_header_bytes);
	evhttp_set_timeout_tv(hs->evh, &hs->timeout);
	evhttp_set_allowed_methods(hs->evh, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(hs->evh, on_request, hs);

	/* A socket passed by systemd (FileDescriptorName=http) replaces [http] listen. */
	rc = http_adopt_activated(hs, err, errlen);
	if (rc == 0) {
		*out = hs;
		return 0;
	}
	if (rc != -ENOENT)
		goto fail;
	rc = -ENOMEM;

	/* HOST:PORT, [V6]:PORT */
	const char *colon = strrchr(hc->listen, ':');
	size_t n = colon ? (size_t)(colon - hc->listen) : 0;
	if (!colon || n >= sizeof(host)) {
		snprintf(err, errlen, "http listen address '%s' must be HOST:PORT", hc->listen);
		rc = -EINVAL;
		goto fail;
	}
	memcpy(host, hc->listen, n);
	host[n] = '\0';
	if (host[0] == '[' && n >= 2 && host[n - 1] == ']') {
		memmove(host, host + 1, n - 2);
		host[n - 2] = '\0';
	}
	int port = atoi(colon + 1);
	hs->sock = evhttp_bind_socket_with_handle(hs->evh, host, (ev_uint16_t)port);
	if (!hs->sock) {
		int e = errno ? errno : EADDRINUSE;
		snprintf(err, errlen, "cannot serve HTTP on %s: %s", hc->listen, strerror(e));
		rc = -e;
		goto fail;
	}
	log_info("HTTP API on http://%s", hc->listen);
	*out = hs;
	return 0;
fail:
	http_server_free(hs);
	return rc;
}

void http_server_free(struct http_server *hs)
{
	if (!hs)
		return;
	hs->closing = true;
	while (hs->gens)
		http_gen_abort(hs->gens, false);
	while (hs->imgs)
		http_img_abort(hs->imgs, false);
	/* Frees every connection; their close callbacks free the http_conns. */
	if (hs->evh)
		evhttp_free(hs->evh);
	while (hs->conns) { /* any evhttp did not call back for */
		struct http_conn *c = hs->conns;
		hs->conns = c->next;
		free(c);
	}
	free(hs);
}

size_t http_server_busy(const struct http_server *hs)
{
	return hs ? hs->n_gens + hs->n_imgs : 0;
}

void http_server_abort_all(struct http_server *hs)
{
	while (hs && hs->gens)
		http_gen_abort(hs->gens, true);
	while (hs && hs->imgs)
		http_img_abort(hs->imgs, true);
}
