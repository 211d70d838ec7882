/* GenerateImage: a GenerateImageReply per progress step (when asked) and per finished image
 * (PNG bytes, its index and seed), then the final frame with the timings and the status. */
#include "generate_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "images.h"
#include "server-internal.h"

#define STATUS(x) INFERD__V1__STATUS_CODE__STATUS_##x

struct image_call {
	struct image_gen *gen;       /* NULL once it ended */
	uint64_t seed;
};

static void on_progress(int step, int total, void *arg)
{
	struct call *c = arg;
	Inferd__V1__GenerateImageReply rep = INFERD__V1__GENERATE_IMAGE_REPLY__INIT;
	rep.step = (uint32_t)step;
	rep.total_steps = (uint32_t)total;
	call_reply(c, &rep.base);
}

static void on_image(const struct image_event *e, void *arg)
{
	struct call *c = arg;
	Inferd__V1__GenerateImageReply rep = INFERD__V1__GENERATE_IMAGE_REPLY__INIT;
	rep.image.data = e->png;
	rep.image.len = e->png_len;
	rep.width = (uint32_t)e->width;
	rep.height = (uint32_t)e->height;
	rep.seed = e->seed;
	rep.image_index = (uint32_t)e->index;
	call_reply(c, &rep.base);
}

static void on_end(const struct image_event *e, int status, void *arg)
{
	struct call *c = arg;
	struct image_call *st = c->method_state;
	Inferd__V1__GenerateImageReply rep = INFERD__V1__GENERATE_IMAGE_REPLY__INIT;

	st->gen = NULL;
	if (status != STATUS(OK)) {
		call_finish(c, status, NULL, "%s", e->message[0] ? e->message : "image generation failed");
		return;
	}
	rep.step = rep.total_steps = (uint32_t)e->total;
	rep.seed = st->seed;
	rep.total_seconds = e->total_s;
	rep.queue_seconds = e->queue_s;
	call_finish(c, STATUS(OK), &rep.base, NULL);
}

static const struct image_sink call_sink = {
	.progress = on_progress, .image = on_image, .end = on_end,
};

static void image_release(struct call *c)
{
	struct image_call *st = c->method_state;
	image_gen_abandon(st->gen); /* cancel, deadline, drain timeout */
	free(st);
	c->method_state = NULL;
}

static const struct call_ops image_ops = { .release = image_release };

void method_generate_image(struct call *c, const uint8_t *payload, size_t len)
{
	Inferd__V1__GenerateImageRequest *req =
		inferd__v1__generate_image_request__unpack(NULL, len, payload);
	struct image_gen_params p;
	struct image_call *st = NULL;
	char msg[512];

	if (!req) {
		call_finish(c, STATUS(INVALID_ARGUMENT), NULL,
		            "payload does not decode as a GenerateImage request");
		return;
	}
	memset(&p, 0, sizeof p);
	if (req->n_adapters || req->n_controlnets) {
		call_finish(c, STATUS(UNIMPLEMENTED), NULL,
		            "LoRA adapters and ControlNets are not served yet");
		goto out;
	}
	if (req->width > 1u << 16 || req->height > 1u << 16 || req->steps > 1u << 16 ||
	    req->num_images > 1u << 16) {
		call_finish(c, STATUS(INVALID_ARGUMENT), NULL, "width, height, steps or num_images "
		            "out of range");
		goto out;
	}
	p.p.prompt = req->prompt;
	p.p.negative_prompt = req->negative_prompt;
	p.p.width = (int)req->width;
	p.p.height = (int)req->height;
	p.p.steps = (int)req->steps;
	p.p.guidance = req->guidance_scale;
	p.p.seed = req->use_seed ? req->seed : (uint64_t)(server_now() * 1e9) ^ c->call_id;
	p.p.scheduler = req->scheduler;
	p.p.strength = req->strength;
	p.p.num_images = (int)req->num_images;
	p.init_image = req->init_image.len ? req->init_image.data : NULL;
	p.init_len = req->init_image.len;
	p.progress = req->progress;
	snprintf(p.png_text, sizeof p.png_text, "%s%s%s; seed %llu; model %s",
	         req->prompt, req->negative_prompt[0] ? "; negative: " : "", req->negative_prompt,
	         (unsigned long long)p.p.seed, req->model);
	if (!(st = calloc(1, sizeof(*st)))) {
		call_finish(c, STATUS(RESOURCE_EXHAUSTED), NULL, "out of memory");
		goto out;
	}
	st->seed = p.p.seed;
	int status = image_gen_start(c->srv, req->model, &p, &call_sink, c, &st->gen, msg,
	                             sizeof msg);
	if (status != STATUS(OK)) {
		call_finish(c, status, NULL, "%s", msg);
		free(st);
		goto out;
	}
	c->method_state = st;
	c->ops = &image_ops;
out:
	inferd__v1__generate_image_request__free_unpacked(req, NULL);
}
