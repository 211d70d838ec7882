/* inferd-bench: a load generator for inferd's native protocol and OpenAI-compatible servers.
 *
 * Pieces (one file each): the workload (what each request asks), the arrivals (when requests
 * start: closed or open loop, driving a libevent loop), the targets (native protocol through
 * libinferd-client; OpenAI HTTP through evhttp), the stats (per-request records, percentiles)
 * and the report (table, JSON file, progress line).
 *
 * Conventions: functions return 0 or a negative errno, with a message in err where they take
 * one; constructors return the object through an out pointer; every _free accepts NULL.
 */
#ifndef INFERD_BENCH_H
#define INFERD_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;

/* ---- configuration --------------------------------------------------------------------- */

enum bench_dist { BENCH_DIST_FIXED, BENCH_DIST_UNIFORM, BENCH_DIST_NORMAL };
enum bench_sweep { BENCH_SWEEP_NONE, BENCH_SWEEP_CONCURRENCY, BENCH_SWEEP_RATE };

#define BENCH_MAX_SWEEP 32
#define BENCH_MAX_URLS 16

struct bench_config {
	const char *connect_url;       /* native target (default when no --openai): the first of */
	const char *connect_urls[BENCH_MAX_URLS]; /* every --connect, calls spread round robin */
	size_t n_connect;
	const char *openai_url;        /* OpenAI-compatible target, http://HOST:PORT[/v1] */
	const char *model;             /* "" = the daemon's only model */
	const char *api_key;
	uint32_t concurrency;          /* closed loop: clients (used when rate == 0) */
	double rate;                   /* open loop: requests/s; 0 = closed loop */
	double burstiness;             /* gamma shape of inter-arrival times; 1 = Poisson */
	uint64_t requests;             /* bound on requests sent; 0 = none */
	double duration_s;             /* bound on the time requests are sent; 0 = none */
	uint32_t input_len, output_len;
	enum bench_dist input_dist, output_dist;
	double range_ratio;            /* uniform: L*(1±r); normal: stddev L*r */
	const char *dataset;           /* JSONL file, or NULL */
	uint32_t shared_prefix;        /* tokens (or words) every prompt starts with */
	bool text_prompts;             /* prompts as text rather than token ids */
	uint32_t vocab_size;           /* token prompts draw ids below this */
	double slo_ttft_ms, slo_tpot_ms;  /* 0 = no SLO */
	double request_timeout_s;      /* per-request deadline */
	const char *json_path;
	enum bench_sweep sweep;
	double sweep_values[BENCH_MAX_SWEEP];
	size_t n_sweep;
	uint64_t seed;
	bool progress;                 /* a progress line on stderr */
};

/* ---- random numbers (bench-arrivals.c) ------------------------------------------------ */

struct bench_rng { uint64_t s[4]; };

void bench_rng_seed(struct bench_rng *r, uint64_t seed);
uint64_t bench_rng_next(struct bench_rng *r);
double bench_rng_uniform(struct bench_rng *r);            /* [0, 1) */
double bench_rng_normal(struct bench_rng *r);             /* mean 0, stddev 1 */
double bench_rng_gamma(struct bench_rng *r, double shape); /* scale 1 */

/* ---- workload (bench-workload.c) ------------------------------------------------------ */

struct bench_item {
	char *text;                    /* text prompt, or NULL for a token prompt */
	int32_t *ids;                  /* token prompt */
	uint32_t n_ids;
	uint32_t input_len;            /* tokens for token prompts; words/estimate for text */
	uint32_t output_len;           /* max_tokens asked (ignore_eos is set) */
};

struct bench_workload {
	struct bench_item *items;
	size_t n;                      /* requests cycle through the items */
};

/* Builds n items (a dataset gives its own lines, n ignored), drawing from the config's seed.
 * @return 0 and *out (free with bench_workload_free()), or a negative errno with err. */
int bench_workload_new(const struct bench_config *cfg, size_t n, struct bench_workload **out,
                       char *err, size_t errlen);
void bench_workload_free(struct bench_workload *w);

/* ---- per-request records and summaries (bench-stats.c) -------------------------------- */

#define BENCH_STATUS_LEN 40

struct bench_record {
	bool ok;
	char status[BENCH_STATUS_LEN]; /* "OK", "NOT_FOUND", "HTTP_500", "CONNECTION_FAILED"... */
	double start, first, end;      /* seconds on the monotonic clock; first = 0: no token */
	uint32_t input_tokens;         /* from usage, else the item's length */
	uint32_t output_tokens;        /* tokens received (streamed) */
	uint32_t usage_output_tokens;  /* completion tokens the server reported in usage */
	uint32_t chunks;               /* frames/chunks that carried tokens */
};

struct bench_stats;

