/* Serving benchmark: the real daemon under the same closed-loop load, configured two ways, and
 * the ratio of their output tokens/s. Prints ratios measured in this run; asserts nothing.
 *
 *   one-at-a-time      max_sequences = 1   (each request runs alone, as a naive server does)
 *   continuous batch   max_sequences = 16  (iteration-level batching with chunked prefill)
 *   nano-batching      the same, each iteration split in two overlapped nano-batches
 *
 * and the continuous run's decode throughput as a fraction of the compute bound measured here:
 * dnnl_sgemm GFLOP/s / (2 x parameters) tokens/s (NanoFlow's "optimal throughput").
 *
 * Environment: INFERD_BIN, INFERD_MKMODEL (set by meson); BENCH_MODEL=PATH reuses a model;
 * BENCH_REQUESTS (default 16), BENCH_CONCURRENCY (16), BENCH_INPUT (32), BENCH_OUTPUT (32),
 * BENCH_DTYPE (q8_0; f32 makes the compute-bound fraction exact: the bound is f32 sgemm's).
 */
#include <dnnl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "inferd-client.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int env_int(const char *name, int dflt)
{
	const char *v = getenv(name);
	return v && atoi(v) > 0 ? atoi(v) : dflt;
}

/* ---- the compute bound ------------------------------------------------------------------- */

static double sgemm_gflops(void)
{
	const int M = 512, N = 2816, K = 1024;
	float *a = calloc((size_t)M * K, sizeof(float)), *b = calloc((size_t)N * K, sizeof(float));
	float *c = calloc((size_t)M * N, sizeof(float));
	double best = 0;

	if (!a || !b || !c)
		goto out;
	for (size_t i = 0; i < (size_t)M * K; i++)
		a[i] = (float)(i % 7) * 0.01f;
	for (size_t i = 0; i < (size_t)N * K; i++)
		b[i] = (float)(i % 5) * 0.01f;
	for (int rep = 0; rep < 5; rep++) {
		double t = now();
		if (dnnl_sgemm('N', 'T', M, N, K, 1.0f, a, K, b, K, 0.0f, c, N) != dnnl_success)
			break;
		double g = 2.0 * M * N * K / (now() - t) * 1e-9;
		best = g > best ? g : best;
	}
out:
	free(a);
	free(b);
	free(c);
	return best;
}

/* ---- the daemon -------------------------------------------------------------------------- */

struct daemon {
	pid_t pid;
	char url[64];
};

static int free_port(void)
{
	static int next;
	if (!next)
		next = 20000 + (int)(getpid() % 20000);
	return next++;
}

static int write_conf(const char *conf, const char *url, const char *dir, const char *model,
                      int max_seqs, const char *nano, int tune_context)
{
	FILE *f = fopen(conf, "w");
	if (!f)
		return -errno;
	fprintf(f, "[server]\nlisten = %s\n[log]\nlevel = warn\n[http]\nenabled = false\n"
	        "[model.bench]\npath = %s\ntune_file = %s/bench.tune\n"
	        "max_sequences = %d\nmax_batched_tokens = 512\nnano_batching = %s\n"
	        "tune_batch = %d\ntune_context = %d\n", url, model, dir, max_seqs, nano, max_seqs,
	        tune_context);
	fclose(f);
	return 0;
}

/* inferd --tune bench: the offline parameter search, its report on stdout. */
static int run_tune(const char *dir, const char *model, int batch, int context)
{
	char conf[512], cmd[1400];
	snprintf(conf, sizeof(conf), "%s/bench-tune.conf", dir);
	if (write_conf(conf, "tcp://127.0.0.1:1", dir, model, batch, "auto", context) < 0)
		return -EIO;
	snprintf(cmd, sizeof(cmd), "'%s' --config '%s' --tune bench 2>&1 | sed 's/^/  /'",
	         getenv("INFERD_BIN"), conf);
	return system(cmd) == 0 ? 0 : -EIO;
}

/* Parameters and dtype of the served model (ListModels). */
static int model_info(const char *url, double *params, char *dtype, size_t len)
{
	struct inferd_client *c;
	char err[128];
	Inferd__V1__ListModelsRequest req = INFERD__V1__LIST_MODELS_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	if (inferd_client_new(&url, 1, NULL, &c, err, sizeof(err)) < 0)
		return -EIO;
	int st = inferd_client_unary(c, INFERD__V1__METHOD__METHOD_LIST_MODELS, &req.base,
	                             &inferd__v1__list_models_reply__descriptor, &rep, NULL, NULL, 0);
	inferd_client_free(c);
	if (st != 0 || !rep)
		return -EIO;
	Inferd__V1__ListModelsReply *r = (Inferd__V1__ListModelsReply *)rep;
	int rc = r->n_models ? 0 : -ENOENT;
	if (r->n_models) {
		*params = (double)r->models[0]->parameters;
		snprintf(dtype, len, "%s", r->models[0]->dtype);
	}
	protobuf_c_message_free_unpacked(rep, NULL);
	return rc;
}

