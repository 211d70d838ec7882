/* inferctl generate: one streaming Generate call, printed as it streams; Ctrl-C cancels. */
#include "inferctl.h"

#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STOP 16

static const char help[] =
"usage: inferctl generate [OPTIONS] PROMPT|-\n"
"Generates text from PROMPT (or from standard input with '-') and prints it as it streams.\n"
"At the end, the finish reason, token counts and timings go to standard error; with --json\n"
"nothing streams and one JSON object (text, token ids, finish reason, usage) is printed.\n"
"Ctrl-C sends Cancel for the call and exits with status 5 once the daemon confirms; a\n"
"second Ctrl-C quits at once.\n"
"  -m, --model NAME          the model (may be left out when the daemon serves one)\n"
"  -n, --max-tokens N        tokens to generate at most (default 0: up to the context)\n"
"      --temperature T       0 = greedy (default 0)\n"
"      --top-k K             keep the K likeliest tokens (0 = off)\n"
"      --top-p P             nucleus sampling (0 or 1 = off)\n"
"      --min-p P             drop tokens below P x the top probability (0 = off)\n"
"      --repeat-penalty R    repetition penalty (0 or 1 = off)\n"
"      --presence-penalty P  subtract P from tokens already generated (OpenAI's)\n"
"      --frequency-penalty F subtract F x count from tokens already generated\n"
"      --logit-bias ID=B     add B to token ID's logit; repeatable (up to 64)\n"
"      --stop-token ID       stop at token ID; repeatable (up to 16)\n"
"      --logprobs            report each token's logprob (--json: a logprobs array;\n"
"                            otherwise the mean in the summary line)\n"
"      --top-logprobs N      and the N likeliest alternatives (0..20; implies --logprobs)\n"
"      --seed S              reproducible sampling\n"
"      --stop STR            stop when STR is generated; repeatable (up to 16)\n"
"      --priority N          larger runs earlier under the priority policy\n"
"      --ignore-eos          keep going past the end-of-sequence token\n"
"      --special             parse special-token text such as <s> in the prompt\n";

enum {
	OPT_TEMPERATURE = 1100, OPT_TOP_K, OPT_TOP_P, OPT_MIN_P, OPT_REPEAT, OPT_SEED, OPT_STOP,
	OPT_PRIORITY, OPT_IGNORE_EOS, OPT_SPECIAL, OPT_PRESENCE, OPT_FREQUENCY, OPT_LOGIT_BIAS,
	OPT_STOP_TOKEN, OPT_LOGPROBS, OPT_TOP_LOGPROBS,
};

#define MAX_BIAS 64
#define MAX_STOP_IDS 16


/* ---- the call's state ---------------------------------------------------------------------- */

struct gen_state {
	bool json, done, local;
	int status;
	char message[512];
	char *text;                    /* accumulated (for --json and the final newline) */
	size_t text_len, text_cap;
	json_t *ids;                   /* --json: token ids */
	json_t *logprobs;              /* --json --logprobs: one object per token */
	double logprob_sum;            /* of the sampled tokens */
	uint32_t n_logprobs;
	uint32_t n_tokens;
	int finish;
	Inferd__V1__Usage usage;
	bool have_usage;
	double t_start, t_first;
	int oom;
};

static int append_text(struct gen_state *g, const char *s, size_t n)
{
	if (g->text_len + n + 1 > g->text_cap) {
		size_t cap = g->text_cap ? g->text_cap : 1024;
		while (cap < g->text_len + n + 1)
			cap *= 2;
		char *nt = realloc(g->text, cap);
		if (!nt)
			return -ENOMEM;
		g->text = nt;
		g->text_cap = cap;
	}
	memcpy(g->text + g->text_len, s, n);
	g->text_len += n;
	g->text[g->text_len] = '\0';
	return 0;
}

