/* inferctl against a live daemon: every subcommand, --json output, and every exit code
 * (0 ok, 2 usage, 3 unreachable, 4 server error, 5 cancelled / deadline). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tool-run.h"

static struct test_daemon d;
static struct tool_result r;

/* Runs inferctl --connect <daemon> ARGS... */
#define CTL(stdin_text, ...) do { \
	const char *argv_[] = { tr_inferctl(), "--connect", d.tcp_url, __VA_ARGS__, NULL }; \
	tr_run(argv_, stdin_text, &r); \
} while (0)

static void start(void) { tr_start_daemon(&d, false, NULL); }
static void stop(void) { tr_stop_daemon(&d); }

TestSuite(inferctl, .init = start, .fini = stop);

/* ---- the subcommands ------------------------------------------------------------------------ */

Test(inferctl, health_says_serving_in_text_and_json)
{
	CTL(NULL, "health");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "SERVING"), "%s", r.out);

	CTL(NULL, "--json", "health");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = tr_json(&r);
	cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "SERVING");
	cr_assert(json_is_string(json_object_get(j, "version")));
	cr_assert(json_real_value(json_object_get(j, "uptime_seconds")) >= 0);
	json_decref(j);
}

Test(inferctl, models_lists_the_served_model)
{
	CTL(NULL, "models");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "tiny"), "%s", r.out);

	CTL(NULL, "models", "--json"); /* global options also after the command */
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = tr_json(&r), *m = json_array_get(json_object_get(j, "models"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(m, "name")), "tiny");
	cr_assert_str_eq(json_string_value(json_object_get(m, "kind")), "llm");
	cr_assert_eq(json_integer_value(json_object_get(m, "vocab_size")), 512);
	cr_assert_eq(json_integer_value(json_object_get(m, "context_length")), 256);
	cr_assert(json_is_true(json_object_get(m, "ready")));
	json_decref(j);
}

Test(inferctl, stats_counts_calls_and_tokens)
{
	CTL(NULL, "generate", "-m", "tiny", "-n", "6", "--ignore-eos", "hello");
	cr_assert_eq(r.status, 0, "%s", r.err);
	CTL(NULL, "--json", "stats");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = tr_json(&r);
	cr_assert_eq(json_integer_value(json_object_get(j, "tokens_generated")), 6);
	cr_assert(json_array_size(json_object_get(j, "calls")) >= 1);
	json_decref(j);

	CTL(NULL, "stats");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "tokens generated:    6"), "%s", r.out);
}

Test(inferctl, generate_streams_text_with_usage_on_stderr)
{
	CTL(NULL, "generate", "--model", "tiny", "--max-tokens", "8", "--ignore-eos", "hello");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.err, "[finish length"), "%s", r.err);
	cr_assert(strstr(r.err, "completion 8 tokens"), "%s", r.err);
}

Test(inferctl, generate_json_has_ids_finish_and_usage)
{
	CTL(NULL, "--json", "generate", "-m", "tiny", "-n", "8", "--ignore-eos", "hello");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = tr_json(&r), *u = json_object_get(j, "usage");
	cr_assert_eq(json_array_size(json_object_get(j, "token_ids")), 8);
	cr_assert_str_eq(json_string_value(json_object_get(j, "finish_reason")), "length");
	cr_assert_eq(json_integer_value(json_object_get(u, "completion_tokens")), 8);
	cr_assert_gt(json_integer_value(json_object_get(u, "prompt_tokens")), 0);
	cr_assert(json_is_string(json_object_get(j, "text")));
	json_decref(j);
}

Test(inferctl, logit_bias_stop_tokens_penalties_and_logprobs_reach_the_daemon)
{
	/* A bias of +100 makes token 7 the greedy choice every time; logprobs report it. */
	CTL(NULL, "--json", "generate", "-m", "tiny", "-n", "4", "--ignore-eos", "--logit-bias",
	    "7=100", "--top-logprobs", "3", "--presence-penalty", "0.5", "--frequency-penalty",
	    "0.25", "hello");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = tr_json(&r), *ids = json_object_get(j, "token_ids");
	json_t *lps = json_object_get(j, "logprobs");
	cr_assert_eq(json_array_size(ids), 4);
	cr_assert_eq(json_array_size(lps), 4);
	for (size_t i = 0; i < 4; i++) {
		json_t *lp = json_array_get(lps, i);
		cr_assert_eq(json_integer_value(json_array_get(ids, i)), 7);
		cr_assert_eq(json_integer_value(json_object_get(lp, "token_id")), 7);
		cr_assert_leq(json_real_value(json_object_get(lp, "logprob")), 0.0);
		cr_assert_eq(json_array_size(json_object_get(lp, "top")), 3);
	}
	json_decref(j);
	/* A stop token ends it at once, and the text mode prints the mean logprob. */
	CTL(NULL, "generate", "-m", "tiny", "-n", "8", "--logit-bias", "7=100", "--stop-token", "7",
	    "--logprobs", "hello");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.err, "[finish stop"), "%s", r.err);
	cr_assert(strstr(r.err, "completion 1 tokens"), "%s", r.err);
	cr_assert(strstr(r.err, "[logprobs: mean"), "%s", r.err);
}