static int start_daemon(struct daemon *d, const char *dir, const char *model, int max_seqs,
                        const char *nano, int tune_context)
{
	char conf[512], log[512];
	snprintf(d->url, sizeof(d->url), "tcp://127.0.0.1:%d", free_port());
	snprintf(conf, sizeof(conf), "%s/bench-%d-%s.conf", dir, max_seqs, nano);
	snprintf(log, sizeof(log), "%s/bench-%d-%s.log", dir, max_seqs, nano);
	if (write_conf(conf, d->url, dir, model, max_seqs, nano, tune_context) < 0)
		return -EIO;
	d->pid = fork();
	if (d->pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
		execl(getenv("INFERD_BIN"), "inferd", "--config", conf, (char *)NULL);
		_exit(127);
	}
	/* Ready when Health answers. */
	const char *u = d->url;
	struct inferd_client *c;
	char err[128];
	if (inferd_client_new(&u, 1, NULL, &c, err, sizeof(err)) < 0)
		return -EIO;
	for (int i = 0; i < 600; i++) {
		Inferd__V1__HealthRequest h = INFERD__V1__HEALTH_REQUEST__INIT;
		ProtobufCMessage *rep = NULL;
		struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;
		o.deadline_ms = 500;
		if (inferd_client_unary(c, INFERD__V1__METHOD__METHOD_HEALTH, &h.base,
		                        &inferd__v1__health_reply__descriptor, &rep, &o, NULL, 0) == 0) {
			protobuf_c_message_free_unpacked(rep, NULL);
			inferd_client_free(c);
			return 0;
		}
		usleep(100000);
	}
	inferd_client_free(c);
	return -ETIMEDOUT;
}

static void stop_daemon(struct daemon *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		waitpid(d->pid, NULL, 0);
	}
	d->pid = 0;
}

/* ---- the load ---------------------------------------------------------------------------- */

struct load {
	int requests, concurrency, input, output;
	int started, done, errors;
	uint64_t tokens;
	double ttft_sum, t_first_start;
	struct inferd_client *c;
};

struct req {
	struct load *load;
	double t_start;
	bool first;
};

static int start_one(struct load *L);

static int on_reply(const struct inferd_reply *r, void *arg)
{
	struct req *q = arg;
	struct load *L = q->load;
	if (r->payload_len && !r->end_of_stream && !q->first) {
		q->first = true;
		L->ttft_sum += now() - q->t_start;
	}
	if (r->payload_len) {
		Inferd__V1__GenerateReply *g =
			inferd__v1__generate_reply__unpack(NULL, r->payload_len, r->payload);
		if (g) {
			L->tokens += g->n_token_ids;
			inferd__v1__generate_reply__free_unpacked(g, NULL);
		}
	}
	if (r->end_of_stream) {
		if (r->status != 0) {
			L->errors++;
			fprintf(stderr, "request failed: %s %s\n", inferd_client_status_name(r->status),
			        r->status_message);
		}
		L->done++;
		free(q);
		if (L->started < L->requests)
			start_one(L);
	}
	return 0;
}

static int start_one(struct load *L)
{
	Inferd__V1__GenerateRequest req = INFERD__V1__GENERATE_REQUEST__INIT;
	Inferd__V1__SamplingParams sp = INFERD__V1__SAMPLING_PARAMS__INIT;
	Inferd__V1__TokenIds toks = INFERD__V1__TOKEN_IDS__INIT;
	int32_t ids[4096];
	struct req *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	/* Distinct prompts (no prefix sharing between requests): BOS, then ids from the index. */
	ids[0] = 1;
	for (int i = 1; i < L->input && i < 4096; i++)
		ids[i] = 3 + (L->started * 7919 + i * 131) % 30000;
	toks.ids = ids;
	toks.n_ids = (size_t)L->input;
	req.model = "bench";
	req.prompt_case = INFERD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
	req.tokens = &toks;
	req.max_tokens = (uint32_t)L->output;
	sp.ignore_eos = true;
	req.sampling = &sp;
	q->load = L;
	q->t_start = now();
	L->started++;
	return inferd_client_start_msg(L->c, INFERD__V1__METHOD__METHOD_GENERATE, &req.base, NULL,
	                               on_reply, q, NULL);
}

/* Runs the closed-loop load. @return output tokens/s. */
static double run_load(const char *url, int requests, int concurrency, int input, int output,
                       double *ttft)
{
	struct load L = { .requests = requests, .concurrency = concurrency, .input = input,
	                  .output = output };
	char err[128];
	if (inferd_client_new(&url, 1, NULL, &L.c, err, sizeof(err)) < 0)
		return 0;
	double t0 = now();
	for (int i = 0; i < concurrency && L.started < requests; i++)
		start_one(&L);
	while (L.done < requests)
		if (inferd_client_poll(L.c, 1000) < 0)
			break;
	double dt = now() - t0;
	inferd_client_free(L.c);
	*ttft = L.ttft_sum / (requests ? requests : 1);
	if (L.errors)
		fprintf(stderr, "%d requests failed\n", L.errors);
	return (double)L.tokens / dt;
}

