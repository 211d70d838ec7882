/* Prometheus metrics: latency histograms fed by every generation (native protocol and HTTP),
 * HTTP request counters, and gauges and counters read from the model workers at scrape time.
 * Loop thread only. */
#ifndef INFERD_SERVER_METRICS_H
#define INFERD_SERVER_METRICS_H

#include <stddef.h>

struct evbuffer;
struct gen_end;
struct inferd_server;
struct metrics;

/* The HTTP endpoints counted in inferd_http_requests_total. */
enum metrics_endpoint {
	METRICS_EP_COMPLETIONS,
	METRICS_EP_CHAT,
	METRICS_EP_MODELS,
	METRICS_EP_HEALTH,
	METRICS_EP_READY,
	METRICS_EP_METRICS,
	METRICS_EP_IMAGES,
	METRICS_EP_OTHER,
	METRICS_EP_COUNT,
};

/* @return 0 and *out (free with metrics_free()), or -ENOMEM. */
int metrics_new(struct metrics **out);
void metrics_free(struct metrics *m);

/* Records one finished generation (any front end): latencies, finish reason. srv->metrics may
 * be NULL (then nothing is recorded). */
void metrics_observe_generation(struct inferd_server *srv, const struct gen_end *e);

/* Counts one answered HTTP request (499: the client went away first). */
void metrics_count_http(struct metrics *m, enum metrics_endpoint ep, int http_status);

/* Appends the whole exposition (text format 0.0.4) to out. @return 0 or -ENOMEM. */
int metrics_render(struct inferd_server *srv, struct evbuffer *out);

#endif
