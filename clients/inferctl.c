/* inferctl: main, global options and the helpers its subcommands share. */
#include "inferctl.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inferd-config.h"

/* ---- messages and parsing ---------------------------------------------------------------- */

void ctl_err(const struct ctl *ctl, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "inferctl: ");
	if (ctl->command)
		fprintf(stderr, "%s: ", ctl->command);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int ctl_parse_u64(const struct ctl *ctl, const char *opt, const char *s, uint64_t max,
                  uint64_t *out)
{
	char *end = NULL;
	unsigned long long v;

	errno = 0;
	if (!s || !*s || *s == '-')
		goto bad;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		goto bad;
	*out = v;
	return 0;
bad:
	ctl_err(ctl, "%s: expected a whole number up to %llu, got '%s'", opt,
	        (unsigned long long)max, s ? s : "");
	return CTL_EXIT_USAGE;
}

int ctl_parse_double(const struct ctl *ctl, const char *opt, const char *s, double lo, double hi,
                     double *out)
{
	char *end = NULL;
	double v;

	errno = 0;
	if (!s || !*s)
		goto bad;
	v = strtod(s, &end);
	if (errno || *end || isnan(v) || v < lo || v > hi)
		goto bad;
	*out = v;
	return 0;
bad:
	ctl_err(ctl, "%s: expected a number in [%g, %g], got '%s'", opt, lo, hi, s ? s : "");
	return CTL_EXIT_USAGE;
}

int ctl_global_opt(struct ctl *ctl, int opt, const char *arg)
{
	switch (opt) {
	case CTL_OPT_CONNECT:
		if (ctl->n_urls == CTL_MAX_URLS) {
			ctl_err(ctl, "at most %d --connect endpoints", CTL_MAX_URLS);
			return CTL_EXIT_USAGE;
		}
		ctl->urls[ctl->n_urls++] = arg;
		return 0;
	case CTL_OPT_TIMEOUT:
		return ctl_parse_double(ctl, "--timeout", arg, 0, 1e6, &ctl->timeout_s);
	case CTL_OPT_JSON:
		ctl->json = true;
		return 0;
	case CTL_OPT_API_KEY:
		ctl->api_key = arg;
		return 0;
	default:
		/* getopt printed what was wrong */
		ctl_err(ctl, "try 'inferctl%s%s --help'", ctl->command ? " " : "",
		        ctl->command ? ctl->command : "");
		return CTL_EXIT_USAGE;
	}
}

