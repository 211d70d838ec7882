/* Private structures of the HTTP API (http.c: listener, connections, routing, replies;
 * http_completions.c: the generation endpoints). Loop thread only. */
#ifndef INFERD_SERVER_HTTP_INTERNAL_H
#define INFERD_SERVER_HTTP_INTERNAL_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "metrics.h"

struct http_gen;
struct http_img;

/* A client connection that has sent at least one request. evhttp owns the evhttp_connection;
 * this is freed in its close callback (nothing of evhttp's refers to it afterwards). */
struct http_conn {
	struct http_server *hs;
	struct evhttp_connection *evcon;
	struct http_gen *gen;          /* the generation request it is waiting on, if any */
	struct http_img *img;          /* or the image request */
	struct http_conn *prev, *next;
};

struct http_server {
	struct inferd_server *srv;
	struct evhttp *evh;
	struct evhttp_bound_socket *sock;
	struct timeval timeout;        /* reading requests, idle keep-alive */
	struct http_conn *conns;
	unsigned n_conns;
	struct http_gen *gens;         /* generation requests in flight */
	size_t n_gens;
	struct http_img *imgs;         /* image requests in flight */
	size_t n_imgs;
	uint64_t next_id;              /* for response ids */
	bool closing;                  /* http_server_free() is running */
};

enum http_api {
	HTTP_API_COMPLETIONS,
	HTTP_API_CHAT,
};

/* ---- replies (http.c) -------------------------------------------------------------------- */

/* Sends body (taken over; NULL sends {}) with status, and counts it. req is answered after. */
void http_reply_json(struct http_server *hs, struct evhttp_request *req, int status,
                     json_t *body, enum metrics_endpoint ep);
/* Sends an OpenAI-style error {"error": {message, type, param, code}}. param, code may be NULL;
 * type NULL picks the usual one for status. */
void http_reply_error(struct http_server *hs, struct evhttp_request *req, int status,
                      const char *type, const char *param, const char *code,
                      enum metrics_endpoint ep, const char *fmt, ...)
	__attribute__((format(printf, 8, 9)));
/* The error object alone (for a stream's error event). @return a new reference or NULL. */
json_t *http_error_json(int status, const char *type, const char *param, const char *code,
                        const char *message);

/* ---- generation endpoints (http_completions.c) ------------------------------------------- */

/* Parses and starts a completion; answers req now (an error) or when the generation ends. */
void http_generate(struct http_server *hs, struct http_conn *conn, struct evhttp_request *req,
                   enum http_api api);
/* The client went away: abandons the generation, frees g (and req once evhttp let go). */
void http_gen_client_gone(struct http_gen *g);
/* Drain timeout or shutdown: abandons the generation and answers 503 (or ends the stream). */
void http_gen_abort(struct http_gen *g, bool reply);

/* ---- image endpoint (http_images.c) ---------------------------------------------------- */

/* POST /v1/images/generations: answers req now (an error) or when the images are done. */
void http_images(struct http_server *hs, struct http_conn *conn, struct evhttp_request *req);
void http_img_client_gone(struct http_img *g);
void http_img_abort(struct http_img *g, bool reply);

#endif
