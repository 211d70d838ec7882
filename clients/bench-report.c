/* inferd-bench: results as text, as a sweep table, as a JSON file, and the progress line. */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *dist_name(enum bench_dist d)
{
	return d == BENCH_DIST_UNIFORM ? "uniform" : d == BENCH_DIST_NORMAL ? "normal" : "fixed";
}

/* ---- text ------------------------------------------------------------------------------------ */

static void print_dist(const char *name, const struct bench_dist_summary *d)
{
	printf("  %-22s %9.2f %9.2f %9.2f %9.2f %9.2f\n", name, d->mean, d->median, d->p90, d->p99,
	       d->max);
}

void bench_report_print(const struct bench_config *cfg, const struct bench_point *p)
{
	const struct bench_summary *s = &p->sum;
	const char *key;
	json_t *v;

	if (p->rate > 0)
		printf("open loop, %.2f req/s%s", p->rate, cfg->burstiness != 1.0 ? "" : " (Poisson)");
	else
		printf("closed loop, concurrency %u", p->concurrency);
	if (p->rate > 0 && cfg->burstiness != 1.0)
		printf(" (gamma arrivals, burstiness %.2f)", cfg->burstiness);
	printf("\n");
	printf("  requests:              %llu sent, %llu ok, %llu errors\n",
	       (unsigned long long)s->sent, (unsigned long long)s->ok,
	       (unsigned long long)s->errors);
	json_object_foreach(s->errors_by_status, key, v)
		printf("    %-20s %lld\n", key, (long long)json_integer_value(v));
	printf("  duration:              %.3f s\n", s->duration_s);
	printf("  request throughput:    %.2f req/s\n", s->request_throughput);
	printf("  input tokens:          %llu (%.1f tokens/s)\n",
	       (unsigned long long)s->input_tokens, s->input_throughput);
	printf("  output tokens:         %llu streamed, %llu by usage (%.1f tokens/s)\n",
	       (unsigned long long)s->output_tokens, (unsigned long long)s->usage_output_tokens,
	       s->output_throughput);
	if (p->have_server_tokens)
		printf("  daemon tokens_generated delta: %llu\n",
		       (unsigned long long)p->server_tokens_generated);
	printf("  goodput:               %.2f req/s (%llu of %llu ok", s->goodput,
	       (unsigned long long)s->good, (unsigned long long)s->ok);
	if (cfg->slo_ttft_ms > 0)
		printf(", TTFT <= %g ms", cfg->slo_ttft_ms);
	if (cfg->slo_tpot_ms > 0)
		printf(", TPOT <= %g ms", cfg->slo_tpot_ms);
	printf(")\n");
	printf("  %-22s %9s %9s %9s %9s %9s\n", "latency (ms)", "mean", "median", "p90", "p99",
	       "max");
	print_dist("time to first token", &s->ttft_ms);
	print_dist("time per output token", &s->tpot_ms);
	print_dist("inter-token latency", &s->itl_ms);
	print_dist("end to end", &s->e2e_ms);
}

void bench_report_table(const struct bench_config *cfg, const struct bench_point *pts, size_t n)
{
	printf("%11s %7s %6s %9s %10s %9s %9s %9s %9s %9s %9s %9s\n",
	       cfg->sweep == BENCH_SWEEP_RATE ? "rate" : "concurrency", "ok", "errors", "req/s",
	       "out tok/s", "goodput", "ttft p50", "ttft p99", "tpot p50", "tpot p99", "itl p99",
	       "e2e p99");
	for (size_t i = 0; i < n; i++) {
		const struct bench_summary *s = &pts[i].sum;
		if (cfg->sweep == BENCH_SWEEP_RATE)
			printf("%11.2f", pts[i].rate);
		else
			printf("%11u", pts[i].concurrency);
		printf(" %7llu %6llu %9.2f %10.1f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n",
		       (unsigned long long)s->ok, (unsigned long long)s->errors,
		       s->request_throughput, s->output_throughput, s->goodput, s->ttft_ms.median,
		       s->ttft_ms.p99, s->tpot_ms.median, s->tpot_ms.p99, s->itl_ms.p99,
		       s->e2e_ms.p99);
	}
	printf("(latencies in ms)\n");
}

/* ---- JSON ------------------------------------------------------------------------------------- */

static json_t *dist_json(const struct bench_dist_summary *d)
{
	return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:I}", "mean", d->mean, "median",
	                 d->median, "p90", d->p90, "p99", d->p99, "min", d->min, "max", d->max,
	                 "count", (json_int_t)d->n);
}