static int on_frame(const struct inferd_reply *r, void *arg)
{
	struct gen_state *g = arg;

	if (r->payload_len) {
		Inferd__V1__GenerateReply *rep =
			inferd__v1__generate_reply__unpack(NULL, r->payload_len, r->payload);
		if (rep) {
			size_t n = strlen(rep->text);
			if (rep->n_token_ids && !g->t_first)
				g->t_first = ctl_now();
			g->n_tokens += rep->n_token_ids;
			for (size_t i = 0; g->json && g->ids && i < rep->n_token_ids; i++)
				json_array_append_new(g->ids, json_integer(rep->token_ids[i]));
			if (n && append_text(g, rep->text, n) < 0)
				g->oom = 1;
			for (size_t i = 0; i < rep->n_logprobs; i++) {
				const Inferd__V1__TokenLogprob *lp = rep->logprobs[i];
				g->logprob_sum += lp->logprob;
				g->n_logprobs++;
				if (!g->logprobs)
					continue;
				json_t *top = json_array();
				for (size_t k = 0; top && k < lp->n_top; k++)
					json_array_append_new(top, json_pack("{s:i, s:f, s:s}", "token_id",
					                                     lp->top[k]->token_id, "logprob",
					                                     (double)lp->top[k]->logprob, "text",
					                                     lp->top[k]->text));
				json_array_append_new(g->logprobs,
				                      json_pack("{s:i, s:f, s:o*}", "token_id", lp->token_id,
				                                "logprob", (double)lp->logprob, "top", top));
			}
			if (n && !g->json) {
				fwrite(rep->text, 1, n, stdout);
				fflush(stdout);
			}
			if (rep->usage) {
				g->usage = *rep->usage;
				g->usage.base.unknown_fields = NULL;
				g->usage.base.n_unknown_fields = 0;
				g->have_usage = true;
				g->finish = rep->finish_reason;
			}
			inferd__v1__generate_reply__free_unpacked(rep, NULL);
		}
	}
	if (r->end_of_stream) {
		g->done = true;
		g->status = r->status;
		g->local = r->local;
		snprintf(g->message, sizeof(g->message), "%s", r->status_message);
	}
	return 0;
}

static bool gen_finished(void *arg)
{
	return ((const struct gen_state *)arg)->done;
}

/* ---- output -------------------------------------------------------------------------------- */

static int print_result(const struct gen_state *g)
{
	double total = ctl_now() - g->t_start;
	double ttft = g->t_first ? g->t_first - g->t_start : 0;
	const Inferd__V1__Usage *u = &g->usage;

	if (g->json) {
		json_t *o = json_pack("{s:s%, s:O, s:s, s:{s:I, s:I, s:I, s:f, s:f, s:f, s:f}, "
		                      "s:f, s:f}",
		                      "text", g->text ? g->text : "", g->text_len, "token_ids", g->ids,
		                      "finish_reason", ctl_finish_name(g->finish), "usage",
		                      "prompt_tokens", (json_int_t)u->prompt_tokens,
		                      "completion_tokens", (json_int_t)u->completion_tokens,
		                      "cached_prompt_tokens", (json_int_t)u->cached_prompt_tokens,
		                      "queue_seconds", u->queue_seconds,
		                      "time_to_first_token_seconds", u->time_to_first_token_seconds,
		                      "time_per_output_token_seconds", u->time_per_output_token_seconds,
		                      "total_seconds", u->total_seconds,
		                      "client_seconds", total, "client_ttft_seconds", ttft);
		if (o && g->logprobs)
			json_object_set(o, "logprobs", g->logprobs);
		return ctl_print_json(o);
	}
	if (g->text_len && g->text[g->text_len - 1] != '\n')
		putchar('\n');
	fflush(stdout);
	fprintf(stderr, "[finish %s | prompt %u tokens (%u cached), completion %u tokens | "
	        "queue %.1f ms, ttft %.1f ms, tpot %.2f ms, total %.1f ms | client %.1f ms, "
	        "%.1f tokens/s]\n",
	        ctl_finish_name(g->finish), u->prompt_tokens, u->cached_prompt_tokens,
	        u->completion_tokens, u->queue_seconds * 1e3, u->time_to_first_token_seconds * 1e3,
	        u->time_per_output_token_seconds * 1e3, u->total_seconds * 1e3, total * 1e3,
	        total > 0 ? g->n_tokens / total : 0.0);
	if (g->n_logprobs)
		fprintf(stderr, "[logprobs: mean %.4f over %u tokens]\n",
		        g->logprob_sum / g->n_logprobs, g->n_logprobs);
	return 0;
}

/* ---- the command --------------------------------------------------------------------------- */

