/* inferctl subcommands: health, models, stats, tokenize, cancel, echo. */
#include "inferctl.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define METHOD(x) INFERD__V1__METHOD__METHOD_##x

/* Parses a subcommand that takes only the global options and at most max_args arguments.
 * @return 0, -1 after printing the help, or CTL_EXIT_USAGE. */
static int parse_plain(struct ctl *ctl, int argc, char **argv, const char *help, int max_args)
{
	static const struct option lo[] = { CTL_GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 } };
	int opt, rc;

	optind = 0;
	while ((opt = getopt_long(argc, argv, CTL_GLOBAL_SHORTOPTS, lo, NULL)) != -1) {
		if (opt == CTL_OPT_HELP) {
			fputs(help, stdout);
			return -1;
		}
		if ((rc = ctl_global_opt(ctl, opt, optarg)) != 0)
			return rc;
	}
	if (argc - optind > max_args) {
		ctl_err(ctl, "unexpected argument '%s'", argv[optind + max_args]);
		return CTL_EXIT_USAGE;
	}
	return 0;
}

/* ---- health -------------------------------------------------------------------------------- */

static const char *state_name(int s)
{
	switch (s) {
	case INFERD__V1__SERVING_STATE__SERVING_STATE_SERVING: return "SERVING";
	case INFERD__V1__SERVING_STATE__SERVING_STATE_DRAINING: return "DRAINING";
	case INFERD__V1__SERVING_STATE__SERVING_STATE_NOT_SERVING: return "NOT_SERVING";
	default: return "UNSPECIFIED";
	}
}

int ctl_cmd_health(struct ctl *ctl, int argc, char **argv)
{
	static const char help[] =
		"usage: inferctl health\n"
		"Asks whether the daemon is serving. Prints its state, version, uptime and allocator.\n"
		"Exits 0 when it is SERVING, 4 when it answers but is draining or not serving.\n";
	Inferd__V1__HealthRequest req = INFERD__V1__HEALTH_REQUEST__INIT;
	Inferd__V1__HealthReply *rep = NULL;
	int rc = parse_plain(ctl, argc, argv, help, 0);

	if (rc)
		return rc < 0 ? 0 : rc;
	if ((rc = ctl_connect(ctl)) != 0)
		return rc;
	rc = ctl_unary(ctl, METHOD(HEALTH), &req.base, &inferd__v1__health_reply__descriptor,
	               (ProtobufCMessage **)&rep);
	if (rc)
		return rc;
	if (ctl->json) {
		rc = ctl_print_json(json_pack("{s:s, s:s, s:f, s:s}", "state", state_name(rep->state),
		                              "version", rep->version, "uptime_seconds",
		                              rep->uptime_seconds, "allocator", rep->allocator));
	} else {
		printf("state:     %s\nversion:   %s\nuptime:    %.1f s\nallocator: %s\n",
		       state_name(rep->state), rep->version, rep->uptime_seconds, rep->allocator);
	}
	if (!rc && rep->state != INFERD__V1__SERVING_STATE__SERVING_STATE_SERVING)
		rc = CTL_EXIT_SERVER;
	inferd__v1__health_reply__free_unpacked(rep, NULL);
	return rc;
}

/* ---- models -------------------------------------------------------------------------------- */

static const char *kind_name(int k)
{
	switch (k) {
	case INFERD__V1__MODEL_KIND__MODEL_KIND_LLM: return "llm";
	case INFERD__V1__MODEL_KIND__MODEL_KIND_DIFFUSION: return "diffusion";
	default: return "unspecified";
	}
}

static json_t *model_json(const Inferd__V1__ModelInfo *m)
{
	json_t *adapters = json_array();

	for (size_t i = 0; adapters && i < m->n_adapters; i++)
		json_array_append_new(adapters, json_string(m->adapters[i]));
	return json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:o, s:b}",
	                 "name", m->name, "kind", kind_name(m->kind), "path", m->path,
	                 "architecture", m->architecture, "parameters", (json_int_t)m->parameters,
	                 "dtype", m->dtype, "context_length", (json_int_t)m->context_length,
	                 "vocab_size", (json_int_t)m->vocab_size, "adapters", adapters,
	                 "ready", m->ready);
}

