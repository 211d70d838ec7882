/* inferctl: the command-line client of inferd. Shared state and helpers of its subcommands.
 *
 * Conventions: every subcommand function returns the process exit code (enum ctl_exit); only
 * main() exits. Messages for the user go to stderr prefixed with "inferctl: COMMAND: ".
 */
#ifndef INFERD_INFERCTL_H
#define INFERD_INFERCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "inferd-client.h"

/* Exit codes (documented in inferctl.1 and the README). */
enum ctl_exit {
	CTL_EXIT_OK = 0,
	CTL_EXIT_USAGE = 2,        /* bad command line */
	CTL_EXIT_CONNECT = 3,      /* no endpoint reached (UNAVAILABLE made by the client library) */
	CTL_EXIT_SERVER = 4,       /* the daemon answered an error status */
	CTL_EXIT_CANCELLED = 5,    /* cancelled (Ctrl-C) or deadline exceeded */
};

#define CTL_MAX_URLS 16
#define CTL_DEFAULT_URL "tcp://127.0.0.1:7070"

struct ctl {
	const char *urls[CTL_MAX_URLS];
	size_t n_urls;
	double timeout_s;              /* per-call deadline; 0 = none */
	bool json;                     /* machine-readable output on stdout */
	const char *api_key;
	const char *command;           /* the subcommand's name, for messages */
	struct inferd_client *client;  /* made by ctl_connect() */
};

/* Global options, accepted before the command and by every subcommand. */
#define CTL_OPT_CONNECT 'c'
#define CTL_OPT_TIMEOUT 't'
#define CTL_OPT_JSON 'j'
#define CTL_OPT_HELP 'h'
#define CTL_OPT_API_KEY 1000
#define CTL_GLOBAL_LONGOPTS \
	{ "connect", required_argument, NULL, CTL_OPT_CONNECT }, \
	{ "timeout", required_argument, NULL, CTL_OPT_TIMEOUT }, \
	{ "json", no_argument, NULL, CTL_OPT_JSON }, \
	{ "api-key", required_argument, NULL, CTL_OPT_API_KEY }, \
	{ "help", no_argument, NULL, CTL_OPT_HELP }
#define CTL_GLOBAL_SHORTOPTS "c:t:jh"

/* Handles a global option seen by a subcommand's getopt loop (not --help).
 * @return 0, or CTL_EXIT_USAGE with a message printed (also for unknown options). */
int ctl_global_opt(struct ctl *ctl, int opt, const char *arg);

/* Prints "inferctl: COMMAND: message" on stderr. */
void ctl_err(const struct ctl *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses numbers strictly (the whole string). @return 0 or CTL_EXIT_USAGE with a message. */
int ctl_parse_u64(const struct ctl *ctl, const char *opt, const char *s, uint64_t max,
                  uint64_t *out);
int ctl_parse_double(const struct ctl *ctl, const char *opt, const char *s, double lo, double hi,
                     double *out);

/* Reads the argument, or all of stdin when it is "-". @return 0 and *out (free()), or
 * CTL_EXIT_USAGE. */
int ctl_read_text(const struct ctl *ctl, const char *arg, char **out);

/* Connects the client to ctl->urls (the connection itself is made in the background).
 * @return 0 or CTL_EXIT_CONNECT. */
int ctl_connect(struct ctl *ctl);

/* Call options carrying ctl->timeout_s. */
struct inferd_call_options ctl_call_options(const struct ctl *ctl);

/* The exit code of a final status. */
int ctl_exit_for(int status, bool local);

/* Prints a failed call's status (stderr) and @return its exit code; 0 for OK. */
int ctl_report(const struct ctl *ctl, int status, bool local, const char *message);

/* Runs a unary call to its end. @return 0 and *reply (free with
 * protobuf_c_message_free_unpacked()), or an exit code with the error printed. */
int ctl_unary(struct ctl *ctl, int method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply);

/* Prints a JSON value on stdout (indented) and releases it. @return 0, or 1 when it could not
 * be written (CTL_EXIT_SERVER is not right for that; 1 means a local failure). */
int ctl_print_json(json_t *v);

/* Monotonic seconds. */
double ctl_now(void);

/* Runs a streaming call (inferctl-stream.c): starts it, delivers its frames to fn until
 * finished(arg) is true (the last frame came, or the caller gave up on it). Ctrl-C sends Cancel
 * (the daemon's CANCELLED then reaches fn); a second Ctrl-C returns at once. *call_id gets
 * the call's id (0 when it did not start).
 * @return 0, 1 (the call did not start), CTL_EXIT_CONNECT (polling failed),
 * CTL_EXIT_CANCELLED (a second Ctrl-C). */
int ctl_stream_call(struct ctl *ctl, int method, const ProtobufCMessage *req, inferd_reply_fn fn,
                    void *arg, bool (*finished)(void *arg), uint64_t *call_id);

/* Names of protocol enums. */
const char *ctl_finish_name(int finish_reason);

/* ---- subcommands (inferctl-cmds.c, inferctl-generate.c, inferctl-image.c) -------------- */
int ctl_cmd_health(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_models(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_stats(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_tokenize(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_cancel(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_echo(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_generate(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_image(struct ctl *ctl, int argc, char **argv);

#endif