int ctl_cmd_generate(struct ctl *ctl, int argc, char **argv)
{
	static const struct option lo[] = {
		CTL_GLOBAL_LONGOPTS,
		{ "model", required_argument, NULL, 'm' },
		{ "max-tokens", required_argument, NULL, 'n' },
		{ "temperature", required_argument, NULL, OPT_TEMPERATURE },
		{ "top-k", required_argument, NULL, OPT_TOP_K },
		{ "top-p", required_argument, NULL, OPT_TOP_P },
		{ "min-p", required_argument, NULL, OPT_MIN_P },
		{ "repeat-penalty", required_argument, NULL, OPT_REPEAT },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "stop", required_argument, NULL, OPT_STOP },
		{ "priority", required_argument, NULL, OPT_PRIORITY },
		{ "ignore-eos", no_argument, NULL, OPT_IGNORE_EOS },
		{ "special", no_argument, NULL, OPT_SPECIAL },
		{ "presence-penalty", required_argument, NULL, OPT_PRESENCE },
		{ "frequency-penalty", required_argument, NULL, OPT_FREQUENCY },
		{ "logit-bias", required_argument, NULL, OPT_LOGIT_BIAS },
		{ "stop-token", required_argument, NULL, OPT_STOP_TOKEN },
		{ "logprobs", no_argument, NULL, OPT_LOGPROBS },
		{ "top-logprobs", required_argument, NULL, OPT_TOP_LOGPROBS },
		{ NULL, 0, NULL, 0 },
	};
	Inferd__V1__GenerateRequest req = INFERD__V1__GENERATE_REQUEST__INIT;
	Inferd__V1__SamplingParams sp = INFERD__V1__SAMPLING_PARAMS__INIT;
	struct gen_state g = { .json = ctl->json };
	char *stops[MAX_STOP], *prompt = NULL;
	size_t n_stops = 0, n_bias = 0, n_stop_ids = 0;
	Inferd__V1__SamplingParams__LogitBiasEntry bias[MAX_BIAS], *bias_ptrs[MAX_BIAS];
	int32_t stop_ids[MAX_STOP_IDS];
	uint64_t u, call_id = 0;
	double d;
	int opt, rc = 0;

	req.model = "";
	optind = 0;
	while ((opt = getopt_long(argc, argv, CTL_GLOBAL_SHORTOPTS "m:n:", lo, NULL)) != -1) {
		switch (opt) {
		case CTL_OPT_HELP: fputs(help, stdout); return 0;
		case 'm': req.model = optarg; break;
		case 'n':
			if (!(rc = ctl_parse_u64(ctl, "--max-tokens", optarg, UINT32_MAX, &u)))
				req.max_tokens = (uint32_t)u;
			break;
		case OPT_TEMPERATURE:
			if (!(rc = ctl_parse_double(ctl, "--temperature", optarg, 0, 100, &d)))
				sp.temperature = (float)d;
			break;
		case OPT_TOP_K:
			if (!(rc = ctl_parse_u64(ctl, "--top-k", optarg, UINT32_MAX, &u)))
				sp.top_k = (uint32_t)u;
			break;
		case OPT_TOP_P:
			if (!(rc = ctl_parse_double(ctl, "--top-p", optarg, 0, 1, &d)))
				sp.top_p = (float)d;
			break;
		case OPT_MIN_P:
			if (!(rc = ctl_parse_double(ctl, "--min-p", optarg, 0, 1, &d)))
				sp.min_p = (float)d;
			break;
		case OPT_REPEAT:
			if (!(rc = ctl_parse_double(ctl, "--repeat-penalty", optarg, 0, 100, &d)))
				sp.repetition_penalty = (float)d;
			break;
		case OPT_SEED:
			if (!(rc = ctl_parse_u64(ctl, "--seed", optarg, UINT64_MAX, &u))) {
				sp.use_seed = true;
				sp.seed = u;
			}
			break;
		case OPT_STOP:
			if (n_stops == MAX_STOP) {
				ctl_err(ctl, "at most %d --stop strings", MAX_STOP);
				rc = CTL_EXIT_USAGE;
			} else {
				stops[n_stops++] = optarg;
			}
			break;
		case OPT_PRIORITY:
			if (!(rc = ctl_parse_double(ctl, "--priority", optarg, INT32_MIN, INT32_MAX, &d)))
				req.priority = (int32_t)d;
			if (!rc && d != (int32_t)d) {
				ctl_err(ctl, "--priority: expected a whole number");
				rc = CTL_EXIT_USAGE;
			}
			break;
		case OPT_PRESENCE:
			if (!(rc = ctl_parse_double(ctl, "--presence-penalty", optarg, -2, 2, &d)))
				sp.presence_penalty = (float)d;
			break;
		case OPT_FREQUENCY:
			if (!(rc = ctl_parse_double(ctl, "--frequency-penalty", optarg, -2, 2, &d)))
				sp.frequency_penalty = (float)d;
			break;
		case OPT_LOGIT_BIAS: {
			char *end = NULL;
			long id = strtol(optarg, &end, 10);
			double b = end && *end == '=' ? strtod(end + 1, &end) : 0;
			if (n_bias == MAX_BIAS || end == optarg || !end || *end || id < 0 ||
			    id > INT32_MAX || !strchr(optarg, '=') || b < -100 || b > 100) {
				ctl_err(ctl, "--logit-bias: expected ID=BIAS with BIAS in [-100, 100] "
				        "(at most %d), got '%s'", MAX_BIAS, optarg);
				rc = CTL_EXIT_USAGE;
				break;
			}
			inferd__v1__sampling_params__logit_bias_entry__init(&bias[n_bias]);
			bias[n_bias].key = (int32_t)id;
			bias[n_bias].value = (float)b;
			bias_ptrs[n_bias] = &bias[n_bias];
			n_bias++;
			break;
		}
		case OPT_STOP_TOKEN:
			if (n_stop_ids == MAX_STOP_IDS) {
				ctl_err(ctl, "at most %d --stop-token ids", MAX_STOP_IDS);
				rc = CTL_EXIT_USAGE;
			} else if (!(rc = ctl_parse_u64(ctl, "--stop-token", optarg, INT32_MAX, &u))) {
				stop_ids[n_stop_ids++] = (int32_t)u;
			}
			break;
		case OPT_LOGPROBS: sp.logprobs = true; break;
		case OPT_TOP_LOGPROBS:
			if (!(rc = ctl_parse_u64(ctl, "--top-logprobs", optarg, 20, &u))) {
				sp.top_logprobs = (uint32_t)u;
				sp.logprobs = true;
			}
			break;
		case OPT_IGNORE_EOS: sp.ignore_eos = true; break;
		case OPT_SPECIAL: req.parse_special = true; break;
		default: rc = ctl_global_opt(ctl, opt, optarg);
		}
		if (rc)
			return rc;
	}
	g.json = ctl->json;
	if (argc - optind != 1) {
		ctl_err(ctl, "expected one PROMPT argument (or '-' for standard input); "
		        "see 'inferctl generate --help'");
		return CTL_EXIT_USAGE;
	}
	if ((rc = ctl_read_text(ctl, argv[optind], &prompt)) != 0)
		return rc;
	sp.n_stop = n_stops;
	sp.stop = stops;
	sp.n_logit_bias = n_bias;
	sp.logit_bias = bias_ptrs;
	sp.n_stop_token_ids = n_stop_ids;
	sp.stop_token_ids = stop_ids;
	if (g.json && sp.logprobs && !(g.logprobs = json_array())) {
		rc = 1;
		goto cleanup;
	}
	req.sampling = &sp;
	req.prompt_case = INFERD__V1__GENERATE_REQUEST__PROMPT_TEXT;
	req.text = prompt;
	if (g.json && !(g.ids = json_array())) {
		rc = 1;
		goto cleanup;
	}
	if ((rc = ctl_connect(ctl)) != 0)
		goto cleanup;

	g.t_start = ctl_now();
	if ((rc = ctl_stream_call(ctl, INFERD__V1__METHOD__METHOD_GENERATE, &req.base, on_frame,
	                          &g, gen_finished, &call_id)) != 0)
		goto cleanup;
	if (g.oom) {
		ctl_err(ctl, "out of memory");
		rc = 1;
		goto cleanup;
	}
	if (g.status != INFERD__V1__STATUS_CODE__STATUS_OK) {
		if (!g.json && g.text_len && g.text[g.text_len - 1] != '\n')
			putchar('\n');
		fflush(stdout);
		rc = ctl_report(ctl, g.status, g.local, g.message);
		goto cleanup;
	}
	rc = print_result(&g);
cleanup:
	json_decref(g.ids);
	json_decref(g.logprobs);
	free(g.text);
	free(prompt);
	return rc;
}