int bench_stats_new(struct bench_stats **out);
void bench_stats_free(struct bench_stats *s);
/* Adds a finished request; itl: the gaps (s) between its token-carrying chunks. */
int bench_stats_add(struct bench_stats *s, const struct bench_record *r, const double *itl,
                    size_t n_itl);
size_t bench_stats_count(const struct bench_stats *s);

struct bench_dist_summary { double mean, median, p90, p99, min, max; size_t n; };

struct bench_summary {
	double duration_s;             /* first start to last end */
	uint64_t sent, ok, errors;
	uint64_t input_tokens, output_tokens, usage_output_tokens;
	double request_throughput, input_throughput, output_throughput;
	double goodput;                /* requests/s that were ok and met the SLOs */
	uint64_t good;
	struct bench_dist_summary ttft_ms, tpot_ms, itl_ms, e2e_ms;
	json_t *errors_by_status;      /* object: status -> count (owned) */
};

/* Summarises the records. @return 0 (free the summary with bench_summary_fini()). */
int bench_stats_summarize(const struct bench_stats *s, double slo_ttft_ms, double slo_tpot_ms,
                          struct bench_summary *out);
void bench_summary_fini(struct bench_summary *sum);

/* ---- calls in flight and targets ------------------------------------------------------ */

struct bench_run;

/* One request in flight. The target fills rec through bench_call_tokens/bench_call_done. */
struct bench_call {
	struct bench_run *run;
	const struct bench_item *item;
	struct bench_record rec;
	double last_token;             /* time of the last token-carrying chunk */
	double *itl;                   /* gaps between chunks (s) */
	size_t n_itl, cap_itl;
	void *target_data;             /* the target's own per-call state */
	struct bench_call *prev, *next;
};

/* Called by a target when a chunk brings n tokens (n may be 0 for a chunk without tokens). */
void bench_call_tokens(struct bench_call *call, uint32_t n);
/* Called by a target exactly once per call that submit() accepted; never from submit().
 * status: "OK" or an error name; usage fields 0 when unknown. The call is freed inside. */
void bench_call_done(struct bench_call *call, const char *status, uint32_t usage_prompt_tokens,
                     uint32_t usage_completion_tokens);

struct bench_target;

struct bench_target_ops {
	const char *name;
	/* Starts a request. @return 0, or a negative errno (then no callback comes). */
	int (*submit)(struct bench_target *t, struct bench_call *call);
	/* Abandons calls in flight (no callbacks) and frees the target. */
	void (*free)(struct bench_target *t);
};

struct bench_target {
	const struct bench_target_ops *ops;
};

/* bench-native.c */
int bench_native_new(struct event_base *base, const struct bench_config *cfg,
                     struct bench_target **out, char *err, size_t errlen);
/* Blocking helpers around a run: the model's vocabulary size and context length, and the
 * daemon's tokens_generated counter. @return 0 or a negative errno with err. */
int bench_native_model_info(const struct bench_config *cfg, uint32_t *vocab, uint32_t *context,
                            char *err, size_t errlen);
int bench_native_tokens_generated(const struct bench_config *cfg, uint64_t *tokens, char *err,
                                  size_t errlen);

/* bench-openai.c */
int bench_openai_new(struct event_base *base, const struct bench_config *cfg,
                     struct bench_target **out, char *err, size_t errlen);

/* ---- one run (bench-arrivals.c) -------------------------------------------------------- */

/* Runs one point: closed loop with `concurrency` clients when rate == 0, else open loop at
 * `rate` requests/s, until the config's bounds; records into stats.
 * @return 0 or a negative errno with err. */
int bench_run_point(const struct bench_config *cfg, const struct bench_workload *wl,
                    uint32_t concurrency, double rate, struct bench_stats *stats,
                    char *err, size_t errlen);

double bench_now(void);

/* ---- report (bench-report.c) ----------------------------------------------------------- */

struct bench_point {
	uint32_t concurrency;
	double rate;
	struct bench_summary sum;
	bool have_server_tokens;
	uint64_t server_tokens_generated; /* delta of Stats.tokens_generated over the point */
};

/* Prints one point's results as text on stdout. */
void bench_report_print(const struct bench_config *cfg, const struct bench_point *p);
/* Prints the sweep table (one row per point) on stdout. */
void bench_report_table(const struct bench_config *cfg, const struct bench_point *pts, size_t n);
/* Writes {"config": ..., "results": [...]} to path. @return 0 or a negative errno with err. */
int bench_report_json(const struct bench_config *cfg, const struct bench_point *pts, size_t n,
                      const char *path, char *err, size_t errlen);
/* The progress line (stderr); done = true erases it. */
void bench_report_progress(const struct bench_config *cfg, uint64_t sent, uint64_t finished,
                           uint64_t in_flight, uint64_t errors, uint64_t out_tokens,
                           double elapsed, bool done);

#endif
