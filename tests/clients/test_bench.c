/* inferd-bench against a live daemon: short bounded runs in both arrival modes whose counts
 * add up (sent = ok + errors; output tokens received = the usage sum = the daemon's
 * tokens_generated delta), errors counted by status, sweeps, datasets, shared prefixes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool-run.h"

static struct test_daemon d;
static struct tool_result r;
static char json_path[256];

static void start(void)
{
	tr_start_daemon(&d, false, NULL);
	snprintf(json_path, sizeof(json_path), "%s/bench.json", d.dir);
}

static void stop(void) { tr_stop_daemon(&d); }

TestSuite(bench, .init = start, .fini = stop);

/* Runs inferd-bench --connect <daemon> --model tiny --json <file> ARGS... */
#define BENCH(...) do { \
	const char *argv_[] = { tr_bench(), "--connect", d.tcp_url, "--model", "tiny", \
	                        "--json", json_path, __VA_ARGS__, NULL }; \
	tr_run(argv_, NULL, &r); \
} while (0)

static json_t *load_result(void)
{
	json_error_t je;
	json_t *j = json_load_file(json_path, 0, &je);
	cr_assert_not_null(j, "%s: %s\nstdout: %s\nstderr: %s", json_path, je.text, r.out, r.err);
	return j;
}

static json_int_t geti(json_t *o, const char *a, const char *b)
{
	json_t *v = json_object_get(o, a);
	if (b)
		v = json_object_get(v, b);
	cr_assert(json_is_integer(v), "%s.%s is not an integer", a, b ? b : "");
	return json_integer_value(v);
}

/* Checks one point's counts: every request accounted for, and output tokens agreeing three
 * ways (streamed, usage, the daemon's counter). @return the point's ok count. */
static json_int_t check_point(json_t *p, json_int_t want_sent, json_int_t tokens_delta)
{
	json_int_t sent = geti(p, "requests", "sent"), ok = geti(p, "requests", "ok");
	json_int_t errors = geti(p, "requests", "errors"), by_status = 0;
	const char *key;
	json_t *v;

	if (want_sent >= 0)
		cr_assert_eq(sent, want_sent);
	cr_assert_eq(sent, ok + errors);
	json_object_foreach(json_object_get(json_object_get(p, "requests"), "errors_by_status"),
	                    key, v)
		by_status += json_integer_value(v);
	cr_assert_eq(by_status, errors);
	cr_assert_eq(geti(p, "tokens", "output"), geti(p, "tokens", "output_usage"));
	if (tokens_delta >= 0)
		cr_assert_eq(geti(p, "tokens", "output"), tokens_delta);
	cr_assert_eq(geti(p, "server_tokens_generated", NULL), geti(p, "tokens", "output"));
	return ok;
}

Test(bench, closed_loop_counts_add_up)
{
	uint64_t before = tr_tokens_generated(&d);
	BENCH("--concurrency", "4", "--requests", "20", "--input-len", "16", "--output-len", "8");
	uint64_t after = tr_tokens_generated(&d);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "closed loop, concurrency 4"), "%s", r.out);
	cr_assert(strstr(r.out, "time to first token"), "%s", r.out);

	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(p, "arrivals")), "closed");
	cr_assert_eq(check_point(p, 20, (json_int_t)(after - before)), 20);
	cr_assert_eq(geti(p, "tokens", "output"), 20 * 8); /* ignore_eos + max_tokens */
	cr_assert_eq(geti(p, "tokens", "input"), 20 * 16);
	cr_assert_eq(geti(p, "ttft_ms", "count"), 20);
	cr_assert_eq(geti(p, "e2e_ms", "count"), 20);
	cr_assert_eq(geti(p, "itl_ms", "count"), 20 * 7); /* one frame per token after the first */
	cr_assert_gt(json_real_value(json_object_get(p, "output_throughput")), 0);
	json_decref(j);
}

Test(bench, open_loop_poisson_counts_add_up)
{
	uint64_t before = tr_tokens_generated(&d);
	BENCH("--rate", "200", "--requests", "20", "--input-len", "16", "--output-len", "8");
	uint64_t after = tr_tokens_generated(&d);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "open loop"), "%s", r.out);

	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(p, "arrivals")), "open");
	cr_assert_eq(check_point(p, 20, (json_int_t)(after - before)), 20);
	cr_assert_eq(geti(p, "tokens", "output"), 20 * 8);
	json_decref(j);
}