static json_t *config_json(const struct bench_config *cfg)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:f, s:I, s:I, s:s, s:s, s:f, s:I, s:s, s:I, "
	                      "s:b, s:f, s:f, s:I}",
	                      "target", cfg->openai_url ? "openai" : "native",
	                      "url", cfg->openai_url ? cfg->openai_url : cfg->connect_url,
	                      "model", cfg->model ? cfg->model : "",
	                      "requests", (json_int_t)cfg->requests,
	                      "duration_s", cfg->duration_s,
	                      "input_len", (json_int_t)cfg->input_len,
	                      "output_len", (json_int_t)cfg->output_len,
	                      "input_dist", dist_name(cfg->input_dist),
	                      "output_dist", dist_name(cfg->output_dist),
	                      "range_ratio", cfg->range_ratio,
	                      "shared_prefix", (json_int_t)cfg->shared_prefix,
	                      "dataset", cfg->dataset ? cfg->dataset : "",
	                      "seed", (json_int_t)cfg->seed,
	                      "text_prompts", cfg->text_prompts,
	                      "slo_ttft_ms", cfg->slo_ttft_ms,
	                      "slo_tpot_ms", cfg->slo_tpot_ms,
	                      "vocab_size", (json_int_t)cfg->vocab_size);
	if (o && cfg->rate > 0)
		json_object_set_new(o, "burstiness", json_real(cfg->burstiness));
	return o;
}

static json_t *point_json(const struct bench_point *p)
{
	const struct bench_summary *s = &p->sum;
	json_t *o = json_pack(
		"{s:s, s:I, s:f, s:f, s:{s:I, s:I, s:I, s:O}, s:{s:I, s:I, s:I}, "
		"s:f, s:f, s:f, s:f, s:I, s:o, s:o, s:o, s:o}",
		"arrivals", p->rate > 0 ? "open" : "closed",
		"concurrency", (json_int_t)p->concurrency,
		"rate", p->rate,
		"duration_s", s->duration_s,
		"requests", "sent", (json_int_t)s->sent, "ok", (json_int_t)s->ok,
		"errors", (json_int_t)s->errors, "errors_by_status", s->errors_by_status,
		"tokens", "input", (json_int_t)s->input_tokens,
		"output", (json_int_t)s->output_tokens,
		"output_usage", (json_int_t)s->usage_output_tokens,
		"request_throughput", s->request_throughput,
		"input_throughput", s->input_throughput,
		"output_throughput", s->output_throughput,
		"goodput", s->goodput,
		"good_requests", (json_int_t)s->good,
		"ttft_ms", dist_json(&s->ttft_ms),
		"tpot_ms", dist_json(&s->tpot_ms),
		"itl_ms", dist_json(&s->itl_ms),
		"e2e_ms", dist_json(&s->e2e_ms));
	if (o && p->have_server_tokens)
		json_object_set_new(o, "server_tokens_generated",
		                    json_integer((json_int_t)p->server_tokens_generated));
	return o;
}

int bench_report_json(const struct bench_config *cfg, const struct bench_point *pts, size_t n,
                      const char *path, char *err, size_t errlen)
{
	json_t *root = NULL, *results = json_array();
	int rc = -ENOMEM;

	if (!results)
		goto cleanup;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(results, point_json(&pts[i])) < 0)
			goto cleanup;
	if (!(root = json_pack("{s:o, s:s, s:O}", "config", config_json(cfg), "sweep",
	                       cfg->sweep == BENCH_SWEEP_RATE ? "rate"
	                       : cfg->sweep == BENCH_SWEEP_CONCURRENCY ? "concurrency" : "none",
	                       "results", results)))
		goto cleanup;
	if (json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) < 0) {
		rc = -EIO;
		snprintf(err, errlen, "cannot write %s", path);
		goto out;
	}
	rc = 0;
	goto out;
cleanup:
	snprintf(err, errlen, "cannot build the JSON result (out of memory)");
out:
	json_decref(root);
	json_decref(results);
	return rc;
}

/* ---- progress ------------------------------------------------------------------------------- */

void bench_report_progress(const struct bench_config *cfg, uint64_t sent, uint64_t finished,
                           uint64_t in_flight, uint64_t errors, uint64_t out_tokens,
                           double elapsed, bool done)
{
	char bar[32];
	double frac = 0;
	int w = (int)sizeof(bar) - 1;

	if (done) {
		fprintf(stderr, "\r\033[K");
		return;
	}
	if (cfg->requests)
		frac = (double)finished / (double)cfg->requests;
	if (cfg->duration_s > 0 && elapsed / cfg->duration_s > frac)
		frac = elapsed / cfg->duration_s;
	if (frac > 1)
		frac = 1;
	for (int i = 0; i < w; i++)
		bar[i] = i < (int)(frac * w) ? '=' : i == (int)(frac * w) ? '>' : ' ';
	bar[w] = '\0';
	fprintf(stderr, "\r\033[K[%s] %llu done, %llu in flight, %llu sent, %llu errors, "
	        "%.1f s, %.0f tok/s", bar, (unsigned long long)finished,
	        (unsigned long long)in_flight, (unsigned long long)sent,
	        (unsigned long long)errors, elapsed, elapsed > 0 ? out_tokens / elapsed : 0.0);
}
