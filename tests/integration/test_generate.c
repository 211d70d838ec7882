/* Generate through the real daemon: streaming, continuous batching equals running alone,
 * preemption, prefix cache, cancel, deadlines, load shedding, drain, bad requests. */
#include <criterion/criterion.h>
#include <nanomsg/nn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-fixture.h"

#define STATUS(x) INFERD__V1__STATUS_CODE__STATUS_##x
#define MAX_OUT 256

static struct test_daemon d;
static char model_dir[] = "/tmp/inferd-test-models-XXXXXX";
static char tiny_path[256];

#define TINY_ARGS "--dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab 512 --context 256"
/* Slow enough (a few ms per token) that a call can be cancelled mid-generation. */
#define SLOW_ARGS "--dim 384 --layers 6 --heads 6 --kv-heads 2 --ffn 1024 --vocab 4096 --context 512"

/* A small random llama model made by inferd-mkmodel (deterministic for its seed). */
static void make_model_with(const char *args)
{
	const char *mk = getenv("INFERD_MKMODEL");
	char cmd[1024];
	cr_assert_not_null(mk, "INFERD_MKMODEL is not set");
	cr_assert_not_null(mkdtemp(model_dir));
	snprintf(tiny_path, sizeof(tiny_path), "%s/tiny.gguf", model_dir);
	snprintf(cmd, sizeof(cmd), "'%s' llm --out '%s' %s --seed 7 >/dev/null", mk, tiny_path,
	         args);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void start_model(const char *args, const char *model_keys)
{
	char extra[1024];
	make_model_with(args);
	snprintf(extra, sizeof(extra), "[model.tiny]\npath = %s\n%s", tiny_path,
	         model_keys ? model_keys : "");
	td_start(&d, extra, NULL);
}

static void start_with(const char *model_keys)
{
	start_model(TINY_ARGS, model_keys);
}

static void cleanup(void)
{
	char cmd[300];
	td_cleanup(&d);
	if (model_dir[0] && strncmp(model_dir, "/tmp/inferd-test-models-", 24) == 0 &&
	    !strstr(model_dir, "XXXXXX")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", model_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", model_dir);
	}
}

TestSuite(generate, .fini = cleanup, .timeout = 120);

/* ---- a generation and its result --------------------------------------------------------- */

struct gen_result {
	bool done;
	int status;
	char message[256];
	int32_t ids[MAX_OUT];
	uint32_t n_ids;
	char text[4096];
	size_t text_len;
	int finish;
	uint32_t prompt_tokens, completion_tokens, cached_tokens;
	uint64_t call_id;
	uint32_t n_logprob_frames, n_top_seen;
	float max_logprob;
};

static int on_gen(const struct inferd_reply *r, void *arg)
{
	struct gen_result *g = arg;
	if (r->payload_len) {
		Inferd__V1__GenerateReply *rep =
			inferd__v1__generate_reply__unpack(NULL, r->payload_len, r->payload);
		cr_assert_not_null(rep, "a reply that does not decode");
		for (size_t i = 0; i < rep->n_token_ids && g->n_ids < MAX_OUT; i++)
			g->ids[g->n_ids++] = rep->token_ids[i];
		for (size_t i = 0; i < rep->n_logprobs; i++) {
			g->n_logprob_frames++;
			g->n_top_seen += (uint32_t)rep->logprobs[i]->n_top;
			if (g->n_logprob_frames == 1 || rep->logprobs[i]->logprob > g->max_logprob)
				g->max_logprob = rep->logprobs[i]->logprob;
		}
		size_t n = strlen(rep->text);
		if (g->text_len + n < sizeof(g->text)) {
			memcpy(g->text + g->text_len, rep->text, n);
			g->text_len += n;
			g->text[g->text_len] = '\0';
		}
		if (rep->usage) {
			g->prompt_tokens = rep->usage->prompt_tokens;
			g->completion_tokens = rep->usage->completion_tokens;
			g->cached_tokens = rep->usage->cached_prompt_tokens;
			g->finish = rep->finish_reason;
		}
		inferd__v1__generate_reply__free_unpacked(rep, NULL);
	}
	if (r->end_of_stream) {
		g->done = true;
		g->status = r->status;
		snprintf(g->message, sizeof(g->message), "%s", r->status_message);
	}
	return 0;
}

