/* Prometheus metrics: histograms, counters, the text exposition. */
#include "metrics.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "generation.h"
#include "llm_worker.h"
#include "models.h"
#include "server-internal.h"

/* ---- histograms -------------------------------------------------------------------------- */

#define HIST_MAX_BUCKETS 24

struct histogram {
	const char *name;
	const char *help;
	const double *le;        /* upper bounds, ascending; +Inf is implicit */
	size_t n_le;
	uint64_t counts[HIST_MAX_BUCKETS]; /* per bucket, not cumulative */
	uint64_t count;
	double sum;
};

static const double ttft_le[] = { 0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                  0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0 };
static const double tpot_le[] = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                                  0.4, 0.5, 0.75, 1.0, 2.5 };
static const double e2e_le[] = { 0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0,
                                 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 300.0 };
static const double queue_le[] = { 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                   2.5, 5.0, 10.0, 30.0, 60.0 };

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void hist_observe(struct histogram *h, double v)
{
	size_t i = 0;
	while (i < h->n_le && v > h->le[i])
		i++;
	h->counts[i]++; /* i == n_le: the +Inf bucket */
	h->count++;
	h->sum += v;
}

/* ---- the registry ------------------------------------------------------------------------ */

enum { FINISH_STOP, FINISH_LENGTH, FINISH_CANCELLED, FINISH_ERROR, FINISH_SLOTS };
static const char *const finish_names[FINISH_SLOTS] = { "stop", "length", "cancelled", "error" };

static const char *const ep_names[METRICS_EP_COUNT] = {
	"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/ready", "/metrics",
	"/v1/images/generations", "other",
};

/* The statuses the HTTP API answers with; anything else counts as "other". */
static const int http_statuses[] = { 200, 400, 401, 404, 405, 413, 429, 499, 500, 501, 503 };
#define STATUS_SLOTS (N(http_statuses) + 1)

struct metrics {
	struct histogram ttft, tpot, e2e, queue;
	uint64_t finished[FINISH_SLOTS];
	uint64_t http[METRICS_EP_COUNT][STATUS_SLOTS];
};

int metrics_new(struct metrics **out)
{
	struct metrics *m = calloc(1, sizeof(*m));

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->ttft = (struct histogram){ .name = "inferd_time_to_first_token_seconds",
	                              .help = "Time from submission to the first generated token.",
	                              .le = ttft_le, .n_le = N(ttft_le) };
	m->tpot = (struct histogram){ .name = "inferd_time_per_output_token_seconds",
	                              .help = "Mean time between generated tokens, per request.",
	                              .le = tpot_le, .n_le = N(tpot_le) };
	m->e2e = (struct histogram){ .name = "inferd_e2e_request_latency_seconds",
	                             .help = "Time from submission to the end of the generation.",
	                             .le = e2e_le, .n_le = N(e2e_le) };
	m->queue = (struct histogram){ .name = "inferd_request_queue_time_seconds",
	                               .help = "Time a request waited before it was first scheduled.",
	                               .le = queue_le, .n_le = N(queue_le) };
	*out = m;
	return 0;
}

void metrics_free(struct metrics *m)
{
	free(m);
}

void metrics_observe_generation(struct inferd_server *srv, const struct gen_end *e)
{
	struct metrics *m = srv ? srv->metrics : NULL;

	if (!m)
		return;
	if (e->status != GEN_OK) {
		m->finished[FINISH_ERROR]++;
		return;
	}
	switch (e->finish) {
	case LLM_FINISH_STOP: m->finished[FINISH_STOP]++; break;
	case LLM_FINISH_LENGTH: m->finished[FINISH_LENGTH]++; break;
	case LLM_FINISH_CANCELLED: m->finished[FINISH_CANCELLED]++; break;
	default: m->finished[FINISH_ERROR]++; break;
	}
	hist_observe(&m->queue, e->queue_s);
	hist_observe(&m->e2e, e->total_s);
	if (e->completion_tokens > 0)
		hist_observe(&m->ttft, e->ttft_s);
	if (e->completion_tokens > 1)
		hist_observe(&m->tpot, e->tpot_s);
}

