/* Helpers of the command-line client tests: run inferctl / inferd-bench to completion with
 * captured output, make a tiny model, query the daemon's token counter. */
#ifndef INFERD_TESTS_TOOL_RUN_H
#define INFERD_TESTS_TOOL_RUN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon-fixture.h"

#define TOOL_OUT_MAX 65536

struct tool_result {
	int status;                    /* exit status, -1 when killed by a signal */
	char out[TOOL_OUT_MAX];        /* stdout */
	char err[TOOL_OUT_MAX];        /* stderr */
};

/* The binaries, from INFERCTL_BIN / INFERD_BENCH_BIN (set by meson test). */
const char *tr_inferctl(void);
const char *tr_bench(void);

/* Runs argv (NULL-terminated; argv[0] the binary) with stdin_text as standard input (NULL:
 * /dev/null), waits, and captures stdout and stderr. r is large: make it static or heap. */
void tr_run(const char *const argv[], const char *stdin_text, struct tool_result *r);

/* Parses r->out as JSON (asserts it does). Release with json_decref. */
json_t *tr_json(const struct tool_result *r);

/* Makes a random llama model with inferd-mkmodel in dir; extra: more size options or "".
 * Writes its path to path. */
void tr_make_model(const char *dir, const char *name, const char *size_opts, char *path,
                   size_t pathlen);

/* The daemon's Stats.tokens_generated. */
uint64_t tr_tokens_generated(const struct test_daemon *d);

/* Starts a daemon serving a tiny model as "tiny" (vocab 512, context 256) and, when big is
 * true, also a slower one as "big" (for Ctrl-C tests); api_key: the one key it accepts, or
 * NULL for none. */
void tr_start_daemon(struct test_daemon *d, bool big, const char *api_key);
/* The daemon's HTTP API (OpenAI-compatible), http://127.0.0.1:PORT. */
const char *tr_http_url(void);
/* Stops it and removes its files. */
void tr_stop_daemon(struct test_daemon *d);

#endif