struct gen_args {
	const char *model;
	const char *text;          /* or: */
	const int32_t *ids;
	size_t n_ids;
	uint32_t max_tokens;
	float temperature;
	bool ignore_eos;
	uint64_t deadline_ms;
	const char *stop;
	bool use_seed;
	uint64_t seed;
	uint32_t top_logprobs;
};

static void start_gen(struct inferd_client *c, const struct gen_args *a, struct gen_result *g)
{
	Inferd__V1__GenerateRequest req = INFERD__V1__GENERATE_REQUEST__INIT;
	Inferd__V1__SamplingParams sp = INFERD__V1__SAMPLING_PARAMS__INIT;
	Inferd__V1__TokenIds toks = INFERD__V1__TOKEN_IDS__INIT;
	struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;

	memset(g, 0, sizeof(*g));
	req.model = (char *)(a->model ? a->model : "tiny");
	if (a->text) {
		req.prompt_case = INFERD__V1__GENERATE_REQUEST__PROMPT_TEXT;
		req.text = (char *)a->text;
	} else {
		req.prompt_case = INFERD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
		toks.n_ids = a->n_ids;
		toks.ids = (int32_t *)a->ids;
		req.tokens = &toks;
	}
	req.max_tokens = a->max_tokens;
	sp.temperature = a->temperature;
	sp.ignore_eos = a->ignore_eos;
	sp.use_seed = a->use_seed;
	sp.seed = a->seed;
	sp.top_logprobs = a->top_logprobs;
	char *stops[1] = { (char *)a->stop };
	if (a->stop) {
		sp.n_stop = 1;
		sp.stop = stops;
	}
	req.sampling = &sp;
	o.deadline_ms = a->deadline_ms;
	cr_assert_eq(inferd_client_start_msg(c, INFERD__V1__METHOD__METHOD_GENERATE, &req.base, &o,
	                                     on_gen, g, &g->call_id), 0);
}

static void wait_all(struct inferd_client *c)
{
	while (inferd_client_in_flight(c))
		cr_assert(inferd_client_poll(c, 1000) >= 0);
}

static void run_gen(struct inferd_client *c, const struct gen_args *a, struct gen_result *g)
{
	start_gen(c, a, g);
	while (!g->done)
		cr_assert(inferd_client_poll(c, 1000) >= 0);
}

static Inferd__V1__StatsReply *stats(struct inferd_client *c)
{
	Inferd__V1__StatsRequest req = INFERD__V1__STATS_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	cr_assert_eq(inferd_client_unary(c, INFERD__V1__METHOD__METHOD_STATS, &req.base,
	                                 &inferd__v1__stats_reply__descriptor, &rep, NULL, NULL, 0),
	             STATUS(OK));
	return (Inferd__V1__StatsReply *)rep;
}

static void prompt_ids(int32_t *ids, size_t n, int32_t seed)
{
	ids[0] = 1; /* BOS */
	for (size_t i = 1; i < n; i++)
		ids[i] = 3 + (int32_t)((seed * 131 + (int32_t)i * 17) % 500);
}

/* ---- tests ------------------------------------------------------------------------------- */