Test(inferctl, generate_reads_the_prompt_from_stdin)
{
	CTL(NULL, "--json", "generate", "-m", "tiny", "-n", "4", "--ignore-eos", "once upon");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *a = tr_json(&r);
	CTL("once upon", "--json", "generate", "-m", "tiny", "-n", "4", "--ignore-eos", "-");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *b = tr_json(&r);
	cr_assert(json_equal(json_object_get(a, "token_ids"), json_object_get(b, "token_ids")));
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(a, "usage"),
	                                                "prompt_tokens")),
	             json_integer_value(json_object_get(json_object_get(b, "usage"),
	                                                "prompt_tokens")));
	json_decref(a);
	json_decref(b);
}

Test(inferctl, seeded_sampling_flags_reproduce)
{
	json_t *runs[2];
	for (int i = 0; i < 2; i++) {
		CTL(NULL, "--json", "generate", "-m", "tiny", "-n", "12", "--ignore-eos",
		    "--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--min-p", "0.01",
		    "--seed", "1234", "--priority", "3", "the cat");
		cr_assert_eq(r.status, 0, "%s", r.err);
		runs[i] = tr_json(&r);
	}
	cr_assert(json_equal(json_object_get(runs[0], "token_ids"),
	                     json_object_get(runs[1], "token_ids")));
	json_decref(runs[0]);
	json_decref(runs[1]);
}

Test(inferctl, stop_strings_reach_the_daemon)
{
	/* Stop strings are passed through; a daemon without them answers UNIMPLEMENTED, which
	 * inferctl must print with exit status 4. */
	CTL(NULL, "generate", "-m", "tiny", "-n", "8", "--stop", "zz", "--stop", "\n\n", "hi");
	if (r.status == 4)
		cr_assert(strstr(r.err, "inferctl: generate: "), "%s", r.err);
	else
		cr_assert_eq(r.status, 0, "%s", r.err);
}

Test(inferctl, tokenize_from_argument_and_stdin)
{
	CTL(NULL, "--json", "tokenize", "-m", "tiny", "hello world");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *a = tr_json(&r);
	size_t n = json_array_size(json_object_get(a, "token_ids"));
	cr_assert_gt(n, 0);
	cr_assert_eq(json_integer_value(json_object_get(a, "count")), (json_int_t)n);
	CTL("hello world", "--json", "tokenize", "-m", "tiny", "-");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *b = tr_json(&r);
	cr_assert(json_equal(json_object_get(a, "token_ids"), json_object_get(b, "token_ids")));
	json_decref(a);
	json_decref(b);

	/* Text output: the ids on one line; --no-bos leaves the BOS out. */
	CTL(NULL, "tokenize", "hello world");
	cr_assert_eq(r.status, 0, "%s", r.err);
	size_t spaces = 0;
	for (const char *q = r.out; *q; q++)
		spaces += *q == ' ';
	cr_assert_eq(spaces + 1, n, "%s", r.out);
	CTL(NULL, "--json", "tokenize", "--no-bos", "hello world");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *c = tr_json(&r);
	cr_assert_eq(json_array_size(json_object_get(c, "token_ids")), n - 1);
	json_decref(c);
}

Test(inferctl, echo_prints_round_trips)
{
	CTL(NULL, "echo", "-n", "3", "-i", "0");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "seq=2"), "%s", r.out);
	cr_assert(strstr(r.out, "3 round trips"), "%s", r.out);

	CTL(NULL, "--json", "echo", "--count", "2", "--interval", "0", "--size", "100");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = tr_json(&r);
	cr_assert_eq(json_integer_value(json_object_get(j, "count")), 2);
	cr_assert_eq(json_array_size(json_object_get(j, "rtt_ms")), 2);
	cr_assert_geq(json_real_value(json_object_get(j, "max_ms")),
	              json_real_value(json_object_get(j, "min_ms")));
	json_decref(j);
}

