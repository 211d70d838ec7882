/* GenerateImage and POST /v1/images/generations through the real daemon serving a tiny
 * random-weight diffusers pipeline (inferd-mkmodel diffusion): progress and PNG frames,
 * reproducible seeds, batches equal to their images made alone, stream batching of concurrent
 * requests, image-to-image, cancel, bad requests. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon-fixture.h"
#include "image_io.h"

#define STATUS(x) INFERD__V1__STATUS_CODE__STATUS_##x
#define MAX_IMAGES 4

static struct test_daemon d;
static char model_dir[] = "/tmp/inferd-test-images-XXXXXX";
static int http_port;

static void cleanup(void)
{
	char cmd[300];
	td_cleanup(&d);
	if (strncmp(model_dir, "/tmp/inferd-test-images-", 24) == 0 && !strstr(model_dir, "XXXXXX")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", model_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", model_dir);
	}
}

/* A tiny pipeline plus a tiny LLM, served as "img" and "llm". */
static void start(const char *image_keys)
{
	const char *mk = getenv("INFERD_MKMODEL");
	char cmd[1024], extra[1024];
	cr_assert_not_null(mk, "INFERD_MKMODEL is not set");
	cr_assert_not_null(mkdtemp(model_dir));
	snprintf(cmd, sizeof cmd, "'%s' diffusion --out '%s/img' --seed 3 >/dev/null && '%s' llm "
	         "--out '%s/llm.gguf' --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 "
	         "--vocab 512 --context 256 --seed 7 >/dev/null", mk, model_dir, mk, model_dir);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	http_port = td_free_port();
	snprintf(extra, sizeof extra, "[http]\nlisten = 127.0.0.1:%d\n[model.img]\npath = %s/img\n"
	         "threads = 2\n%s[model.llm]\npath = %s/llm.gguf\n", http_port, model_dir,
	         image_keys ? image_keys : "", model_dir);
	td_start(&d, extra, NULL);
}

TestSuite(image, .fini = cleanup, .timeout = 300);

/* ---- a call and what came back ----------------------------------------------------------- */

struct img_result {
	bool done;
	int status;
	char message[256];
	int n_progress, last_step, total_steps;
	uint8_t *png[MAX_IMAGES];
	size_t png_len[MAX_IMAGES];
	uint64_t seed[MAX_IMAGES];
	int n_images;
	uint32_t width, height;
	double total_s;
	uint64_t call_id;
	bool cancel_after_progress;
};

static void result_free(struct img_result *r)
{
	for (int i = 0; i < MAX_IMAGES; i++)
		free(r->png[i]);
	memset(r, 0, sizeof(*r));
}

static int on_reply(const struct inferd_reply *r, void *arg)
{
	struct img_result *g = arg;
	int stop = 0;
	if (r->payload_len) {
		Inferd__V1__GenerateImageReply *rep =
			inferd__v1__generate_image_reply__unpack(NULL, r->payload_len, r->payload);
		cr_assert_not_null(rep, "a reply that does not decode");
		if (rep->image.len) {
			cr_assert_lt(rep->image_index, MAX_IMAGES);
			int k = (int)rep->image_index;
			cr_assert_null(g->png[k], "image %d sent twice", k);
			g->png[k] = malloc(rep->image.len);
			memcpy(g->png[k], rep->image.data, rep->image.len);
			g->png_len[k] = rep->image.len;
			g->seed[k] = rep->seed;
			g->width = rep->width;
			g->height = rep->height;
			g->n_images++;
		} else if (!r->end_of_stream) {
			g->n_progress++;
			cr_assert_eq(rep->step, (uint32_t)g->last_step + 1, "progress steps in order");
			g->last_step = (int)rep->step;
			g->total_steps = (int)rep->total_steps;
			stop = g->cancel_after_progress;
		}
		if (r->end_of_stream)
			g->total_s = rep->total_seconds;
		inferd__v1__generate_image_reply__free_unpacked(rep, NULL);
	}
	if (r->end_of_stream) {
		g->done = true;
		g->status = r->status;
		snprintf(g->message, sizeof g->message, "%s", r->status_message);
	}
	return stop;
}

struct img_args {
	const char *model;
	const char *prompt;
	const char *negative;
	uint32_t width, height, steps, num_images;
	uint64_t seed;
	const char *scheduler;
	float guidance, strength;
	const uint8_t *init;
	size_t init_len;
	bool progress;
};