int ctl_cmd_models(struct ctl *ctl, int argc, char **argv)
{
	static const char help[] =
		"usage: inferctl models\n"
		"Lists the models the daemon serves: name, kind, architecture, parameters, weight\n"
		"type, context length, vocabulary size and whether it is ready.\n";
	Inferd__V1__ListModelsRequest req = INFERD__V1__LIST_MODELS_REQUEST__INIT;
	Inferd__V1__ListModelsReply *rep = NULL;
	int rc = parse_plain(ctl, argc, argv, help, 0);

	if (rc)
		return rc < 0 ? 0 : rc;
	if ((rc = ctl_connect(ctl)) != 0)
		return rc;
	rc = ctl_unary(ctl, METHOD(LIST_MODELS), &req.base,
	               &inferd__v1__list_models_reply__descriptor, (ProtobufCMessage **)&rep);
	if (rc)
		return rc;
	if (ctl->json) {
		json_t *arr = json_array();
		for (size_t i = 0; arr && i < rep->n_models; i++)
			json_array_append_new(arr, model_json(rep->models[i]));
		rc = ctl_print_json(json_pack("{s:o}", "models", arr));
	} else {
		printf("%-16s %-9s %-10s %12s %-6s %7s %7s %s\n", "NAME", "KIND", "ARCH", "PARAMS",
		       "DTYPE", "CONTEXT", "VOCAB", "READY");
		for (size_t i = 0; i < rep->n_models; i++) {
			const Inferd__V1__ModelInfo *m = rep->models[i];
			printf("%-16s %-9s %-10s %12llu %-6s %7u %7u %s\n", m->name, kind_name(m->kind),
			       m->architecture, (unsigned long long)m->parameters, m->dtype,
			       m->context_length, m->vocab_size, m->ready ? "yes" : "no");
		}
	}
	inferd__v1__list_models_reply__free_unpacked(rep, NULL);
	return rc;
}

/* ---- stats --------------------------------------------------------------------------------- */

int ctl_cmd_stats(struct ctl *ctl, int argc, char **argv)
{
	static const char help[] =
		"usage: inferctl stats\n"
		"Prints the daemon's counters: calls (by method and status), bytes and frames,\n"
		"scheduler queues, KV-cache blocks, prefix-cache hit rate and token counts.\n";
	Inferd__V1__StatsRequest req = INFERD__V1__STATS_REQUEST__INIT;
	Inferd__V1__StatsReply *r = NULL;
	int rc = parse_plain(ctl, argc, argv, help, 0);

	if (rc)
		return rc < 0 ? 0 : rc;
	if ((rc = ctl_connect(ctl)) != 0)
		return rc;
	rc = ctl_unary(ctl, METHOD(STATS), &req.base, &inferd__v1__stats_reply__descriptor,
	               (ProtobufCMessage **)&r);
	if (rc)
		return rc;
	if (ctl->json) {
		json_t *calls = json_array();
		for (size_t i = 0; calls && i < r->n_calls; i++)
			json_array_append_new(calls, json_pack("{s:s, s:s, s:I}", "method",
			                                       r->calls[i]->method, "status",
			                                       r->calls[i]->status, "count",
			                                       (json_int_t)r->calls[i]->count));
		json_t *o = json_pack("{s:f, s:I, s:I, s:o}", "uptime_seconds", r->uptime_seconds,
		                      "calls_in_flight", (json_int_t)r->calls_in_flight,
		                      "calls_total", (json_int_t)r->calls_total, "calls", calls);
		json_t *more = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
		                         "s:f, s:I}",
		                         "bytes_in", (json_int_t)r->bytes_in,
		                         "bytes_out", (json_int_t)r->bytes_out,
		                         "frames_in", (json_int_t)r->frames_in,
		                         "frames_out", (json_int_t)r->frames_out,
		                         "frames_rejected", (json_int_t)r->frames_rejected,
		                         "requests_running", (json_int_t)r->requests_running,
		                         "requests_waiting", (json_int_t)r->requests_waiting,
		                         "requests_preempted", (json_int_t)r->requests_preempted,
		                         "kv_blocks_used", (json_int_t)r->kv_blocks_used,
		                         "kv_blocks_free", (json_int_t)r->kv_blocks_free,
		                         "tokens_generated", (json_int_t)r->tokens_generated,
		                         "prefix_cache_hit_rate", r->prefix_cache_hit_rate,
		                         "prompt_tokens", (json_int_t)r->prompt_tokens);
		if (o && more)
			json_object_update(o, more);
		json_decref(more);
		rc = ctl_print_json(o);
	} else {
		printf("uptime:              %.1f s\n", r->uptime_seconds);
		printf("calls in flight:     %llu\n", (unsigned long long)r->calls_in_flight);
		printf("calls total:         %llu\n", (unsigned long long)r->calls_total);
		printf("bytes in / out:      %llu / %llu\n", (unsigned long long)r->bytes_in,
		       (unsigned long long)r->bytes_out);
		printf("frames in / out:     %llu / %llu (%llu rejected)\n",
		       (unsigned long long)r->frames_in, (unsigned long long)r->frames_out,
		       (unsigned long long)r->frames_rejected);
		printf("requests running:    %llu (%llu waiting, %llu preempted)\n",
		       (unsigned long long)r->requests_running,
		       (unsigned long long)r->requests_waiting,
		       (unsigned long long)r->requests_preempted);
		printf("kv blocks used/free: %llu / %llu\n", (unsigned long long)r->kv_blocks_used,
		       (unsigned long long)r->kv_blocks_free);
		printf("prefix cache hits:   %.1f %%\n", r->prefix_cache_hit_rate * 100.0);
		printf("prompt tokens:       %llu\n", (unsigned long long)r->prompt_tokens);
		printf("tokens generated:    %llu\n", (unsigned long long)r->tokens_generated);
		if (r->n_calls)
			printf("calls:\n  %-14s %-20s %10s\n", "METHOD", "STATUS", "COUNT");
		for (size_t i = 0; i < r->n_calls; i++)
			printf("  %-14s %-20s %10llu\n", r->calls[i]->method, r->calls[i]->status,
			       (unsigned long long)r->calls[i]->count);
	}
	inferd__v1__stats_reply__free_unpacked(r, NULL);
	return rc;
}