void metrics_count_http(struct metrics *m, enum metrics_endpoint ep, int http_status)
{
	size_t s = 0;

	if (!m)
		return;
	while (s < N(http_statuses) && http_statuses[s] != http_status)
		s++;
	m->http[ep < METRICS_EP_COUNT ? ep : METRICS_EP_OTHER][s]++;
}

/* ---- exposition -------------------------------------------------------------------------- */

static int head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	return evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type) < 0;
}

static int render_hist(struct evbuffer *b, const struct histogram *h)
{
	uint64_t cum = 0;
	int bad = head(b, h->name, "histogram", h->help);

	for (size_t i = 0; i < h->n_le; i++) {
		cum += h->counts[i];
		bad |= evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->le[i],
		                           (unsigned long long)cum) < 0;
	}
	bad |= evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n",
	                           h->name, (unsigned long long)h->count, h->name, h->sum, h->name,
	                           (unsigned long long)h->count) < 0;
	return bad;
}

/* One line per model of a figure read from the workers. */
#define PER_MODEL(NAME, TYPE, HELP, FMT, EXPR)                                                  \
	do {                                                                                    \
		bad |= head(b, NAME, TYPE, HELP);                                               \
		for (size_t i = 0; i < srv->n_models; i++) {                                    \
			const struct llm_worker_stats *w = &ws[i];                              \
			bad |= evbuffer_add_printf(b, NAME "{model=\"%s\"} " FMT "\n",          \
			                           srv->models[i].cfg->name, EXPR) < 0;         \
		}                                                                               \
	} while (0)

/* One line per image model of a figure read from its worker. */
#define PER_IMAGE(NAME, TYPE, HELP, FMT, EXPR)                                                  \
	do {                                                                                    \
		bad |= head(b, NAME, TYPE, HELP);                                               \
		for (size_t i = 0; i < srv->n_images; i++) {                                    \
			const struct image_worker_stats *w = &is[i];                            \
			bad |= evbuffer_add_printf(b, NAME "{model=\"%s\"} " FMT "\n",          \
			                           srv->images[i].cfg->name, EXPR) < 0;         \
		}                                                                               \
	} while (0)

static int render_images(struct inferd_server *srv, struct evbuffer *b)
{
	struct image_worker_stats is[CONFIG_MAX_MODELS];
	int bad = 0;

	if (!srv->n_images)
		return 0;
	for (size_t i = 0; i < srv->n_images && i < CONFIG_MAX_MODELS; i++)
		image_worker_stats(srv->images[i].worker, &is[i]);
	PER_IMAGE("inferd_image_requests_running", "gauge",
	          "Image requests in the stream batch.", "%u", w->running);
	PER_IMAGE("inferd_image_requests_waiting", "gauge",
	          "Image requests waiting for room in the stream batch.", "%u", w->queued);
	PER_IMAGE("inferd_image_requests_total", "counter", "Image requests finished.", "%llu",
	          (unsigned long long)w->finished);
	PER_IMAGE("inferd_image_requests_failed_total", "counter",
	          "Image requests that ended with an error.", "%llu",
	          (unsigned long long)w->failed);
	PER_IMAGE("inferd_images_generated_total", "counter", "Images generated.", "%llu",
	          (unsigned long long)w->images);
	PER_IMAGE("inferd_unet_calls_total", "counter",
	          "UNet forwards (one denoising step of the whole stream batch).", "%llu",
	          (unsigned long long)w->unet_calls);
	PER_IMAGE("inferd_unet_batch_items_total", "counter",
	          "Batch items the UNet forwards ran (divide by the calls: mean batch).", "%llu",
	          (unsigned long long)w->unet_items);
	PER_IMAGE("inferd_unet_seconds_total", "counter", "Time in UNet forwards.", "%.6f",
	          w->unet_s);
	PER_IMAGE("inferd_vae_decode_seconds_total", "counter", "Time in VAE decodes.", "%.6f",
	          w->decode_s);
	return bad;
}