static void start_img(struct inferd_client *c, const struct img_args *a, struct img_result *g)
{
	Inferd__V1__GenerateImageRequest req = INFERD__V1__GENERATE_IMAGE_REQUEST__INIT;
	req.model = (char *)(a->model ? a->model : "img");
	req.prompt = (char *)(a->prompt ? a->prompt : "a small red horse");
	req.negative_prompt = (char *)(a->negative ? a->negative : "");
	req.width = a->width ? a->width : 32;
	req.height = a->height ? a->height : 32;
	req.steps = a->steps ? a->steps : 3;
	req.num_images = a->num_images;
	req.use_seed = true;
	req.seed = a->seed;
	req.scheduler = (char *)(a->scheduler ? a->scheduler : "");
	req.guidance_scale = a->guidance;
	req.strength = a->strength;
	req.init_image.data = (uint8_t *)a->init;
	req.init_image.len = a->init_len;
	req.progress = a->progress;
	cr_assert_eq(inferd_client_start_msg(c, INFERD__V1__METHOD__METHOD_GENERATE_IMAGE, &req.base,
	                                     NULL, on_reply, g, &g->call_id), 0);
}

static void wait_all(struct inferd_client *c)
{
	while (inferd_client_in_flight(c) > 0)
		cr_assert_geq(inferd_client_poll(c, 1000), 0);
}

static void run_img(struct inferd_client *c, const struct img_args *a, struct img_result *g)
{
	start_img(c, a, g);
	wait_all(c);
	cr_assert(g->done);
}

static bool is_png(const uint8_t *p, size_t n)
{
	return n > 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0;
}

static bool same(const struct img_result *a, int i, const struct img_result *b, int j)
{
	return a->png_len[i] == b->png_len[j] && memcmp(a->png[i], b->png[j], a->png_len[i]) == 0;
}

/* The same picture up to float rounding: a batch runs other GEMM shapes than one request
 * alone (oneDNN picks kernels by shape), so sums differ in their last bits and a pixel may land
 * on the next 8-bit level. At most 2 levels anywhere and 0.1 on average. */
static bool close_to(const struct img_result *a, int i, const struct img_result *b, int j)
{
	struct image_rgb8 x = { 0 }, y = { 0 };
	char err[128];
	cr_assert_eq(image_decode(a->png[i], a->png_len[i], &x, err, sizeof err), 0, "%s", err);
	cr_assert_eq(image_decode(b->png[j], b->png_len[j], &y, err, sizeof err), 0, "%s", err);
	cr_assert_eq(x.width, y.width);
	cr_assert_eq(x.height, y.height);
	size_t n = 3 * (size_t)x.width * (size_t)x.height;
	int max = 0;
	double sum = 0;
	for (size_t k = 0; k < n; k++) {
		int dv = abs((int)x.pixels[k] - (int)y.pixels[k]);
		max = dv > max ? dv : max;
		sum += dv;
	}
	fprintf(stderr, "pixel difference: max %d, mean %.4f\n", max, sum / (double)n);
	image_rgb8_free(&x);
	image_rgb8_free(&y);
	return max <= 2 && sum / (double)n <= 0.1;
}

/* ---- tests ------------------------------------------------------------------------------- */

