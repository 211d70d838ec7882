/* inferd-bench: command line, set-up and the sweep over points. */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inferd-config.h"

#define DEFAULT_URL "tcp://127.0.0.1:7070"

/* Exit codes (documented in inferd-bench.1). */
enum { EXIT_DONE = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static void usage(FILE *f)
{
	fprintf(f,
	"usage: inferd-bench [--connect URL | --openai URL] [--model NAME] [OPTIONS]\n"
	"Load generator for inferd (native protocol) and OpenAI-compatible servers.\n"
	"\n"
	"Target:\n"
	"  -c, --connect URL        inferd address (default: $INFERD_URL, else " DEFAULT_URL ");\n"
	"                           repeat it to spread the calls over several daemons\n"
	"      --openai URL         OpenAI-compatible server, http://HOST:PORT[/v1]; streams\n"
	"                           POST /v1/completions (needs --model)\n"
	"  -m, --model NAME         model (native: may be left out when the daemon serves one)\n"
	"      --api-key KEY        native: api-key metadata; openai: Authorization: Bearer\n"
	"      --timeout SEC        per-request deadline (default 600)\n"
	"Arrivals (stop at --requests or --duration, whichever comes first):\n"
	"  -j, --concurrency N      closed loop: N clients, each sends when its last finished\n"
	"  -r, --rate R             open loop: R requests/s, Poisson arrivals\n"
	"      --burstiness B       open loop: gamma inter-arrival times of shape B (1 = Poisson,\n"
	"                           < 1 burstier, > 1 more regular)\n"
	"  -n, --requests N         requests to send (default 100 when no --duration)\n"
	"  -d, --duration SEC       stop sending after SEC seconds (in flight ones finish)\n"
	"      --sweep concurrency=1,4,16 | rate=1,2,4\n"
	"                           run one point per value and print one table\n"
	"Workload (every request sets max_tokens = its output length and ignore_eos):\n"
	"      --input-len N        prompt tokens (default 128)\n"
	"      --output-len N       output tokens (default 64)\n"
	"      --input-dist D       fixed, uniform or normal (default fixed)\n"
	"      --output-dist D      fixed, uniform or normal (default fixed)\n"
	"      --range-ratio R      uniform: N*(1-R)..N*(1+R); normal: stddev N*R (default 0.5)\n"
	"      --shared-prefix N    every prompt starts with the same N tokens (prefix cache)\n"
	"      --prompt KIND        tokens (ids drawn below the model's vocabulary size; the\n"
	"                           default for --connect) or text (words; the default for\n"
	"                           --openai)\n"
	"      --vocab N            vocabulary size for token prompts (native: from ListModels)\n"
	"      --dataset FILE.jsonl prompts from a JSONL file (see inferd-bench(1) for fields:\n"
	"                           prompt, prompt_token_ids, ShareGPT conversations, messages,\n"
	"                           output_len)\n"
	"      --seed S             seed of the workload and arrivals (default 1)\n"
	"Results:\n"
	"      --slo-ttft MS        goodput counts requests with TTFT <= MS ...\n"
	"      --slo-tpot MS        ... and TPOT <= MS\n"
	"      --json FILE          write the results as JSON\n"
	"      --no-progress        no progress line (shown only when stderr is a terminal)\n"
	"  -h, --help, -V, --version\n"
	"\n"
	"Exit status: 0 the run completed (request errors are in the results), 1 it failed,\n"
	"2 usage error, 3 the target could not be reached.\n");
}

enum {
	OPT_OPENAI = 1000, OPT_API_KEY, OPT_TIMEOUT, OPT_BURST, OPT_SWEEP, OPT_IN_LEN, OPT_OUT_LEN,
	OPT_IN_DIST, OPT_OUT_DIST, OPT_RANGE, OPT_PREFIX, OPT_PROMPT, OPT_VOCAB, OPT_DATASET,
	OPT_SEED, OPT_SLO_TTFT, OPT_SLO_TPOT, OPT_JSON, OPT_NO_PROGRESS,
};

/* ---- parsing ------------------------------------------------------------------------------- */

static int num(const char *opt, const char *s, double lo, double hi, double *out)
{
	char *end = NULL;
	double v;

	errno = 0;
	v = s ? strtod(s, &end) : NAN;
	if (!s || !*s || errno || *end || isnan(v) || v < lo || v > hi) {
		fprintf(stderr, "inferd-bench: %s: expected a number in [%g, %g], got '%s'\n", opt, lo,
		        hi, s ? s : "");
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int whole(const char *opt, const char *s, double lo, double hi, uint64_t *out)
{
	double v;
	if (num(opt, s, lo, hi, &v) < 0)
		return -EINVAL;
	if (v != floor(v)) {
		fprintf(stderr, "inferd-bench: %s: expected a whole number, got '%s'\n", opt, s);
		return -EINVAL;
	}
	*out = (uint64_t)v;
	return 0;
}

static int dist(const char *opt, const char *s, enum bench_dist *out)
{
	if (!strcmp(s, "fixed"))
		*out = BENCH_DIST_FIXED;
	else if (!strcmp(s, "uniform"))
		*out = BENCH_DIST_UNIFORM;
	else if (!strcmp(s, "normal"))
		*out = BENCH_DIST_NORMAL;
	else {
		fprintf(stderr, "inferd-bench: %s: expected fixed, uniform or normal\n", opt);
		return -EINVAL;
	}
	return 0;
}

static int sweep(const char *s, struct bench_config *cfg)
{
	const char *v;
	char buf[512], *tok, *save = NULL;

	if (!strncmp(s, "concurrency=", 12)) {
		cfg->sweep = BENCH_SWEEP_CONCURRENCY;
		v = s + 12;
	} else if (!strncmp(s, "rate=", 5)) {
		cfg->sweep = BENCH_SWEEP_RATE;
		v = s + 5;
	} else {
		fprintf(stderr, "inferd-bench: --sweep: expected concurrency=N,... or rate=R,...\n");
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", v);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		double x;
		if (cfg->n_sweep == BENCH_MAX_SWEEP) {
			fprintf(stderr, "inferd-bench: --sweep: at most %d values\n", BENCH_MAX_SWEEP);
			return -EINVAL;
		}
		if (num("--sweep", tok, cfg->sweep == BENCH_SWEEP_RATE ? 1e-6 : 1, 1e6, &x) < 0)
			return -EINVAL;
		if (cfg->sweep == BENCH_SWEEP_CONCURRENCY && x != floor(x)) {
			fprintf(stderr, "inferd-bench: --sweep: concurrencies are whole numbers\n");
			return -EINVAL;
		}
		cfg->sweep_values[cfg->n_sweep++] = x;
	}
	if (!cfg->n_sweep) {
		fprintf(stderr, "inferd-bench: --sweep: no values\n");
		return -EINVAL;
	}
	return 0;
}

/* @return 0, 1 after --help/--version, or -EINVAL. */
static int parse(int argc, char **argv, struct bench_config *cfg)
{
	static const struct option lo[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "openai", required_argument, NULL, OPT_OPENAI },
		{ "model", required_argument, NULL, 'm' },
		{ "api-key", required_argument, NULL, OPT_API_KEY },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "concurrency", required_argument, NULL, 'j' },
		{ "rate", required_argument, NULL, 'r' },
		{ "burstiness", required_argument, NULL, OPT_BURST },
		{ "requests", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "sweep", required_argument, NULL, OPT_SWEEP },
		{ "input-len", required_argument, NULL, OPT_IN_LEN },
		{ "output-len", required_argument, NULL, OPT_OUT_LEN },
		{ "input-dist", required_argument, NULL, OPT_IN_DIST },
		{ "output-dist", required_argument, NULL, OPT_OUT_DIST },
		{ "range-ratio", required_argument, NULL, OPT_RANGE },
		{ "shared-prefix", required_argument, NULL, OPT_PREFIX },
		{ "prompt", required_argument, NULL, OPT_PROMPT },
		{ "vocab", required_argument, NULL, OPT_VOCAB },
		{ "dataset", required_argument, NULL, OPT_DATASET },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "slo-ttft", required_argument, NULL, OPT_SLO_TTFT },
		{ "slo-tpot", required_argument, NULL, OPT_SLO_TPOT },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *prompt_kind = NULL, *env = getenv("INFERD_URL");
	bool have_conc = false;
	uint64_t u;
	int opt, rc = 0;

	while ((opt = getopt_long(argc, argv, "c:m:j:r:n:d:hV", lo, NULL)) != -1 && !rc) {
		switch (opt) {
		case 'c':
			if (cfg->n_connect == BENCH_MAX_URLS) {
				fprintf(stderr, "inferd-bench: at most %d --connect addresses\n",
				        BENCH_MAX_URLS);
				rc = -EINVAL;
				break;
			}
			cfg->connect_urls[cfg->n_connect++] = optarg;
			cfg->connect_url = cfg->connect_urls[0];
			break;
		case OPT_OPENAI: cfg->openai_url = optarg; break;
		case 'm': cfg->model = optarg; break;
		case OPT_API_KEY: cfg->api_key = optarg; break;
		case OPT_TIMEOUT: rc = num("--timeout", optarg, 0.001, 1e6, &cfg->request_timeout_s); break;
		case 'j':
			rc = whole("--concurrency", optarg, 1, 100000, &u);
			cfg->concurrency = (uint32_t)u;
			have_conc = true;
			break;
		case 'r': rc = num("--rate", optarg, 1e-6, 1e6, &cfg->rate); break;
		case OPT_BURST: rc = num("--burstiness", optarg, 1e-3, 1e3, &cfg->burstiness); break;
		case 'n': rc = whole("--requests", optarg, 1, 1e9, &cfg->requests); break;
		case 'd': rc = num("--duration", optarg, 1e-3, 1e7, &cfg->duration_s); break;
		case OPT_SWEEP: rc = sweep(optarg, cfg); break;
		case OPT_IN_LEN:
			rc = whole("--input-len", optarg, 1, 1e7, &u);
			cfg->input_len = (uint32_t)u;
			break;
		case OPT_OUT_LEN:
			rc = whole("--output-len", optarg, 1, 1e7, &u);
			cfg->output_len = (uint32_t)u;
			break;
		case OPT_IN_DIST: rc = dist("--input-dist", optarg, &cfg->input_dist); break;
		case OPT_OUT_DIST: rc = dist("--output-dist", optarg, &cfg->output_dist); break;
		case OPT_RANGE: rc = num("--range-ratio", optarg, 0, 1, &cfg->range_ratio); break;
		case OPT_PREFIX:
			rc = whole("--shared-prefix", optarg, 0, 1e7, &u);
			cfg->shared_prefix = (uint32_t)u;
			break;
		case OPT_PROMPT: prompt_kind = optarg; break;
		case OPT_VOCAB:
			rc = whole("--vocab", optarg, 2, 1e9, &u);
			cfg->vocab_size = (uint32_t)u;
			break;
		case OPT_DATASET: cfg->dataset = optarg; break;
		case OPT_SEED: rc = whole("--seed", optarg, 0, 9e15, &cfg->seed); break;
		case OPT_SLO_TTFT: rc = num("--slo-ttft", optarg, 0, 1e9, &cfg->slo_ttft_ms); break;
		case OPT_SLO_TPOT: rc = num("--slo-tpot", optarg, 0, 1e9, &cfg->slo_tpot_ms); break;
		case OPT_JSON: cfg->json_path = optarg; break;
		case OPT_NO_PROGRESS: cfg->progress = false; break;
		case 'h': usage(stdout); return 1;
		case 'V': printf("inferd-bench %s\n", INFERD_VERSION); return 1;
		default: return -EINVAL;
		}
	}
	if (rc)
		return -EINVAL;
	if (optind < argc) {
		fprintf(stderr, "inferd-bench: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (cfg->connect_url && cfg->openai_url) {
		fprintf(stderr, "inferd-bench: --connect and --openai exclude each other\n");
		return -EINVAL;
	}
	if (cfg->openai_url && (!cfg->model || !*cfg->model)) {
		fprintf(stderr, "inferd-bench: --openai needs --model\n");
		return -EINVAL;
	}
	if ((have_conc && cfg->rate > 0) || (cfg->sweep && (have_conc || cfg->rate > 0))) {
		fprintf(stderr, "inferd-bench: choose one of --concurrency, --rate and --sweep\n");
		return -EINVAL;
	}
	if (prompt_kind && strcmp(prompt_kind, "text") && strcmp(prompt_kind, "tokens")) {
		fprintf(stderr, "inferd-bench: --prompt: expected tokens or text\n");
		return -EINVAL;
	}
	cfg->text_prompts = prompt_kind ? !strcmp(prompt_kind, "text") : cfg->openai_url != NULL;
	if (cfg->openai_url && !cfg->text_prompts && !cfg->vocab_size && !cfg->dataset) {
		fprintf(stderr, "inferd-bench: --openai with --prompt tokens needs --vocab\n");
		return -EINVAL;
	}
	if (!cfg->openai_url && !cfg->connect_url) {
		cfg->connect_url = env && *env ? env : DEFAULT_URL;
		cfg->connect_urls[0] = cfg->connect_url;
		cfg->n_connect = 1;
	}
	if (!cfg->requests && cfg->duration_s <= 0)
		cfg->requests = 100;
	return 0;
}

/* ---- main ----------------------------------------------------------------------------------- */

/* Runs one point and fills p. @return 0 or an exit code. */
static int run_point(const struct bench_config *cfg, const struct bench_workload *wl,
                     struct bench_point *p)
{
	struct bench_stats *stats = NULL;
	uint64_t before = 0, after = 0;
	char err[256];
	int rc = EXIT_FAILED;

	if (bench_stats_new(&stats) < 0) {
		fprintf(stderr, "inferd-bench: out of memory\n");
		return EXIT_FAILED;
	}
	if (!cfg->openai_url && bench_native_tokens_generated(cfg, &before, err, sizeof(err)) < 0) {
		fprintf(stderr, "inferd-bench: %s\n", err);
		rc = EXIT_UNREACHABLE;
		goto cleanup;
	}
	if (bench_run_point(cfg, wl, p->concurrency, p->rate, stats, err, sizeof(err)) < 0) {
		fprintf(stderr, "inferd-bench: %s\n", err);
		goto cleanup;
	}
	if (!cfg->openai_url && bench_native_tokens_generated(cfg, &after, err, sizeof(err)) == 0) {
		p->have_server_tokens = true;
		p->server_tokens_generated = after - before;
	}
	if (bench_stats_summarize(stats, cfg->slo_ttft_ms, cfg->slo_tpot_ms, &p->sum) < 0) {
		fprintf(stderr, "inferd-bench: out of memory\n");
		goto cleanup;
	}
	rc = 0;
cleanup:
	bench_stats_free(stats);
	return rc;
}

int main(int argc, char **argv)
{
	struct bench_config cfg = {
		.concurrency = 1, .burstiness = 1.0, .input_len = 128, .output_len = 64,
		.range_ratio = 0.5, .request_timeout_s = 600, .seed = 1,
		.progress = isatty(STDERR_FILENO) == 1,
	};
	struct bench_point pts[BENCH_MAX_SWEEP];
	struct bench_workload *wl = NULL;
	size_t n_pts = 0;
	uint32_t vocab = 0, context = 0;
	char err[256];
	int rc;

	memset(pts, 0, sizeof(pts));
	if ((rc = parse(argc, argv, &cfg)) != 0)
		return rc > 0 ? EXIT_DONE : EXIT_USAGE;
	if (!cfg.openai_url) {
		rc = bench_native_model_info(&cfg, &vocab, &context, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "inferd-bench: %s\n", err);
			return rc == -ECONNREFUSED ? EXIT_UNREACHABLE : EXIT_FAILED;
		}
		if (!cfg.vocab_size)
			cfg.vocab_size = vocab;
		if (!cfg.dataset && context &&
		    (uint64_t)cfg.shared_prefix + cfg.input_len + cfg.output_len > context)
			fprintf(stderr, "inferd-bench: warning: prompt + output (%u) may exceed the "
			        "model's context of %u tokens\n",
			        cfg.shared_prefix + cfg.input_len + cfg.output_len, context);
	}
	rc = bench_workload_new(&cfg, cfg.requests ? (size_t)cfg.requests : 1024, &wl, err,
	                        sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "inferd-bench: %s\n", err);
		return rc == -ENOMEM ? EXIT_FAILED : EXIT_USAGE;
	}
	n_pts = cfg.sweep ? cfg.n_sweep : 1;
	for (size_t i = 0; i < n_pts; i++) {
		if (cfg.sweep == BENCH_SWEEP_CONCURRENCY)
			pts[i].concurrency = (uint32_t)cfg.sweep_values[i];
		else if (cfg.sweep == BENCH_SWEEP_RATE)
			pts[i].rate = cfg.sweep_values[i];
		else if (cfg.rate > 0)
			pts[i].rate = cfg.rate;
		else
			pts[i].concurrency = cfg.concurrency;
		if ((rc = run_point(&cfg, wl, &pts[i])) != 0) {
			n_pts = i;
			goto cleanup;
		}
		if (!cfg.sweep)
			bench_report_print(&cfg, &pts[i]);
		else
			fprintf(stderr, "inferd-bench: point %zu of %zu done\n", i + 1, n_pts);
	}
	if (cfg.sweep)
		bench_report_table(&cfg, pts, n_pts);
	if (cfg.json_path && bench_report_json(&cfg, pts, n_pts, cfg.json_path, err,
	                                       sizeof(err)) < 0) {
		fprintf(stderr, "inferd-bench: %s\n", err);
		rc = EXIT_FAILED;
	}
cleanup:
	for (size_t i = 0; i < n_pts; i++)
		bench_summary_fini(&pts[i].sum);
	bench_workload_free(wl);
	return rc;
}