int metrics_render(struct inferd_server *srv, struct evbuffer *b)
{
	struct metrics *m = srv->metrics;
	struct llm_worker_stats *ws = calloc(srv->n_models ? srv->n_models : 1, sizeof(*ws));
	int bad = 0;

	if (!ws || !m) {
		free(ws);
		return -ENOMEM;
	}
	for (size_t i = 0; i < srv->n_models; i++)
		llm_worker_stats(srv->models[i].worker, &ws[i]);

	bad |= render_hist(b, &m->ttft);
	bad |= render_hist(b, &m->tpot);
	bad |= render_hist(b, &m->e2e);
	bad |= render_hist(b, &m->queue);

	bad |= head(b, "inferd_generation_requests_total", "counter",
	            "Finished generations (all front ends) by finish reason.");
	for (int f = 0; f < FINISH_SLOTS; f++)
		bad |= evbuffer_add_printf(b, "inferd_generation_requests_total{finish_reason=\"%s\"} "
		                           "%llu\n", finish_names[f],
		                           (unsigned long long)m->finished[f]) < 0;

	bad |= head(b, "inferd_http_requests_total", "counter",
	            "HTTP requests answered, by endpoint and status (499: the client went away).");
	for (int e = 0; e < METRICS_EP_COUNT; e++) {
		for (size_t s = 0; s < STATUS_SLOTS; s++) {
			if (!m->http[e][s])
				continue;
			char st[8];
			if (s < N(http_statuses))
				snprintf(st, sizeof(st), "%d", http_statuses[s]);
			else
				snprintf(st, sizeof(st), "other");
			bad |= evbuffer_add_printf(b, "inferd_http_requests_total{endpoint=\"%s\","
			                           "status=\"%s\"} %llu\n", ep_names[e], st,
			                           (unsigned long long)m->http[e][s]) < 0;
		}
	}

	bad |= head(b, "inferd_models_loaded", "gauge", "Models served.");
	bad |= evbuffer_add_printf(b, "inferd_models_loaded %zu\n", srv->n_models + srv->n_images) < 0;
	PER_MODEL("inferd_requests_running", "gauge", "Sequences running in the batch.", "%u",
	          w->sched.running);
	PER_MODEL("inferd_requests_waiting", "gauge", "Requests waiting to be scheduled.", "%u",
	          w->sched.waiting);
	PER_MODEL("inferd_kv_cache_usage_ratio", "gauge",
	          "Fraction of the KV-cache blocks held by sequences (0 to 1).", "%.6f",
	          w->blocks.n_blocks ? (double)w->blocks.used / (double)w->blocks.n_blocks : 0.0);
	PER_MODEL("inferd_kv_cache_blocks_used", "gauge", "KV-cache blocks held by sequences.",
	          "%u", w->blocks.used);
	PER_MODEL("inferd_prompt_tokens_total", "counter",
	          "Prompt tokens processed (computed or found in the prefix cache).", "%llu",
	          (unsigned long long)(w->sched.prompt_tokens_computed + w->sched.prompt_tokens_cached));
	PER_MODEL("inferd_generation_tokens_total", "counter", "Tokens generated.", "%llu",
	          (unsigned long long)w->sched.tokens_generated);
	PER_MODEL("inferd_preemptions_total", "counter",
	          "Sequences preempted (KV blocks taken back) to make room.", "%llu",
	          (unsigned long long)w->sched.preemptions);
	PER_MODEL("inferd_prefix_cache_queries_total", "counter",
	          "Full prompt blocks looked up in the prefix cache.", "%llu",
	          (unsigned long long)w->blocks.prefix_queries);
	PER_MODEL("inferd_prefix_cache_hits_total", "counter",
	          "Full prompt blocks found in the prefix cache.", "%llu",
	          (unsigned long long)w->blocks.prefix_hits);
	PER_MODEL("inferd_requests_shed_total", "counter",
	          "Requests refused because the model's queue was full.", "%llu",
	          (unsigned long long)w->sched.shed);
	free(ws);
	bad |= render_images(srv, b);
	return bad ? -ENOMEM : 0;
}