Test(image, streams_progress_then_a_png)
{
	start(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct img_result g = { 0 };
	run_img(c, &(struct img_args){ .seed = 11, .steps = 4, .progress = true }, &g);
	cr_assert_eq(g.status, STATUS(OK), "%s", g.message);
	cr_assert_eq(g.n_progress, 4);
	cr_assert_eq(g.total_steps, 4);
	cr_assert_eq(g.n_images, 1);
	cr_assert(is_png(g.png[0], g.png_len[0]));
	cr_assert_eq(g.width, 32);
	cr_assert_eq(g.height, 32);
	cr_assert_eq(g.seed[0], 11);
	cr_assert_gt(g.total_s, 0);
	result_free(&g);

	/* Without progress frames: only the image. */
	run_img(c, &(struct img_args){ .seed = 11, .steps = 2 }, &g);
	cr_assert_eq(g.status, STATUS(OK), "%s", g.message);
	cr_assert_eq(g.n_progress, 0);
	cr_assert_eq(g.n_images, 1);
	result_free(&g);
	inferd_client_free(c);
}

Test(image, seeds_reproduce_and_a_batch_equals_its_images_alone)
{
	start(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct img_result a = { 0 }, b = { 0 }, other = { 0 }, batch = { 0 }, second = { 0 };
	run_img(c, &(struct img_args){ .seed = 5 }, &a);
	run_img(c, &(struct img_args){ .seed = 5 }, &b);
	run_img(c, &(struct img_args){ .seed = 6 }, &other);
	run_img(c, &(struct img_args){ .seed = 5, .num_images = 2 }, &batch);
	cr_assert_eq(batch.status, STATUS(OK), "%s", batch.message);
	cr_assert(same(&a, 0, &b, 0), "the same seed gave another image");
	cr_assert(!same(&a, 0, &other, 0), "another seed gave the same image");
	cr_assert_eq(batch.n_images, 2);
	cr_assert_eq(batch.seed[0], 5);
	cr_assert_eq(batch.seed[1], 6);
	cr_assert(close_to(&batch, 0, &a, 0), "image 0 of a batch differs from its seed alone");
	cr_assert(close_to(&batch, 1, &other, 0), "image 1 of a batch differs from seed + 1 alone");
	/* Euler ancestral draws noise every step: still reproducible. */
	run_img(c, &(struct img_args){ .seed = 9, .scheduler = "euler_a" }, &second);
	result_free(&b);
	run_img(c, &(struct img_args){ .seed = 9, .scheduler = "euler_a" }, &b);
	cr_assert(same(&second, 0, &b, 0));
	result_free(&a);
	result_free(&b);
	result_free(&other);
	result_free(&batch);
	result_free(&second);
	inferd_client_free(c);
}

static Inferd__V1__StatsReply *stats(struct inferd_client *c)
{
	Inferd__V1__StatsRequest req = INFERD__V1__STATS_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	char msg[256];
	int st = inferd_client_unary(c, INFERD__V1__METHOD__METHOD_STATS, &req.base,
	                             &inferd__v1__stats_reply__descriptor, &rep, NULL, msg, sizeof msg);
	cr_assert_eq(st, STATUS(OK), "%s", msg);
	return (Inferd__V1__StatsReply *)rep;
}

Test(image, concurrent_requests_share_unet_batches_and_equal_each_alone)
{
	start("max_batch = 16\n");
	struct inferd_client *c = td_client(&d, false, NULL);
	enum { N = 4 };
	struct img_result together[N] = { 0 }, alone[N] = { 0 };
	static const char *const scheds[N] = { "ddim", "euler", "dpmpp_2m", "euler_a" };
	struct img_args a[N];
	for (int i = 0; i < N; i++)
		a[i] = (struct img_args){ .seed = 100 + (uint64_t)i, .steps = 6 + (uint32_t)i,
		                          .scheduler = scheds[i] };
	for (int i = 0; i < N; i++)
		start_img(c, &a[i], &together[i]);
	wait_all(c);
	Inferd__V1__StatsReply *s = stats(c);
	/* 4 requests with guidance (2 items a step each), started together: some steps ran
	 * several requests in one UNet call. */
	cr_assert_gt(s->unet_items, 2 * s->unet_calls, "no UNet call batched two requests "
	             "(%llu items in %llu calls)", (unsigned long long)s->unet_items,
	             (unsigned long long)s->unet_calls);
	cr_assert_eq(s->images_generated, N);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	for (int i = 0; i < N; i++) {
		run_img(c, &a[i], &alone[i]);
		cr_assert_eq(together[i].status, STATUS(OK), "%s", together[i].message);
		cr_assert(close_to(&together[i], 0, &alone[i], 0), "request %d differs when batched", i);
		result_free(&together[i]);
		result_free(&alone[i]);
	}
	inferd_client_free(c);
}

Test(image, image_to_image_from_a_png)
{
	start(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct img_result src = { 0 }, out = { 0 }, bigger = { 0 };
	run_img(c, &(struct img_args){ .seed = 1 }, &src);
	cr_assert_eq(src.status, STATUS(OK), "%s", src.message);
	run_img(c, &(struct img_args){ .seed = 2, .steps = 10, .strength = 0.5f, .init = src.png[0],
	                               .init_len = src.png_len[0], .progress = true }, &out);
	cr_assert_eq(out.status, STATUS(OK), "%s", out.message);
	cr_assert_eq(out.total_steps, 5, "strength 0.5 of 10 steps runs 5");
	cr_assert(is_png(out.png[0], out.png_len[0]));
	/* An init image of another size is resized to the request's. */
	run_img(c, &(struct img_args){ .seed = 2, .width = 48, .height = 16, .strength = 0.9f,
	                               .init = src.png[0], .init_len = src.png_len[0] }, &bigger);
	cr_assert_eq(bigger.status, STATUS(OK), "%s", bigger.message);
	cr_assert_eq(bigger.width, 48);
	cr_assert_eq(bigger.height, 16);
	result_free(&src);
	result_free(&out);
	result_free(&bigger);
	inferd_client_free(c);
}

Test(image, cancel_ends_the_call)
{
	start(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct img_result g = { .cancel_after_progress = true };
	run_img(c, &(struct img_args){ .seed = 1, .steps = 200, .progress = true }, &g);
	cr_assert_eq(g.status, STATUS(CANCELLED), "%s: %s", inferd_client_status_name(g.status),
	             g.message);
	cr_assert_lt(g.n_progress, 200);
	cr_assert_eq(g.n_images, 0);
	result_free(&g);
	/* The daemon goes on serving. */
	run_img(c, &(struct img_args){ .seed = 1 }, &g);
	cr_assert_eq(g.status, STATUS(OK), "%s", g.message);
	result_free(&g);
	inferd_client_free(c);
}

static void expect_status(struct inferd_client *c, const struct img_args *a, int status,
                          const char *text)
{
	struct img_result g = { 0 };
	run_img(c, a, &g);
	cr_assert_eq(g.status, status, "expected %s, got %s: %s", inferd_client_status_name(status),
	             inferd_client_status_name(g.status), g.message);
	cr_assert(strstr(g.message, text), "'%s' does not say '%s'", g.message, text);
	cr_assert_eq(g.n_images, 0);
	result_free(&g);
}

Test(image, bad_requests_get_clear_errors)
{
	start(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	expect_status(c, &(struct img_args){ .model = "nope" }, STATUS(NOT_FOUND), "nope");
	expect_status(c, &(struct img_args){ .model = "llm" }, STATUS(NOT_FOUND), "language model");
	expect_status(c, &(struct img_args){ .width = 30 }, STATUS(INVALID_ARGUMENT), "multiples");
	expect_status(c, &(struct img_args){ .width = 8192 }, STATUS(INVALID_ARGUMENT), "width");
	expect_status(c, &(struct img_args){ .steps = 5000 }, STATUS(INVALID_ARGUMENT), "steps");
	expect_status(c, &(struct img_args){ .scheduler = "pndm" }, STATUS(INVALID_ARGUMENT),
	              "unknown scheduler");
	expect_status(c, &(struct img_args){ .strength = 1.5f }, STATUS(INVALID_ARGUMENT),
	              "strength");
	expect_status(c, &(struct img_args){ .guidance = -1 }, STATUS(INVALID_ARGUMENT), "guidance");
	expect_status(c, &(struct img_args){ .num_images = 99 }, STATUS(INVALID_ARGUMENT),
	              "num_images");
	static const uint8_t junk[] = "this is not an image at all";
	expect_status(c, &(struct img_args){ .init = junk, .init_len = sizeof junk },
	              STATUS(INVALID_ARGUMENT), "init_image");
	static const uint8_t cut_png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0 };
	expect_status(c, &(struct img_args){ .init = cut_png, .init_len = sizeof cut_png },
	              STATUS(INVALID_ARGUMENT), "init_image");
	/* A strength so small that no step is left. */
	struct img_result src = { 0 };
	run_img(c, &(struct img_args){ .seed = 1 }, &src);
	expect_status(c, &(struct img_args){ .steps = 2, .strength = 0.1f, .init = src.png[0],
	                                     .init_len = src.png_len[0] },
	              STATUS(INVALID_ARGUMENT), "no denoising step");
	result_free(&src);
	/* A payload that is not a GenerateImageRequest. */
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff };
	char msg[256];
	int st = inferd_client_call(c, INFERD__V1__METHOD__METHOD_GENERATE_IMAGE, garbage,
	                            sizeof garbage, NULL, NULL, NULL, msg, sizeof msg);
	cr_assert_eq(st, STATUS(INVALID_ARGUMENT), "%s", msg);
	/* Still serving. */
	run_img(c, &(struct img_args){ .seed = 1 }, &src);
	cr_assert_eq(src.status, STATUS(OK), "%s", src.message);
	result_free(&src);
	inferd_client_free(c);
}

Test(image, list_models_shows_both_kinds)
{
	start(NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	Inferd__V1__ListModelsRequest req = INFERD__V1__LIST_MODELS_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	char msg[256];
	int st = inferd_client_unary(c, INFERD__V1__METHOD__METHOD_LIST_MODELS, &req.base,
	                             &inferd__v1__list_models_reply__descriptor, &rep, NULL, msg,
	                             sizeof msg);
	cr_assert_eq(st, STATUS(OK), "%s", msg);
	Inferd__V1__ListModelsReply *l = (Inferd__V1__ListModelsReply *)rep;
	cr_assert_eq(l->n_models, 2);
	bool seen_img = false, seen_llm = false;
	for (size_t i = 0; i < l->n_models; i++) {
		if (strcmp(l->models[i]->name, "img") == 0) {
			seen_img = true;
			cr_assert_eq(l->models[i]->kind, INFERD__V1__MODEL_KIND__MODEL_KIND_DIFFUSION);
			cr_assert_gt(l->models[i]->parameters, 0);
		}
		if (strcmp(l->models[i]->name, "llm") == 0) {
			seen_llm = true;
			cr_assert_eq(l->models[i]->kind, INFERD__V1__MODEL_KIND__MODEL_KIND_LLM);
		}
	}
	cr_assert(seen_img && seen_llm);
	protobuf_c_message_free_unpacked(rep, NULL);
	inferd_client_free(c);
}

/* ---- HTTP, through curl ------------------------------------------------------------------ */

/* POSTs body to /v1/images/generations; the response body into out, the status returned. */
static int http_post(const char *body, char *out, size_t outlen)
{
	char path[256], cmd[1024];
	snprintf(path, sizeof path, "%s/body.json", d.dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(body, f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "curl -s -o '%s/out.json' -w '%%{http_code}' -X POST "
	         "--data-binary @'%s' http://127.0.0.1:%d/v1/images/generations", d.dir, path,
	         http_port);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	int status = 0;
	if (fscanf(p, "%d", &status) != 1)
		status = -1;
	pclose(p);
	snprintf(path, sizeof path, "%s/out.json", d.dir);
	f = fopen(path, "r");
	size_t n = f ? fread(out, 1, outlen - 1, f) : 0;
	out[n] = 0;
	if (f)
		fclose(f);
	return status;
}

Test(image, http_images_generations)
{
	if (system("curl --version >/dev/null 2>&1") != 0)
		cr_skip_test("curl is not installed");
	start(NULL);
	static char out[1 << 20];
	int st = http_post("{\"model\": \"img\", \"prompt\": \"a cat\", \"n\": 2, \"size\": "
	                   "\"32x16\", \"seed\": 4, \"steps\": 2}", out, sizeof out);
	cr_assert_eq(st, 200, "%d: %.300s", st, out);
	/* Two items, base64 of PNGs ("iVBORw0KGgo" is the PNG signature), seeds 4 and 5. */
	cr_assert(strstr(out, "\"b64_json\": \"iVBORw0KGgo") || strstr(out, "\"b64_json\":\"iVBORw0KGgo"),
	          "%.300s", out);
	cr_assert(strstr(out, "\"seed\":5") || strstr(out, "\"seed\": 5"), "%.300s", out);
	st = http_post("{\"prompt\": \"a cat\", \"model\": \"img\", \"size\": \"30x30\"}", out,
	               sizeof out);
	cr_assert_eq(st, 400, "%.300s", out);
	cr_assert(strstr(out, "multiples"), "%s", out);
	st = http_post("{\"prompt\": \"a\", \"model\": \"img\", \"response_format\": \"url\"}", out,
	               sizeof out);
	cr_assert_eq(st, 400, "%.300s", out);
	st = http_post("{\"prompt\": \"a\", \"model\": \"nope\"}", out, sizeof out);
	cr_assert_eq(st, 404, "%.300s", out);
	st = http_post("{\"model\": \"img\"}", out, sizeof out);
	cr_assert_eq(st, 400, "%.300s", out);
	cr_assert(strstr(out, "prompt"), "%s", out);
	st = http_post("{\"prompt\": \"a\", \"model\": \"img\", \"init_image\": \"@@@@\"}", out,
	               sizeof out);
	cr_assert_eq(st, 400, "%.300s", out);
}