int ctl_read_text(const struct ctl *ctl, const char *arg, char **out)
{
	size_t cap = 4096, len = 0, n;
	char *buf;

	*out = NULL;
	if (strcmp(arg, "-") != 0) {
		if (!(*out = strdup(arg)))
			goto nomem;
		return 0;
	}
	if (!(buf = malloc(cap)))
		goto nomem;
	while ((n = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
		len += n;
		if (cap - len - 1 == 0) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				goto nomem;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (ferror(stdin)) {
		free(buf);
		ctl_err(ctl, "cannot read standard input: %s", strerror(errno));
		return CTL_EXIT_USAGE;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
nomem:
	ctl_err(ctl, "out of memory");
	return 1;
}

/* ---- calls --------------------------------------------------------------------------------- */

int ctl_connect(struct ctl *ctl)
{
	struct inferd_client_options o = { .api_key = ctl->api_key, .client_name = "inferctl" };
	const char *env = getenv("INFERD_URL");
	char err[256];
	int rc;

	if (!ctl->n_urls)
		ctl->urls[ctl->n_urls++] = env && *env ? env : CTL_DEFAULT_URL;
	/* Without an answer, give up on connecting after the deadline (at most 5 s). */
	o.connect_timeout_ms = 5000;
	if (ctl->timeout_s > 0 && ctl->timeout_s * 1000.0 < o.connect_timeout_ms)
		o.connect_timeout_ms = ctl->timeout_s * 1000.0 < 1 ? 1 : (int)(ctl->timeout_s * 1000.0);
	rc = inferd_client_new(ctl->urls, ctl->n_urls, &o, &ctl->client, err, sizeof(err));
	if (rc < 0) {
		ctl_err(ctl, "%s", err);
		return CTL_EXIT_CONNECT;
	}
	return 0;
}

struct inferd_call_options ctl_call_options(const struct ctl *ctl)
{
	struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;
	if (ctl->timeout_s > 0) {
		o.deadline_ms = (uint64_t)(ctl->timeout_s * 1000.0);
		if (!o.deadline_ms)
			o.deadline_ms = 1;
	}
	return o;
}

int ctl_exit_for(int status, bool local)
{
	switch (status) {
	case INFERD__V1__STATUS_CODE__STATUS_OK:
		return CTL_EXIT_OK;
	case INFERD__V1__STATUS_CODE__STATUS_CANCELLED:
	case INFERD__V1__STATUS_CODE__STATUS_DEADLINE_EXCEEDED:
		return CTL_EXIT_CANCELLED;
	case INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE:
		return local ? CTL_EXIT_CONNECT : CTL_EXIT_SERVER;
	default:
		return CTL_EXIT_SERVER;
	}
}

int ctl_report(const struct ctl *ctl, int status, bool local, const char *message)
{
	if (status == INFERD__V1__STATUS_CODE__STATUS_OK)
		return CTL_EXIT_OK;
	ctl_err(ctl, "%s: %s%s", inferd_client_status_name(status),
	        message && *message ? message : "(no message)", local ? " (client side)" : "");
	return ctl_exit_for(status, local);
}

struct unary_result {
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *reply;
	int status;
	bool local, done;
	char message[512];
};

static int on_unary(const struct inferd_reply *r, void *arg)
{
	struct unary_result *u = arg;

	if (!r->end_of_stream)
		return 0;
	u->done = true;
	u->status = r->status;
	u->local = r->local;
	snprintf(u->message, sizeof(u->message), "%s", r->status_message);
	if (r->status == INFERD__V1__STATUS_CODE__STATUS_OK) {
		u->reply = protobuf_c_message_unpack(u->desc, NULL, r->payload_len, r->payload);
		if (!u->reply) {
			u->status = INFERD__V1__STATUS_CODE__STATUS_INTERNAL;
			snprintf(u->message, sizeof(u->message), "the reply does not decode as %s",
			         u->desc->name);
		}
	}
	return 0;
}

int ctl_unary(struct ctl *ctl, int method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply)
{
	struct unary_result u = { .desc = desc };
	struct inferd_call_options o = ctl_call_options(ctl);
	int rc;

	*reply = NULL;
	rc = inferd_client_start_msg(ctl->client, method, req, &o, on_unary, &u, NULL);
	if (rc < 0) {
		ctl_err(ctl, "cannot start the call: %s", strerror(-rc));
		return 1;
	}
	while (!u.done) {
		rc = inferd_client_poll(ctl->client, -1);
		if (rc < 0 && rc != -EINTR) {
			ctl_err(ctl, "polling failed: %s", strerror(-rc));
			return CTL_EXIT_CONNECT;
		}
	}
	if (u.status != INFERD__V1__STATUS_CODE__STATUS_OK)
		return ctl_report(ctl, u.status, u.local, u.message);
	*reply = u.reply;
	return 0;
}

int ctl_print_json(json_t *v)
{
	int rc = 0;

	if (!v)
		return 1;
	if (json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) < 0 ||
	    fputc('\n', stdout) == EOF || fflush(stdout) == EOF)
		rc = 1;
	json_decref(v);
	return rc;
}

const char *ctl_finish_name(int finish_reason)
{
	switch (finish_reason) {
	case INFERD__V1__FINISH_REASON__FINISH_REASON_STOP: return "stop";
	case INFERD__V1__FINISH_REASON__FINISH_REASON_LENGTH: return "length";
	case INFERD__V1__FINISH_REASON__FINISH_REASON_CANCELLED: return "cancelled";
	case INFERD__V1__FINISH_REASON__FINISH_REASON_ERROR: return "error";
	default: return "unspecified";
	}
}

/* ---- main ---------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
	"usage: inferctl [--connect URL]... [--timeout SEC] [--json] [--api-key KEY] COMMAND [ARGS]\n"
	"Talks to an inferd daemon over its native protocol.\n"
	"\n"
	"Commands:\n"
	"  health                 is the daemon serving? (version, uptime)\n"
	"  models                 the models it serves\n"
	"  stats                  counters: calls, bytes, scheduler, tokens\n"
	"  generate PROMPT|-      generate text, printed as it streams (Ctrl-C cancels)\n"
	"  tokenize TEXT|-        token ids of a text with a model's tokenizer\n"
	"  echo                   diagnostic round trips (prints round-trip times)\n"
	"  cancel CALL_ID         send a Cancel call (see 'inferctl cancel --help')\n"
	"  image -o FILE PROMPT|- generate images with a diffusion model into PNG files\n"
	"  adapter                not available yet\n"
	"\n"
	"Options (also accepted after the command):\n"
	"  -c, --connect URL      daemon address, tcp://HOST:PORT or ipc://PATH; repeatable\n"
	"                         (default: $INFERD_URL, else " CTL_DEFAULT_URL ")\n"
	"  -t, --timeout SEC      deadline of each call (default: none; connecting gives up\n"
	"                         after min(SEC, 5) seconds)\n"
	"  -j, --json             machine-readable output on stdout\n"
	"      --api-key KEY      API key sent with every call\n"
	"  -h, --help             this help; 'inferctl COMMAND --help' for a command's\n"
	"  -V, --version          print the version\n"
	"\n"
	"Exit status: 0 ok, 2 usage error, 3 the daemon could not be reached, 4 the daemon\n"
	"answered an error status (its message is printed), 5 cancelled or deadline exceeded.\n");
}

struct command {
	const char *name;
	int (*fn)(struct ctl *ctl, int argc, char **argv);
};

static const struct command commands[] = {
	{ "health", ctl_cmd_health },
	{ "models", ctl_cmd_models },
	{ "stats", ctl_cmd_stats },
	{ "generate", ctl_cmd_generate },
	{ "tokenize", ctl_cmd_tokenize },
	{ "echo", ctl_cmd_echo },
	{ "cancel", ctl_cmd_cancel },
	{ "image", ctl_cmd_image },
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		CTL_GLOBAL_LONGOPTS,
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl ctl = { 0 };
	int opt, rc = CTL_EXIT_USAGE;

	while ((opt = getopt_long(argc, argv, "+" CTL_GLOBAL_SHORTOPTS "V", longopts, NULL)) != -1) {
		if (opt == CTL_OPT_HELP) {
			usage(stdout);
			return 0;
		}
		if (opt == 'V') {
			printf("inferctl %s\n", INFERD_VERSION);
			return 0;
		}
		if ((rc = ctl_global_opt(&ctl, opt, optarg)) != 0)
			return rc;
	}
	if (optind >= argc) {
		usage(stderr);
		return CTL_EXIT_USAGE;
	}
	ctl.command = argv[optind];
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, ctl.command) != 0)
			continue;
		rc = commands[i].fn(&ctl, argc - optind, argv + optind);
		goto done;
	}
	if (strcmp(ctl.command, "adapter") == 0) {
		ctl_err(&ctl, "not available yet: the daemon does not serve %s yet",
		        "LoadAdapter/UnloadAdapter");
		rc = CTL_EXIT_USAGE;
		goto done;
	}
	ctl.command = NULL;
	ctl_err(&ctl, "unknown command '%s'; try 'inferctl --help'", argv[optind]);
	rc = CTL_EXIT_USAGE;
done:
	inferd_client_free(ctl.client);
	return rc;
}