Test(bench, open_loop_bursty_with_varied_lengths_counts_add_up)
{
	uint64_t before = tr_tokens_generated(&d);
	BENCH("--rate", "100", "--burstiness", "0.5", "--requests", "20", "--input-len", "24",
	      "--input-dist", "normal", "--output-len", "8", "--output-dist", "uniform",
	      "--seed", "9");
	uint64_t after = tr_tokens_generated(&d);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_eq(check_point(p, 20, (json_int_t)(after - before)), 20);
	cr_assert_eq(json_real_value(json_object_get(json_object_get(j, "config"), "burstiness")),
	             0.5);
	json_decref(j);
}

Test(bench, duration_bounds_an_open_loop_run)
{
	uint64_t before = tr_tokens_generated(&d);
	BENCH("--rate", "40", "--duration", "0.5", "--input-len", "8", "--output-len", "4");
	uint64_t after = tr_tokens_generated(&d);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_gt(check_point(p, -1, (json_int_t)(after - before)), 0);
	json_decref(j);
}

Test(bench, failed_requests_are_counted_by_status)
{
	/* Prompts longer than the 256-token context: every request fails the same way. */
	BENCH("--requests", "10", "--input-len", "300", "--output-len", "4");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_eq(check_point(p, 10, 0), 0);
	json_t *by = json_object_get(json_object_get(p, "requests"), "errors_by_status");
	cr_assert_eq(json_object_size(by), 1);
	cr_assert_eq(json_integer_value(json_object_get(by, "INVALID_ARGUMENT")), 10);
	json_decref(j);
}

Test(bench, sweep_prints_one_table_and_one_result_per_point)
{
	uint64_t before = tr_tokens_generated(&d);
	BENCH("--sweep", "concurrency=1,4", "--requests", "8", "--input-len", "8",
	      "--output-len", "4");
	uint64_t after = tr_tokens_generated(&d);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "concurrency"), "%s", r.out);
	cr_assert(strstr(r.out, "out tok/s"), "%s", r.out);
	json_t *j = load_result(), *res = json_object_get(j, "results");
	cr_assert_str_eq(json_string_value(json_object_get(j, "sweep")), "concurrency");
	cr_assert_eq(json_array_size(res), 2);
	cr_assert_eq(geti(json_array_get(res, 0), "concurrency", NULL), 1);
	cr_assert_eq(geti(json_array_get(res, 1), "concurrency", NULL), 4);
	json_int_t total = 0;
	for (size_t i = 0; i < 2; i++) {
		cr_assert_eq(check_point(json_array_get(res, i), 8, -1), 8);
		total += geti(json_array_get(res, i), "tokens", "output");
	}
	cr_assert_eq(total, (json_int_t)(after - before));
	json_decref(j);
}

Test(bench, rate_sweep_runs_each_rate)
{
	BENCH("--sweep", "rate=50,100", "--requests", "6", "--input-len", "8", "--output-len", "4");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = load_result(), *res = json_object_get(j, "results");
	cr_assert_eq(json_array_size(res), 2);
	cr_assert_eq(json_real_value(json_object_get(json_array_get(res, 1), "rate")), 100.0);
	for (size_t i = 0; i < 2; i++)
		cr_assert_eq(check_point(json_array_get(res, i), 6, -1), 6);
	json_decref(j);
}

Test(bench, jsonl_dataset_sets_prompts_and_output_lengths)
{
	char ds[256];
	snprintf(ds, sizeof(ds), "%s/prompts.jsonl", d.dir);
	FILE *f = fopen(ds, "w");
	cr_assert_not_null(f);
	fputs("{\"prompt\": \"Once upon a time\", \"output_len\": 5}\n"
	      "\n"
	      "{\"conversations\": [{\"from\": \"human\", \"value\": \"Hello there\"}, "
	      "{\"from\": \"gpt\", \"value\": \"Hi! How are you?\"}]}\n"
	      "{\"prompt_token_ids\": [5, 6, 7, 8], \"max_tokens\": 3}\n", f);
	fclose(f);
	uint64_t before = tr_tokens_generated(&d);
	BENCH("--dataset", ds, "--requests", "6", "--concurrency", "2");
	uint64_t after = tr_tokens_generated(&d);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_eq(check_point(p, 6, (json_int_t)(after - before)), 6);
	/* Cycled twice: 5 + (16 bytes / 4 = 4) + 3 output tokens each time. */
	cr_assert_eq(geti(p, "tokens", "output"), 2 * (5 + 4 + 3));
	json_decref(j);
}