/* ---- tokenize ------------------------------------------------------------------------------ */

int ctl_cmd_tokenize(struct ctl *ctl, int argc, char **argv)
{
	static const char help[] =
		"usage: inferctl tokenize [--model NAME] [--special] [--no-bos] TEXT|-\n"
		"Prints the token ids of TEXT (or of standard input with '-') as the model's\n"
		"tokenizer makes them, and with --json also the pieces.\n"
		"  -m, --model NAME   the model (may be left out when the daemon serves one)\n"
		"      --special      parse special-token text such as <s>\n"
		"      --no-bos       do not add BOS/EOS (added by default, as for prompts)\n";
	static const struct option lo[] = {
		CTL_GLOBAL_LONGOPTS,
		{ "model", required_argument, NULL, 'm' },
		{ "special", no_argument, NULL, 1001 },
		{ "no-bos", no_argument, NULL, 1002 },
		{ NULL, 0, NULL, 0 },
	};
	Inferd__V1__TokenizeRequest req = INFERD__V1__TOKENIZE_REQUEST__INIT;
	Inferd__V1__TokenizeReply *rep = NULL;
	char *text = NULL;
	int opt, rc;

	req.model = "";
	req.add_special = true;
	optind = 0;
	while ((opt = getopt_long(argc, argv, CTL_GLOBAL_SHORTOPTS "m:", lo, NULL)) != -1) {
		switch (opt) {
		case CTL_OPT_HELP: fputs(help, stdout); return 0;
		case 'm': req.model = optarg; break;
		case 1001: req.parse_special = true; break;
		case 1002: req.add_special = false; break;
		default:
			if ((rc = ctl_global_opt(ctl, opt, optarg)) != 0)
				return rc;
		}
	}
	if (argc - optind != 1) {
		ctl_err(ctl, "expected one TEXT argument (or '-' for standard input)");
		return CTL_EXIT_USAGE;
	}
	if ((rc = ctl_read_text(ctl, argv[optind], &text)) != 0)
		return rc;
	req.text = text;
	if ((rc = ctl_connect(ctl)) != 0)
		goto cleanup;
	rc = ctl_unary(ctl, METHOD(TOKENIZE), &req.base, &inferd__v1__tokenize_reply__descriptor,
	               (ProtobufCMessage **)&rep);
	if (rc)
		goto cleanup;
	if (ctl->json) {
		json_t *ids = json_array(), *pieces = json_array();
		for (size_t i = 0; ids && i < rep->n_token_ids; i++)
			json_array_append_new(ids, json_integer(rep->token_ids[i]));
		for (size_t i = 0; pieces && i < rep->n_pieces; i++)
			json_array_append_new(pieces, json_string(rep->pieces[i]));
		rc = ctl_print_json(json_pack("{s:o, s:o, s:I}", "token_ids", ids, "pieces", pieces,
		                              "count", (json_int_t)rep->n_token_ids));
	} else {
		for (size_t i = 0; i < rep->n_token_ids; i++)
			printf("%s%d", i ? " " : "", rep->token_ids[i]);
		printf("\n");
	}
cleanup:
	if (rep)
		inferd__v1__tokenize_reply__free_unpacked(rep, NULL);
	free(text);
	return rc;
}