Test(inferctl, inferd_url_sets_the_default_endpoint)
{
	const char *argv[] = { tr_inferctl(), "health", NULL };
	cr_assert_eq(setenv("INFERD_URL", d.tcp_url, 1), 0);
	tr_run(argv, NULL, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
}

/* ---- image: a daemon serving a tiny random-weight pipeline (inferd-mkmodel diffusion) ------ */

static char img_models[64];

static void start_image(void)
{
	const char *mk = getenv("INFERD_MKMODEL");
	char cmd[512], extra[512];

	cr_assert_not_null(mk, "INFERD_MKMODEL is not set");
	snprintf(img_models, sizeof(img_models), "/tmp/inferd-test-cli-img-XXXXXX");
	cr_assert_not_null(mkdtemp(img_models));
	snprintf(cmd, sizeof(cmd), "'%s' diffusion --out '%s/img' --seed 3 >/dev/null", mk,
	         img_models);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	snprintf(extra, sizeof(extra), "[model.img]\npath = %s/img\nthreads = 2\n", img_models);
	td_start(&d, extra, NULL);
}

static void stop_image(void)
{
	char cmd[128];

	td_stop(&d);
	td_cleanup(&d);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", img_models);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", img_models);
}

static void expect_png(const char *path)
{
	unsigned char sig[8] = { 0 };
	FILE *f = fopen(path, "rb");

	cr_assert(f, "%s was not written", path);
	cr_assert_eq(fread(sig, 1, 8, f), 8, "%s is short", path);
	fclose(f);
	cr_assert_eq(memcmp(sig, "\x89PNG\r\n\x1a\n", 8), 0, "%s is not a PNG", path);
}

/* Against a daemon serving a tiny inferd-mkmodel diffusion pipeline. */
Test(inferctl_image, writes_pngs_with_progress_and_json, .init = start_image, .fini = stop_image,
     .timeout = 300)
{
	char path[256], p0[256], p1[256];

	snprintf(path, sizeof(path), "%s/out.png", d.dir);
	CTL(NULL, "image", "-m", "img", "-o", path, "--steps", "2", "--width", "64", "--height",
	    "64", "--seed", "1", "--progress", "a red cube");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, path), "%s", r.out);
	cr_assert(strstr(r.out, "64x64 seed 1 "), "%s", r.out);
	cr_assert(strstr(r.err, "step 2/2"), "%s", r.err);
	expect_png(path);

	/* two images: out-0.png and out-1.png, one JSON object */
	CTL(NULL, "--json", "image", "-m", "img", "-o", path, "--steps", "1", "--width", "64",
	    "--height", "64", "-n", "2", "a blue cube");
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *j = tr_json(&r), *imgs = json_object_get(j, "images");
	cr_assert_eq(json_array_size(imgs), 2, "%s", r.out);
	snprintf(p0, sizeof(p0), "%s/out-0.png", d.dir);
	snprintf(p1, sizeof(p1), "%s/out-1.png", d.dir);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(imgs, 0), "path")), p0);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(imgs, 1), "path")), p1);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(imgs, 1), "width")), 64);
	json_decref(j);
	expect_png(p0);
	expect_png(p1);

	/* a server-side refusal: message on stderr, exit 4 */
	CTL(NULL, "image", "-m", "no-such-model", "-o", path, "a cat");
	cr_assert_eq(r.status, 4, "%s", r.err);
	cr_assert(strstr(r.err, "no-such-model"), "%s", r.err);
}

/* ---- exit codes --------------------------------------------------------------------------- */

Test(inferctl, usage_errors_exit_2)
{
	const char *none[] = { tr_inferctl(), NULL };
	tr_run(none, NULL, &r);
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "usage:"), "%s", r.err);

	CTL(NULL, "frobnicate");
	cr_assert_eq(r.status, 2);
	CTL(NULL, "generate");
	cr_assert_eq(r.status, 2, "%s", r.err);
	CTL(NULL, "generate", "--max-tokens", "ten", "hi");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--max-tokens"), "%s", r.err);
	CTL(NULL, "generate", "--top-p", "2", "hi");
	cr_assert_eq(r.status, 2);
	CTL(NULL, "generate", "--logit-bias", "7", "hi");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "ID=BIAS"), "%s", r.err);
	CTL(NULL, "generate", "--top-logprobs", "21", "hi");
	cr_assert_eq(r.status, 2);
	CTL(NULL, "generate", "--presence-penalty", "3", "hi");
	cr_assert_eq(r.status, 2);
	CTL(NULL, "generate", "--no-such-flag", "hi");
	cr_assert_eq(r.status, 2);
	CTL(NULL, "health", "extra");
	cr_assert_eq(r.status, 2);
	CTL(NULL, "cancel");
	cr_assert_eq(r.status, 2);
	CTL(NULL, "image", "a cat");
	cr_assert_eq(r.status, 2, "%s", r.err);
	cr_assert(strstr(r.err, "-o FILE"), "%s", r.err);
	CTL(NULL, "image", "-o", "x.png", "--steps", "ten", "a cat");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--steps"), "%s", r.err);
	CTL(NULL, "image", "-o", "x.png", "--steps", "0", "a cat");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--steps"), "%s", r.err);
	CTL(NULL, "image", "-o", "x.png", "--num-images", "17", "a cat");
	cr_assert_eq(r.status, 2);
	CTL(NULL, "image", "-o", "x.png", "--strength", "0.5", "a cat");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--init"), "%s", r.err);
	CTL(NULL, "image", "-o", "x.png", "--init", "/nonexistent/init.png", "a cat");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "/nonexistent/init.png"), "%s", r.err);
	CTL(NULL, "image", "-o", "x.png");
	cr_assert_eq(r.status, 2);
	CTL(NULL, "adapter", "list");
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "not available yet"), "%s", r.err);
}