int main(void)
{
	const char *bin = getenv("INFERD_BIN"), *mk = getenv("INFERD_MKMODEL");
	int requests = env_int("BENCH_REQUESTS", 16), conc = env_int("BENCH_CONCURRENCY", 16);
	int input = env_int("BENCH_INPUT", 32), output = env_int("BENCH_OUTPUT", 32);
	const char *dtype = getenv("BENCH_DTYPE") ? getenv("BENCH_DTYPE") : "q8_0";
	char dir[] = "/tmp/inferd-bench-XXXXXX", model[600], cmd[1200];
	struct daemon d = { 0 };
	double ttft1 = 0, ttftN = 0;

	if (!bin || !mk || !mkdtemp(dir)) {
		fprintf(stderr, "bench_serving: set INFERD_BIN and INFERD_MKMODEL (meson does)\n");
		return 1;
	}
	if (getenv("BENCH_MODEL")) {
		snprintf(model, sizeof(model), "%s", getenv("BENCH_MODEL"));
	} else {
		/* ~125M parameters: dim 768, 12 layers, ffn 2048, vocab 32000. */
		snprintf(model, sizeof(model), "%s/bench.gguf", dir);
		snprintf(cmd, sizeof(cmd),
		         "'%s' llm --out '%s' --dim 768 --layers 12 --heads 12 --kv-heads 4 --ffn 2048 "
		         "--vocab 32000 --context 1024 --dtype %s --seed 3 >/dev/null", mk, model, dtype);
		if (system(cmd) != 0) {
			fprintf(stderr, "bench_serving: %s failed\n", cmd);
			return 1;
		}
	}
	double gflops = sgemm_gflops();
	const int tune_ctx = input + output / 2;
	double params = 0;
	char mtype[32] = "?";

	if (start_daemon(&d, dir, model, 1, "off", tune_ctx) < 0) {
		fprintf(stderr, "bench_serving: the daemon did not start\n");
		return 1;
	}
	if (model_info(d.url, &params, mtype, sizeof(mtype)) < 0 || params <= 0) {
		fprintf(stderr, "bench_serving: ListModels gave no model\n");
		stop_daemon(&d);
		return 1;
	}
	printf("model: %s (%.0fM parameters, %s), load: %d requests, %d concurrent, %d in / %d out "
	       "tokens\n", model, params / 1e6, mtype, requests, conc, input, output);
	double one = run_load(d.url, requests, conc, input, output, &ttft1);
	stop_daemon(&d);
	if (start_daemon(&d, dir, model, conc, "off", tune_ctx) < 0) {
		fprintf(stderr, "bench_serving: the daemon did not start\n");
		return 1;
	}
	double cont = run_load(d.url, requests, conc, input, output, &ttftN);
	stop_daemon(&d);
	/* The tuning step, as an operator runs it (inferd --tune), on this load's decode iteration:
	 * `conc` sequences over about input + output/2 cached positions. Then nano-batching "on"
	 * with the tuned split (forced even where the tuner turned it off, to measure it) and
	 * "auto" (what the profile decides). */
	printf("inferd --tune (batch %d, context %d):\n", conc, tune_ctx);
	fflush(stdout);
	if (run_tune(dir, model, conc, tune_ctx) < 0)
		fprintf(stderr, "bench_serving: inferd --tune failed; nano-batching runs untuned\n");
	double ttft_nano = 0, nano = 0, ttft_auto = 0, autom = 0;
	if (start_daemon(&d, dir, model, conc, "on", tune_ctx) == 0) {
		nano = run_load(d.url, requests, conc, input, output, &ttft_nano);
		stop_daemon(&d);
	}
	if (start_daemon(&d, dir, model, conc, "auto", tune_ctx) == 0) {
		autom = run_load(d.url, requests, conc, input, output, &ttft_auto);
		stop_daemon(&d);
	}

	double bound = gflops * 1e9 / (2.0 * params);
	printf("one-at-a-time (max_sequences=1):     %8.1f output tokens/s, mean TTFT %.3f s\n",
	       one, ttft1);
	printf("continuous batching (max_sequences=%d): %8.1f output tokens/s, mean TTFT %.3f s\n",
	       conc, cont, ttftN);
	printf("ratio continuous / one-at-a-time: %.2fx (target >= 4)\n", one > 0 ? cont / one : 0);
	printf("nano-batching on:                       %8.1f output tokens/s, mean TTFT %.3f s\n",
	       nano, ttft_nano);
	printf("ratio nano-batching on (tuned split) / off: %.2fx\n", cont > 0 ? nano / cont : 0);
	printf("nano_batching = auto (the profile decides): %8.1f output tokens/s, mean TTFT %.3f s, "
	       "%.2fx of off\n", autom, ttft_auto, cont > 0 ? autom / cont : 0);
	printf("compute bound: dnnl_sgemm %.1f GFLOP/s / (2 x %.0fM params) = %.0f tokens/s; "
	       "continuous batching reaches %.2f of it at %d sequences%s\n", gflops, params / 1e6,
	       bound, cont / bound, conc,
	       strcasecmp(mtype, "f32") ? " (weights are not f32: their integer kernels are not bound "
	                              "by f32 FLOP/s, so this fraction overstates)" : "");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return 0;
}