/* ---- cancel -------------------------------------------------------------------------------- */

int ctl_cmd_cancel(struct ctl *ctl, int argc, char **argv)
{
	static const char help[] =
		"usage: inferctl cancel CALL_ID\n"
		"Sends a Cancel call for CALL_ID and prints the answer.\n"
		"\n"
		"The daemon cancels only calls made on the same client connection, so a Cancel from\n"
		"a separate inferctl process answers NOT_FOUND (exit 4); this command is a probe of\n"
		"the Cancel method. To cancel a generation, press Ctrl-C while 'inferctl generate'\n"
		"runs: it sends Cancel on its own connection, waits for the CANCELLED answer and exits\n"
		"with status 5. A second Ctrl-C quits without waiting. --timeout also ends a call\n"
		"(DEADLINE_EXCEEDED, status 5).\n";
	Inferd__V1__CancelRequest req = INFERD__V1__CANCEL_REQUEST__INIT;
	Inferd__V1__CancelReply *rep = NULL;
	uint64_t id;
	int rc = parse_plain(ctl, argc, argv, help, 1);

	if (rc)
		return rc < 0 ? 0 : rc;
	if (argc - optind != 1) {
		ctl_err(ctl, "expected one CALL_ID; see 'inferctl cancel --help'");
		return CTL_EXIT_USAGE;
	}
	if ((rc = ctl_parse_u64(ctl, "CALL_ID", argv[optind], UINT64_MAX, &id)) != 0)
		return rc;
	req.call_id = id;
	if ((rc = ctl_connect(ctl)) != 0)
		return rc;
	rc = ctl_unary(ctl, METHOD(CANCEL), &req.base, &inferd__v1__cancel_reply__descriptor,
	               (ProtobufCMessage **)&rep);
	if (rc)
		return rc;
	if (ctl->json)
		rc = ctl_print_json(json_pack("{s:I, s:s}", "call_id", (json_int_t)id, "status", "OK"));
	else
		printf("call %llu cancelled\n", (unsigned long long)id);
	inferd__v1__cancel_reply__free_unpacked(rep, NULL);
	return rc;
}

/* ---- echo ---------------------------------------------------------------------------------- */

struct echo_state {
	bool done;
	int status;
	bool local;
	char message[256];
	size_t bytes;
};

