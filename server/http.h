/* The HTTP API: OpenAI-compatible /v1/completions, /v1/chat/completions and /v1/models, plus
 * /health, /ready and Prometheus /metrics, served by libevent's evhttp on the daemon's loop.
 * Loop thread only. Functions return 0 or a negative errno; constructors write a message. */
#ifndef INFERD_SERVER_HTTP_H
#define INFERD_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct inferd_server;
struct http_server;

/* Binds srv->cfg->http.listen on srv's loop. @return 0 and *out (free with http_server_free()),
 * or a negative errno with a message (an address in use, say). */
int http_server_new(struct inferd_server *srv, struct http_server **out, char *err,
                    size_t errlen);
/* Abandons generations in flight without answering, closes every connection. Accepts NULL. */
void http_server_free(struct http_server *h);

/* @return the generation requests in flight (the drain waits for them). NULL: 0. */
size_t http_server_busy(const struct http_server *h);
/* Drain timeout: ends every generation request in flight with 503 (or an error event on a
 * stream that already started). Accepts NULL. */
void http_server_abort_all(struct http_server *h);

#endif