Test(bench, shared_prefix_and_text_prompts)
{
	BENCH("--requests", "8", "--shared-prefix", "64", "--input-len", "8", "--output-len", "4");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_eq(check_point(p, 8, -1), 8);
	cr_assert_eq(geti(p, "tokens", "input"), 8 * (64 + 8));
	json_decref(j);

	BENCH("--requests", "4", "--prompt", "text", "--input-len", "10", "--output-len", "4");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = load_result();
	p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_eq(check_point(p, 4, -1), 4);
	cr_assert_gt(geti(p, "tokens", "input"), 4 * 10 - 1); /* usage: words are >= 1 token */
	json_decref(j);
}

Test(bench, slo_goodput_counts_only_requests_within_the_slo)
{
	/* An SLO nobody can meet (TTFT under a nanosecond) leaves a goodput of zero. */
	BENCH("--requests", "5", "--input-len", "8", "--output-len", "4", "--slo-ttft", "0.000001");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_eq(geti(p, "good_requests", NULL), 0);
	cr_assert_eq(json_real_value(json_object_get(p, "goodput")), 0.0);
	json_decref(j);
}

Test(bench, bad_usage_and_unreachable_targets)
{
	const char *both[] = { tr_bench(), "--rate", "1", "--concurrency", "2", NULL };
	tr_run(both, NULL, &r);
	cr_assert_eq(r.status, 2, "%s", r.err);
	const char *dist[] = { tr_bench(), "--input-dist", "zipf", NULL };
	tr_run(dist, NULL, &r);
	cr_assert_eq(r.status, 2, "%s", r.err);
	const char *oa[] = { tr_bench(), "--openai", "http://127.0.0.1:1", NULL };
	tr_run(oa, NULL, &r); /* --openai needs --model */
	cr_assert_eq(r.status, 2, "%s", r.err);
	const char *help[] = { tr_bench(), "--help", NULL };
	tr_run(help, NULL, &r);
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "--sweep"), "%s", r.out);

	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", td_free_port());
	const char *gone[] = { tr_bench(), "--connect", url, "--requests", "1", NULL };
	tr_run(gone, NULL, &r);
	cr_assert_eq(r.status, 3, "%s", r.err);

	const char *nomodel[] = { tr_bench(), "--connect", d.tcp_url, "--model", "nope",
	                          "--requests", "1", NULL };
	tr_run(nomodel, NULL, &r);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert(strstr(r.err, "nope"), "%s", r.err);
}

Test(bench, openai_target_counts_refused_connections_as_errors)
{
	/* No live OpenAI-compatible server here: a closed port shows the target's error path. */
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", td_free_port());
	const char *argv[] = { tr_bench(), "--openai", url, "--model", "tiny", "--requests", "3",
	                       "--output-len", "4", "--timeout", "5", "--json", json_path, NULL };
	tr_run(argv, NULL, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_eq(geti(p, "requests", "sent"), 3);
	cr_assert_eq(geti(p, "requests", "errors"), 3);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(json_object_get(p,
	             "requests"), "errors_by_status"), "CONNECTION_FAILED")), 3);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "config"),
	                                                   "target")), "openai");
	json_decref(j);
}

/* ---- the OpenAI-compatible target against the daemon's own HTTP API ----------------------- */

static void run_openai(const char *const *args, size_t n)
{
	const char *argv[32] = { tr_bench(), "--openai", tr_http_url(), "--model", "tiny",
	                         "--json", json_path };
	size_t k = 7;
	for (size_t i = 0; i < n && k < 31; i++)
		argv[k++] = args[i];
	argv[k] = NULL;
	tr_run(argv, NULL, &r);
}

Test(bench, openai_closed_loop_counts_add_up)
{
	static const char *const args[] = { "--concurrency", "4", "--requests", "20",
	                                    "--input-len", "16", "--output-len", "8" };
	uint64_t before = tr_tokens_generated(&d);
	run_openai(args, sizeof(args) / sizeof(args[0]));
	uint64_t after = tr_tokens_generated(&d);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_eq(geti(p, "requests", "sent"), 20);
	cr_assert_eq(geti(p, "requests", "ok"), 20, "%s", r.out);
	/* Usage completion tokens = the daemon's counter. Chunks with text can be fewer: a
	 * token whose bytes end inside a UTF-8 sequence streams its text with a later one. */
	cr_assert_eq(geti(p, "tokens", "output_usage"), 20 * 8);
	cr_assert_leq(geti(p, "tokens", "output"), 20 * 8);
	cr_assert_gt(geti(p, "tokens", "output"), 0);
	cr_assert_eq((json_int_t)(after - before), 20 * 8);
	cr_assert_gt(geti(p, "tokens", "input"), 0); /* from usage */
	cr_assert_eq(geti(p, "ttft_ms", "count"), 20);
	json_decref(j);
}