static int on_echo(const struct inferd_reply *r, void *arg)
{
	struct echo_state *e = arg;

	if (r->payload_len) {
		Inferd__V1__EchoReply *rep =
			inferd__v1__echo_reply__unpack(NULL, r->payload_len, r->payload);
		if (rep) {
			e->bytes += rep->data.len;
			inferd__v1__echo_reply__free_unpacked(rep, NULL);
		}
	}
	if (r->end_of_stream) {
		e->done = true;
		e->status = r->status;
		e->local = r->local;
		snprintf(e->message, sizeof(e->message), "%s", r->status_message);
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int ctl_cmd_echo(struct ctl *ctl, int argc, char **argv)
{
	static const char help[] =
		"usage: inferctl echo [--count N] [--interval MS] [--size BYTES] [--delay MS]\n"
		"Diagnostic round trips: sends N Echo calls one after the other, MS apart, each\n"
		"carrying BYTES of data, and prints each round-trip time and a summary (like ping).\n"
		"  -n, --count N        round trips (default 4)\n"
		"  -i, --interval MS    pause between them (default 200)\n"
		"  -s, --size BYTES     payload size (default 32)\n"
		"  -d, --delay MS       ask the daemon to wait MS before answering (the time printed\n"
		"                       includes it; with --timeout, a way to see deadlines at work)\n";
	static const struct option lo[] = {
		CTL_GLOBAL_LONGOPTS,
		{ "count", required_argument, NULL, 'n' },
		{ "interval", required_argument, NULL, 'i' },
		{ "size", required_argument, NULL, 's' },
		{ "delay", required_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t count = 4, interval = 200, size = 32, delay = 0;
	double *rtt = NULL, sum = 0;
	uint8_t *data = NULL;
	json_t *arr = NULL;
	int opt, rc = 0;
	uint64_t n_ok = 0;

	optind = 0;
	while ((opt = getopt_long(argc, argv, CTL_GLOBAL_SHORTOPTS "n:i:s:d:", lo, NULL)) != -1) {
		switch (opt) {
		case CTL_OPT_HELP: fputs(help, stdout); return 0;
		case 'n': rc = ctl_parse_u64(ctl, "--count", optarg, 100000, &count); break;
		case 'i': rc = ctl_parse_u64(ctl, "--interval", optarg, 60000, &interval); break;
		case 's': rc = ctl_parse_u64(ctl, "--size", optarg, 1 << 20, &size); break;
		case 'd': rc = ctl_parse_u64(ctl, "--delay", optarg, 60000, &delay); break;
		default: rc = ctl_global_opt(ctl, opt, optarg);
		}
		if (rc)
			return rc;
	}
	if (optind < argc || count == 0) {
		ctl_err(ctl, optind < argc ? "unexpected argument" : "--count must be at least 1");
		return CTL_EXIT_USAGE;
	}
	if (!(rtt = calloc(count, sizeof(*rtt))) || !(data = calloc(size ? size : 1, 1))) {
		ctl_err(ctl, "out of memory");
		rc = 1;
		goto cleanup;
	}
	if ((rc = ctl_connect(ctl)) != 0)
		goto cleanup;
	arr = json_array();
	for (uint64_t i = 0; i < count; i++) {
		Inferd__V1__EchoRequest req = INFERD__V1__ECHO_REQUEST__INIT;
		struct inferd_call_options o = ctl_call_options(ctl);
		struct echo_state e = { 0 };
		double t0;

		if (i && interval) {
			struct timespec ts = { (time_t)(interval / 1000), (long)(interval % 1000) * 1000000L };
			nanosleep(&ts, NULL);
		}
		req.data.data = data;
		req.data.len = size;
		req.count = 1;
		req.interval_ms = (uint32_t)delay;
		t0 = ctl_now();
		rc = inferd_client_start_msg(ctl->client, METHOD(ECHO), &req.base, &o, on_echo, &e, NULL);
		if (rc < 0) {
			ctl_err(ctl, "cannot start the call: %s", strerror(-rc));
			rc = 1;
			goto cleanup;
		}
		while (!e.done)
			if ((rc = inferd_client_poll(ctl->client, -1)) < 0 && rc != -EINTR)
				break;
		rc = 0;
		if (e.status != INFERD__V1__STATUS_CODE__STATUS_OK) {
			rc = ctl_report(ctl, e.status, e.local, e.message);
			goto cleanup;
		}
		rtt[n_ok++] = (ctl_now() - t0) * 1000.0;
		sum += rtt[n_ok - 1];
		if (ctl->json)
			json_array_append_new(arr, json_real(rtt[n_ok - 1]));
		else
			printf("%zu bytes: seq=%llu time=%.3f ms\n", e.bytes, (unsigned long long)i,
			       rtt[n_ok - 1]);
		fflush(stdout);
	}
	qsort(rtt, n_ok, sizeof(*rtt), cmp_double);
	if (ctl->json) {
		rc = ctl_print_json(json_pack("{s:I, s:I, s:O, s:f, s:f, s:f, s:f}", "count",
		                              (json_int_t)n_ok, "size", (json_int_t)size,
		                              "rtt_ms", arr, "min_ms", rtt[0], "mean_ms", sum / n_ok,
		                              "median_ms", rtt[n_ok / 2], "max_ms", rtt[n_ok - 1]));
	} else {
		printf("%llu round trips: min/mean/median/max = %.3f/%.3f/%.3f/%.3f ms\n",
		       (unsigned long long)n_ok, rtt[0], sum / n_ok, rtt[n_ok / 2], rtt[n_ok - 1]);
	}
cleanup:
	json_decref(arr);
	free(rtt);
	free(data);
	return rc;
}