Test(generate, streams_tokens_with_usage)
{
	start_with(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct gen_result g;
	struct gen_args a = { .text = "hello world", .max_tokens = 20, .ignore_eos = true };
	run_gen(c, &a, &g);
	cr_assert_eq(g.status, STATUS(OK), "%s", g.message);
	cr_expect_eq(g.n_ids, 20);
	cr_expect_eq(g.completion_tokens, 20);
	cr_expect_gt(g.prompt_tokens, 1);
	cr_expect_eq(g.finish, INFERD__V1__FINISH_REASON__FINISH_REASON_LENGTH);
	cr_expect_gt(g.text_len, 0);

	/* Greedy is deterministic; the same prompt as ids gives the same tokens. */
	Inferd__V1__TokenizeRequest treq = INFERD__V1__TOKENIZE_REQUEST__INIT;
	Inferd__V1__TokenizeReply *trep = NULL;
	treq.model = "tiny";
	treq.text = "hello world";
	treq.add_special = true;
	cr_assert_eq(inferd_client_unary(c, INFERD__V1__METHOD__METHOD_TOKENIZE, &treq.base,
	                                 &inferd__v1__tokenize_reply__descriptor,
	                                 (ProtobufCMessage **)&trep, NULL, NULL, 0), STATUS(OK));
	cr_expect_eq(trep->n_token_ids, g.prompt_tokens);
	struct gen_result g2;
	struct gen_args a2 = { .ids = trep->token_ids, .n_ids = trep->n_token_ids, .max_tokens = 20,
	                       .ignore_eos = true };
	run_gen(c, &a2, &g2);
	cr_expect_eq(g2.n_ids, 20);
	cr_expect_arr_eq(g2.ids, g.ids, 20 * sizeof(int32_t));
	protobuf_c_message_free_unpacked(&trep->base, NULL);

	/* ListModels describes the model. */
	Inferd__V1__ListModelsRequest lreq = INFERD__V1__LIST_MODELS_REQUEST__INIT;
	Inferd__V1__ListModelsReply *lrep = NULL;
	cr_assert_eq(inferd_client_unary(c, INFERD__V1__METHOD__METHOD_LIST_MODELS, &lreq.base,
	                                 &inferd__v1__list_models_reply__descriptor,
	                                 (ProtobufCMessage **)&lrep, NULL, NULL, 0), STATUS(OK));
	cr_assert_eq(lrep->n_models, 1);
	cr_expect_str_eq(lrep->models[0]->name, "tiny");
	cr_expect_str_eq(lrep->models[0]->architecture, "llama");
	cr_expect_eq(lrep->models[0]->context_length, 256);
	cr_expect_eq(lrep->models[0]->vocab_size, 512);
	protobuf_c_message_free_unpacked(&lrep->base, NULL);
	inferd_client_free(c);
	cr_expect_eq(td_stop(&d), 0);
}

/* Runs `n` prompts of different lengths alone, then all at once; the tokens must agree. */
static void concurrent_equals_alone(int n, uint32_t max_tokens)
{
	static struct gen_result alone[32], together[32];
	static int32_t prompts[32][80];
	struct inferd_client *c = td_client(&d, false, NULL);

	for (int i = 0; i < n; i++) {
		size_t len = 3 + (size_t)(i * 7) % 70;
		prompt_ids(prompts[i], len, i + 1);
		struct gen_args a = { .ids = prompts[i], .n_ids = len, .max_tokens = max_tokens,
		                      .ignore_eos = true };
		run_gen(c, &a, &alone[i]);
		cr_assert_eq(alone[i].status, STATUS(OK), "%s", alone[i].message);
	}
	for (int i = 0; i < n; i++) {
		size_t len = 3 + (size_t)(i * 7) % 70;
		struct gen_args a = { .ids = prompts[i], .n_ids = len, .max_tokens = max_tokens,
		                      .ignore_eos = true };
		start_gen(c, &a, &together[i]);
	}
	wait_all(c);
	for (int i = 0; i < n; i++) {
		cr_expect_eq(together[i].status, STATUS(OK), "%d: %s", i, together[i].message);
		cr_expect_eq(together[i].n_ids, max_tokens, "request %d", i);
		cr_expect_arr_eq(together[i].ids, alone[i].ids, max_tokens * sizeof(int32_t),
		                 "request %d: batched tokens differ from the tokens run alone", i);
	}
	inferd_client_free(c);
}

Test(generate, thirty_two_concurrent_requests_equal_each_alone)
{
	start_with(NULL);
	concurrent_equals_alone(32, 24);
	struct inferd_client *c = td_client(&d, false, NULL);
	Inferd__V1__StatsReply *s = stats(c);
	cr_expect_geq(s->tokens_generated, 64 * 24);
	cr_expect_eq(s->requests_running, 0);
	cr_expect_eq(s->generations_finished, 64);
	cr_expect_gt(s->iterations, 24);
	cr_expect_gt(s->forward_seconds, 0);
	cr_expect_leq(s->forward_seconds, s->iteration_seconds);
	cr_expect_gt(s->ttft_seconds_mean, 0);
	cr_expect_geq(s->ttft_seconds_max, s->ttft_seconds_mean);
	cr_expect_gt(s->tpot_seconds_mean, 0);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	inferd_client_free(c);
}

Test(generate, tiny_kv_pool_preempts_and_every_request_completes_right)
{
	/* 12 blocks of 16 positions; 8 requests of up to ~90 positions each cannot all run. */
	start_with("kv_blocks = 12\nmax_sequences = 8\n");
	concurrent_equals_alone(8, 40);
	struct inferd_client *c = td_client(&d, false, NULL);
	Inferd__V1__StatsReply *s = stats(c);
	cr_expect_gt(s->requests_preempted, 0, "the small pool forced preemption");
	cr_expect_eq(s->kv_blocks_used, 0);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	inferd_client_free(c);
}

Test(generate, shared_prefix_is_served_from_the_cache)
{
	start_with(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	int32_t p[60];
	struct gen_result first, second;
	prompt_ids(p, 60, 42);
	struct gen_args a = { .ids = p, .n_ids = 60, .max_tokens = 8, .ignore_eos = true };
	run_gen(c, &a, &first);
	run_gen(c, &a, &second);
	cr_assert_eq(second.status, STATUS(OK));
	cr_expect_eq(first.cached_tokens, 0);
	cr_expect_eq(second.cached_tokens, 48, "three whole blocks of 16 came from the cache");
	cr_expect_arr_eq(second.ids, first.ids, 8 * sizeof(int32_t), "same output from the cache");
	Inferd__V1__StatsReply *s = stats(c);
	cr_expect_gt(s->prefix_cache_hit_rate, 0.0);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	inferd_client_free(c);
}

static uint64_t blocks_used_eventually_zero(struct inferd_client *c)
{
	uint64_t used = 1;
	for (int i = 0; i < 200 && used; i++) {
		Inferd__V1__StatsReply *s = stats(c);
		used = s->kv_blocks_used + s->requests_running + s->requests_waiting;
		protobuf_c_message_free_unpacked(&s->base, NULL);
		if (used)
			usleep(10000);
	}
	return used;
}

Test(generate, cancel_and_deadline_free_the_blocks)
{
	start_model(SLOW_ARGS, "kv_blocks = 64\n");
	struct inferd_client *c = td_client(&d, false, NULL);
	struct gen_result g;
	struct gen_args a = { .text = "a long story", .max_tokens = 480, .ignore_eos = true };
	start_gen(c, &a, &g);
	while (g.n_ids < 3 && !g.done)
		cr_assert(inferd_client_poll(c, 1000) >= 0);
	cr_assert_eq(inferd_client_cancel(c, g.call_id), 0);
	while (!g.done)
		cr_assert(inferd_client_poll(c, 1000) >= 0);
	cr_expect_eq(g.status, STATUS(CANCELLED), "%s", g.message);
	cr_expect_lt(g.n_ids, 480);
	cr_expect_eq(blocks_used_eventually_zero(c), 0, "cancel freed the sequence's blocks");

	struct gen_args late = { .text = "another long story", .max_tokens = 480,
	                         .ignore_eos = true, .deadline_ms = 30 };
	run_gen(c, &late, &g);
	cr_expect_eq(g.status, STATUS(DEADLINE_EXCEEDED), "%s", g.message);
	cr_expect_eq(blocks_used_eventually_zero(c), 0, "the deadline freed the blocks");
	inferd_client_free(c);
}

/* Sends a Generate request frame with a keepalive promise on a raw REQ socket. */
static void raw_generate(int sock, uint64_t call_id, uint32_t keepalive_ms)
{
	Inferd__V1__GenerateRequest req = INFERD__V1__GENERATE_REQUEST__INIT;
	Inferd__V1__SamplingParams sp = INFERD__V1__SAMPLING_PARAMS__INIT;
	req.model = "tiny";
	req.prompt_case = INFERD__V1__GENERATE_REQUEST__PROMPT_TEXT;
	req.text = "a story that goes on and on";
	req.max_tokens = 4000;
	sp.ignore_eos = true;
	req.sampling = &sp;
	uint8_t buf[256];
	inferd_frame q = INFERD_FRAME_INIT;
	q.call_id = call_id;
	q.method = INFERD__V1__METHOD__METHOD_GENERATE;
	q.keepalive_ms = keepalive_ms;
	q.payload.len = inferd__v1__generate_request__pack(&req, buf);
	q.payload.data = buf;
	td_raw_send_frame(sock, (uint32_t)call_id | 0x80000000u, &q);
}

/* Reads what has arrived; @return whether the call's last frame was among it. */
static bool raw_drain(int sock, int timeout_ms, uint32_t *n_frames, int *status)
{
	uint32_t reqid;
	inferd_frame *f;
	bool last = false;
	while ((f = td_raw_recv(sock, timeout_ms, &reqid)) != NULL) {
		(*n_frames)++;
		if (f->end_of_stream) {
			last = true;
			*status = f->status;
		}
		inferd_frame_free(f);
		timeout_ms = 0;
	}
	return last;
}

Test(generate, a_client_that_goes_away_is_caught_by_its_keepalive)
{
	/* A long generation (4000 tokens over a growing context) on the slow model. */
	start_model("--dim 384 --layers 6 --heads 6 --kv-heads 2 --ffn 1024 --vocab 4096 "
	            "--context 4096", "kv_blocks = 300\n");
	int raw = td_raw_socket(d.tcp_url);
	raw_generate(raw, 5, 100);
	uint32_t n = 0;
	int status = -1;
	/* Keepalives every 50 ms for 2 s: 20x the 100 ms promise, and past two of the daemon's
	 * once-a-second checks; the call goes on. */
	for (int i = 0; i < 40; i++) {
		inferd_frame ka = INFERD_FRAME_INIT;
		ka.method = INFERD__V1__METHOD__METHOD_KEEPALIVE;
		td_raw_send_frame(raw, 0x80000100u + (uint32_t)i, &ka);
		usleep(50000);
		cr_assert(!raw_drain(raw, 0, &n, &status), "the call ended (%d) while the client "
		          "kept its promise", status);
	}
	cr_expect_gt(n, 1, "tokens streamed meanwhile");
	struct inferd_client *c = td_client(&d, false, NULL);
	Inferd__V1__StatsReply *s = stats(c);
	cr_expect_eq(s->requests_running, 1);
	cr_expect_eq(s->calls_abandoned, 0);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	/* Gone without a Cancel: nanomsg does not tell the daemon, the missed keepalives do. */
	nn_close(raw);
	cr_expect_eq(blocks_used_eventually_zero(c), 0, "the sequence's blocks were freed");
	s = stats(c);
	cr_expect_eq(s->calls_abandoned, 1);
	cr_expect_eq(s->generations_finished, 1);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	cr_expect(td_log_contains(&d, "taking it as gone"));
	inferd_client_free(c);
}

Test(generate, the_client_library_keeps_its_calls_alive_while_it_polls)
{
	start_model("--dim 384 --layers 6 --heads 6 --kv-heads 2 --ffn 1024 --vocab 4096 "
	            "--context 4096", "kv_blocks = 300\n");
	const char *url = d.tcp_url;
	struct inferd_client_options o = { .keepalive_ms = 200, .connect_timeout_ms = 3000 };
	struct inferd_client *c;
	char err[256];
	cr_assert_eq(inferd_client_new(&url, 1, &o, &c, err, sizeof(err)), 0, "%s", err);
	struct gen_result g;
	struct gen_args a = { .text = "a story that goes on and on", .max_tokens = 4000,
	                      .ignore_eos = true };
	start_gen(c, &a, &g);
	/* Polling for 2 s (10x the promise): the library's keepalives hold the call. */
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		cr_assert(inferd_client_poll(c, 50) >= 0);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (!g.done && (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 2000);
	cr_assert(!g.done, "the call ended (%s: %s) while the client polled",
	          inferd_client_status_name(g.status), g.message);
	/* A client that stops polling breaks its promise: the daemon ends the call. */
	sleep(3);
	while (!g.done)
		cr_assert(inferd_client_poll(c, 1000) >= 0);
	cr_expect_eq(g.status, STATUS(CANCELLED), "%s", g.message);
	cr_expect(strstr(g.message, "no frame from the client") != NULL, "%s", g.message);
	cr_expect_eq(blocks_used_eventually_zero(c), 0);
	inferd_client_free(c);
}

Test(generate, a_full_queue_sheds_load_with_resource_exhausted)
{
	start_with("max_sequences = 1\nmax_queued = 2\nmax_batched_tokens = 32\n");
	struct inferd_client *c = td_client(&d, false, NULL);
	static struct gen_result g[12];
	for (int i = 0; i < 12; i++) {
		struct gen_args a = { .text = "queue me", .max_tokens = 30, .ignore_eos = true };
		start_gen(c, &a, &g[i]);
	}
	wait_all(c);
	int ok = 0, shed = 0;
	for (int i = 0; i < 12; i++) {
		if (g[i].status == STATUS(OK))
			ok++;
		else if (g[i].status == STATUS(RESOURCE_EXHAUSTED))
			shed++;
		else
			cr_expect_fail("request %d: %s %s", i, inferd_status_name(g[i].status), g[i].message);
	}
	cr_expect_gt(shed, 0, "some requests were shed");
	/* At least the max_queued ones complete; a third when the worker started the first before
	 * the burst had arrived (a race: 12 requests come in one go). */
	cr_expect_geq(ok, 2, "the queued ones completed (%d ok, %d shed)", ok, shed);
	cr_expect_eq(ok + shed, 12);
	inferd_client_free(c);
}

Test(generate, bad_requests_get_clear_statuses)
{
	start_with(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct gen_result g;
	int32_t big[300], bad_id[2] = { 1, 99999 };
	prompt_ids(big, 300, 1);

	struct gen_args unknown = { .model = "nope", .text = "x" };
	run_gen(c, &unknown, &g);
	cr_expect_eq(g.status, STATUS(NOT_FOUND));
	cr_expect(strstr(g.message, "no model named 'nope'") != NULL, "%s", g.message);

	struct gen_args too_long = { .ids = big, .n_ids = 300 };
	run_gen(c, &too_long, &g);
	cr_expect_eq(g.status, STATUS(INVALID_ARGUMENT));
	cr_expect(strstr(g.message, "does not fit the context of 256") != NULL, "%s", g.message);

	struct gen_args outside = { .ids = bad_id, .n_ids = 2 };
	run_gen(c, &outside, &g);
	cr_expect_eq(g.status, STATUS(INVALID_ARGUMENT));
	cr_expect(strstr(g.message, "outside the vocabulary") != NULL, "%s", g.message);

	struct gen_args hot = { .text = "x", .temperature = -1 };
	run_gen(c, &hot, &g);
	cr_expect_eq(g.status, STATUS(INVALID_ARGUMENT));
	cr_expect(strstr(g.message, "temperature") != NULL, "%s", g.message);

	struct gen_args empty = { .ids = bad_id, .n_ids = 0 };
	run_gen(c, &empty, &g);
	cr_expect_eq(g.status, STATUS(INVALID_ARGUMENT));

	/* The daemon still generates afterwards. */
	struct gen_args fine = { .text = "x", .max_tokens = 3, .ignore_eos = true };
	run_gen(c, &fine, &g);
	cr_expect_eq(g.status, STATUS(OK));
	cr_expect_eq(g.n_ids, 3);
	inferd_client_free(c);
}

Test(generate, sigterm_drains_running_generations)
{
	start_with(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	static struct gen_result g[4];
	for (int i = 0; i < 4; i++) {
		struct gen_args a = { .text = "drain me", .max_tokens = 60, .ignore_eos = true };
		start_gen(c, &a, &g[i]);
	}
	while (g[0].n_ids < 2)
		cr_assert(inferd_client_poll(c, 1000) >= 0);
	td_signal(&d, SIGTERM);
	wait_all(c);
	for (int i = 0; i < 4; i++) {
		cr_expect_eq(g[i].status, STATUS(OK), "%d: %s", i, g[i].message);
		cr_expect_eq(g[i].n_ids, 60);
	}
	cr_expect_eq(td_wait(&d), 0);
	inferd_client_free(c);
}

Test(generate, the_trained_stories_model_writes_english)
{
	const char *stories = getenv("INFERD_STORIES260K");
	struct stat st;
	if (!stories || stat(stories, &st) != 0)
		cr_skip_test("../shared/models/stories260K.gguf is absent (only in the project's "
		             "development checkout)");
	char extra[512];
	snprintf(extra, sizeof(extra), "[model.stories]\npath = %s\n", stories);
	td_start(&d, extra, NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct gen_result g;
	struct gen_args a = { .model = "stories", .text = "Once upon a time", .max_tokens = 60 };
	run_gen(c, &a, &g);
	cr_assert_eq(g.status, STATUS(OK), "%s", g.message);
	cr_expect(strstr(g.text, " the ") || strstr(g.text, " was "), "not English: %s", g.text);
	cr_expect(strstr(g.text, "Lily") != NULL, "greedy continuation changed: %s", g.text);
	inferd_client_free(c);
}

Test(generate, stop_strings_end_the_text_before_them)
{
	start_with(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct gen_result full, cut;
	struct gen_args a = { .text = "stop here", .max_tokens = 40, .ignore_eos = true };
	run_gen(c, &a, &full);
	cr_assert_eq(full.status, STATUS(OK));
	cr_assert_gt(full.text_len, 12, "need some text: %s", full.text);
	/* A stop string taken from the middle of the greedy output, likely across tokens. */
	char stop[8];
	memcpy(stop, full.text + 6, 5);
	stop[5] = '\0';
	const char *at = strstr(full.text, stop);
	cr_assert_not_null(at);
	struct gen_args b = a;
	b.stop = stop;
	run_gen(c, &b, &cut);
	cr_assert_eq(cut.status, STATUS(OK), "%s", cut.message);
	cr_expect_eq(cut.finish, INFERD__V1__FINISH_REASON__FINISH_REASON_STOP);
	cr_expect_eq(cut.text_len, (size_t)(at - full.text), "text before the stop string only");
	cr_expect(strncmp(cut.text, full.text, cut.text_len) == 0);
	cr_expect_null(strstr(cut.text, stop), "the stop string itself is never sent");

	/* A stop string that the whole output starts: everything is held back until the end,
	 * and must still come out in full. */
	char never[sizeof(full.text) + 2];
	memcpy(never, full.text, full.text_len);
	memcpy(never + full.text_len, "Q", 2);
	struct gen_args c2 = a;
	c2.stop = never;
	struct gen_result all;
	run_gen(c, &c2, &all);
	cr_assert_eq(all.status, STATUS(OK), "%s", all.message);
	cr_expect_eq(all.finish, INFERD__V1__FINISH_REASON__FINISH_REASON_LENGTH);
	cr_expect_eq(all.text_len, full.text_len, "held-back text was lost: %zu of %zu bytes",
	             all.text_len, full.text_len);
	cr_expect_str_eq(all.text, full.text);
	inferd_client_free(c);
}

Test(generate, seeded_sampling_is_reproducible_and_logprobs_are_reported)
{
	start_with(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct gen_result s1, s2, s3;
	struct gen_args a = { .text = "random", .max_tokens = 30, .ignore_eos = true,
	                      .temperature = 1.0f, .use_seed = true, .seed = 42, .top_logprobs = 3 };
	run_gen(c, &a, &s1);
	run_gen(c, &a, &s2);
	a.seed = 43;
	run_gen(c, &a, &s3);
	cr_assert_eq(s1.status, STATUS(OK), "%s", s1.message);
	cr_expect_arr_eq(s1.ids, s2.ids, 30 * sizeof(int32_t), "same seed, same tokens");
	cr_expect(memcmp(s1.ids, s3.ids, 30 * sizeof(int32_t)) != 0, "another seed, other tokens");
	cr_expect_eq(s1.n_logprob_frames, 30);
	cr_expect_eq(s1.n_top_seen, 90, "three alternatives per token");
	cr_expect_leq(s1.max_logprob, 0.0f);
	inferd_client_free(c);
}

Test(generate, nano_batching_gives_the_same_tokens)
{
	/* Two nano-batches per iteration from 2 tokens up: every batch of two or more sequences
	 * is split, and the tokens must still equal those of each request run alone. */
	char keys[256];
	snprintf(keys, sizeof(keys), "nano_batching = on\ntune_file = /nonexistent/tiny.tune\n");
	start_with(keys);
	concurrent_equals_alone(16, 16);
	cr_expect(td_log_contains(&d, "nano-batching on, untuned"));
}

Test(generate, dtype_overrides_convert_weights_and_halve_the_kv_cache)
{
	/* The f32 test model served as Q8_0 with an f16 KV cache: it loads, reports the types,
	 * and batching still equals each request alone. */
	start_with("weight_dtype = q8_0\nkv_cache_dtype = f16\n");
	cr_expect(td_log_contains(&d, "matrices converted to Q8_0 at load"));
	cr_expect(td_log_contains(&d, "(Q8_0), context"));
	cr_expect(td_log_contains(&d, "positions (F16)"));
	concurrent_equals_alone(8, 16);
}

Test(generate, tune_writes_a_profile_that_start_up_reads)
{
	char conf[300], out[8192], tune[300];
	make_model_with(TINY_ARGS);
	snprintf(conf, sizeof(conf), "%s/tune.conf", model_dir);
	snprintf(tune, sizeof(tune), "%s.tune", tiny_path);
	FILE *f = fopen(conf, "w");
	cr_assert_not_null(f);
	fprintf(f, "[model.tiny]\npath = %s\nmax_sequences = 8\ntune_context = 64\n", tiny_path);
	fclose(f);
	char *args[] = { "--config", conf, "--tune", "tiny", NULL };
	cr_assert_eq(td_run_inferd(args, out, sizeof(out)), 0, "%s", out);
	cr_expect(strstr(out, "tune: batch 8 x context 64") != NULL, "%s", out);
	cr_expect(strstr(out, "wrote ") != NULL, "%s", out);
	struct stat st;
	cr_assert_eq(stat(tune, &st), 0, "no profile at %s", tune);

	/* Start-up with nano_batching = auto follows the profile. */
	char extra[600];
	snprintf(extra, sizeof(extra), "[model.tiny]\npath = %s\nnano_batching = auto\n", tiny_path);
	td_start(&d, extra, NULL);
	cr_expect(td_log_contains(&d, "(profile "), "the profile was not read");
	struct inferd_client *c = td_client(&d, false, NULL);
	struct gen_result g;
	struct gen_args a = { .text = "tuned", .max_tokens = 4, .ignore_eos = true };
	run_gen(c, &a, &g);
	cr_expect_eq(g.status, STATUS(OK));
	inferd_client_free(c);
	td_cleanup(&d);

	/* A broken profile is ignored with a warning, and the daemon still starts. */
	f = fopen(tune, "w");
	cr_assert_not_null(f);
	fputs("[nano]\nsplit = banana\n", f);
	fclose(f);
	td_start(&d, extra, NULL);
	cr_expect(td_log_contains(&d, "ignoring the nano-batching profile"));

	char *bad[] = { "--config", conf, "--tune", "nope", NULL };
	cr_expect_eq(td_run_inferd(bad, out, sizeof(out)), 1);
	cr_expect(strstr(out, "no such model") != NULL, "%s", out);
}