Test(inferctl, every_subcommand_has_help)
{
	static const char *const cmds[] = { "health", "models", "stats", "generate", "tokenize",
	                                    "echo", "cancel", "image" };
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		CTL(NULL, cmds[i], "--help");
		cr_assert_eq(r.status, 0, "%s --help: %s", cmds[i], r.err);
		cr_assert(strstr(r.out, "usage: inferctl"), "%s --help: %s", cmds[i], r.out);
	}
	const char *top[] = { tr_inferctl(), "--help", NULL };
	tr_run(top, NULL, &r);
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "Exit status"), "%s", r.out);
}

Test(inferctl, unreachable_daemon_exits_3)
{
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", td_free_port());
	const char *argv[] = { tr_inferctl(), "--connect", url, "--timeout", "0.5", "health", NULL };
	tr_run(argv, NULL, &r);
	cr_assert_eq(r.status, 3, "%s", r.err);
	cr_assert(strstr(r.err, "UNAVAILABLE"), "%s", r.err);
}

Test(inferctl, server_errors_exit_4_with_the_message)
{
	CTL(NULL, "generate", "--model", "no-such-model", "hi");
	cr_assert_eq(r.status, 4, "%s", r.err);
	cr_assert(strstr(r.err, "NOT_FOUND"), "%s", r.err);
	cr_assert(strstr(r.err, "no-such-model"), "%s", r.err);

	CTL(NULL, "tokenize", "--model", "no-such-model", "hi");
	cr_assert_eq(r.status, 4, "%s", r.err);

	CTL(NULL, "cancel", "12345");
	cr_assert_eq(r.status, 4, "%s", r.err);
	cr_assert(strstr(r.err, "NOT_FOUND"), "%s", r.err);
}

Test(inferctl, deadline_exits_5)
{
	CTL(NULL, "--timeout", "0.2", "echo", "-n", "1", "--delay", "5000");
	cr_assert_eq(r.status, 5, "%s", r.err);
	cr_assert(strstr(r.err, "DEADLINE_EXCEEDED"), "%s", r.err);
}

/* ---- Ctrl-C ------------------------------------------------------------------------------- */

static void start_big(void) { tr_start_daemon(&d, true, NULL); }

Test(inferctl_interrupt, ctrl_c_cancels_generate_and_exits_5, .init = start_big, .fini = stop)
{
	int out[2], status = 0;
	char buf[256];
	pid_t pid;

	cr_assert_eq(pipe(out), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(out[1], STDOUT_FILENO);
		dup2(devnull, STDERR_FILENO);
		close(out[0]);
		execl(tr_inferctl(), tr_inferctl(), "--connect", d.tcp_url, "generate", "-m", "big",
		      "-n", "2000", "--ignore-eos", "once upon a time", (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	/* Wait for the first streamed text, then interrupt. */
	struct pollfd p = { .fd = out[0], .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 60000), 1, "no output from inferctl generate");
	cr_assert_gt(read(out[0], buf, sizeof(buf)), 0);
	kill(pid, SIGINT);
	while (read(out[0], buf, sizeof(buf)) > 0)
		;
	close(out[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 5);
	/* The daemon stopped generating: far fewer than 2000 tokens were made. */
	cr_assert_lt(tr_tokens_generated(&d), 2000);
}

/* ---- API keys ----------------------------------------------------------------------------- */

#define KEY "inferctl-test-key-1"

static void start_keyed(void) { tr_start_daemon(&d, false, KEY); }

Test(inferctl_auth, api_key_is_sent_and_refusals_exit_4, .init = start_keyed, .fini = stop)
{
	CTL(NULL, "models");
	cr_assert_eq(r.status, 4, "%s", r.err);
	cr_assert(strstr(r.err, "UNAUTHENTICATED"), "%s", r.err);
	CTL(NULL, "--api-key", KEY, "models");
	cr_assert_eq(r.status, 0, "%s", r.err);
	CTL(NULL, "--api-key", KEY, "--json", "generate", "-n", "3", "--ignore-eos", "hi");
	cr_assert_eq(r.status, 0, "%s", r.err);
}