Test(bench, openai_open_loop_with_token_prompts_counts_add_up)
{
	static const char *const args[] = { "--rate", "100", "--requests", "12", "--prompt",
	                                    "tokens", "--vocab", "512", "--input-len", "16",
	                                    "--output-len", "6" };
	uint64_t before = tr_tokens_generated(&d);
	run_openai(args, sizeof(args) / sizeof(args[0]));
	uint64_t after = tr_tokens_generated(&d);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	json_int_t ok = geti(p, "requests", "ok"), errors = geti(p, "requests", "errors");
	cr_assert_eq(geti(p, "requests", "sent"), 12);
	cr_assert_eq(ok + errors, 12);
	cr_assert_eq(geti(p, "tokens", "output_usage"), (json_int_t)(after - before));
	cr_assert_eq(geti(p, "tokens", "output_usage"), ok * 6);
	json_decref(j);
}

#define KEY "inferd-bench-test-key"

static void start_keyed(void)
{
	tr_start_daemon(&d, false, KEY);
	snprintf(json_path, sizeof(json_path), "%s/bench.json", d.dir);
}

Test(bench_auth, api_key_reaches_both_targets, .init = start_keyed, .fini = stop)
{
	const char *native[] = { tr_bench(), "--connect", d.tcp_url, "--api-key", KEY,
	                         "--requests", "4", "--input-len", "8", "--output-len", "4",
	                         "--json", json_path, NULL };
	tr_run(native, NULL, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = load_result();
	cr_assert_eq(geti(json_array_get(json_object_get(j, "results"), 0), "requests", "ok"), 4);
	json_decref(j);

	const char *http[] = { tr_bench(), "--openai", tr_http_url(), "--model", "tiny",
	                       "--api-key", KEY, "--requests", "4", "--input-len", "8",
	                       "--output-len", "4", "--json", json_path, NULL };
	tr_run(http, NULL, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = load_result();
	cr_assert_eq(geti(json_array_get(json_object_get(j, "results"), 0), "requests", "ok"), 4);
	json_decref(j);

	/* Without the key every HTTP request fails, counted by status. */
	const char *nokey[] = { tr_bench(), "--openai", tr_http_url(), "--model", "tiny",
	                        "--requests", "3", "--input-len", "8", "--output-len", "4",
	                        "--json", json_path, NULL };
	tr_run(nokey, NULL, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = load_result();
	json_t *p = json_array_get(json_object_get(j, "results"), 0);
	cr_assert_eq(geti(p, "requests", "errors"), 3);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(json_object_get(p,
	             "requests"), "errors_by_status"), "HTTP_401")), 3);
	json_decref(j);
}

/* ---- several daemons ---------------------------------------------------------------------- */

static struct test_daemon d2;

static void start_two(void)
{
	start();
	tr_start_daemon(&d2, false, NULL);
}

static void stop_two(void)
{
	tr_stop_daemon(&d2);
	stop();
}

Test(bench_multi, calls_spread_over_every_connect_and_tokens_add_up, .init = start_two,
     .fini = stop_two)
{
	uint64_t before1 = tr_tokens_generated(&d), before2 = tr_tokens_generated(&d2);
	const char *argv[] = { tr_bench(), "--connect", d.tcp_url, "--connect", d2.tcp_url,
	                       "--model", "tiny", "--json", json_path, "--concurrency", "4",
	                       "--requests", "16", "--input-len", "8", "--output-len", "4", NULL };
	tr_run(argv, NULL, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	uint64_t got1 = tr_tokens_generated(&d) - before1, got2 = tr_tokens_generated(&d2) - before2;
	json_t *j = load_result(), *p = json_array_get(json_object_get(j, "results"), 0);
	/* The server-side count is summed over both daemons. */
	cr_assert_eq(check_point(p, 16, (json_int_t)(got1 + got2)), 16);
	cr_assert_eq(got1 + got2, 16 * 4);
	/* Round robin: both daemons served some of them. */
	cr_assert_gt(got1, 0, "the first daemon served nothing");
	cr_assert_gt(got2, 0, "the second daemon served nothing");
	json_decref(j);
}
