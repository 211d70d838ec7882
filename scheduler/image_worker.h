/* The image worker: one thread per served diffusion model that runs its requests as stream
 * batches (StreamDiffusion's idea applied across requests).
 *
 * Every iteration does one denoising step of every running request in ONE UNet call, each
 * request at its own step: a request joins the batch at its first step while others are
 * half-way and leaves after its last, so the UNet runs batches as full as the load allows and
 * nobody waits for a whole earlier image. Requests are admitted in arrival order while the
 * running ones fill fewer than max_batch UNet items (a request takes 2 x num_images with
 * guidance); one request is always admitted, whatever its size. Finished requests are decoded
 * by the VAE and encoded as PNG on this thread, so the event loop only copies bytes.
 *
 * Hand-offs as the LLM worker's: a locked inbox and a condition variable wake the thread;
 * events go to a locked outbox and the notify callback tells the loop to take them.
 *
 * Errors: 0 or a negative errno; image_worker_new() writes a message.
 */
#ifndef INFERD_SCHEDULER_IMAGE_WORKER_H
#define INFERD_SCHEDULER_IMAGE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sd.h"

struct image_worker;

struct image_worker_params {
	struct sd_model *model;            /* borrowed; must outlive the worker */
	int n_threads;                     /* engine threads; 0 = OpenMP default */
	unsigned max_batch;                /* UNet items per step (>= 1) */
	unsigned max_queued;               /* waiting requests before -EAGAIN */
	void (*notify)(void *arg);         /* called from the worker thread: events are ready */
	void *notify_arg;
};

/* A request: the strings and the init image bytes are copied at submit. */
struct image_gen_params {
	struct sd_params p;                /* p.init is ignored: the image comes as bytes */
	const void *init_image;            /* PNG or JPEG bytes, or NULL (text-to-image) */
	size_t init_len;
	bool progress;                     /* an event per denoising step */
	char png_text[512];                /* optional tEXt "parameters" of the PNGs ("" = none) */
};

enum image_event_kind {
	IMAGE_EVENT_PROGRESS,              /* step done of total */
	IMAGE_EVENT_IMAGE,                 /* one finished image */
	IMAGE_EVENT_END,                   /* the request is over; no more events for its id */
};

struct image_event {
	uint64_t id;
	enum image_event_kind kind;
	int step, total;                   /* PROGRESS, and END (steps run) */
	/* IMAGE: PNG bytes (malloc'd: the receiver frees them with free()) */
	void *png;
	size_t png_len;
	int index, width, height;
	uint64_t seed;
	/* END */
	int error;                         /* 0, -EINVAL (bad request: message), -ECANCELED, ... */
	char message[256];
	double queue_s, total_s;           /* submit -> first step, -> end */
};

struct image_worker_stats {
	uint64_t submitted, finished, failed, cancelled, images;
	uint64_t unet_calls, unet_items;   /* UNet forwards and the items they ran */
	double unet_s, decode_s, encode_s, text_s;
	unsigned queued, running;          /* now */
};

int image_worker_new(const struct image_worker_params *p, struct image_worker **out, char *err,
                     size_t errlen);
/* Stops the thread; requests in flight end without events; undelivered PNGs are freed. */
void image_worker_free(struct image_worker *w);

/* Queues a request under a caller-chosen id (unique among those in flight). @return 0,
 * -EAGAIN (max_queued reached), -ENOMEM. */
int image_worker_submit(struct image_worker *w, uint64_t id, const struct image_gen_params *p);
/* Ends a request at its next step (END with -ECANCELED unless it already ended). */
void image_worker_cancel(struct image_worker *w, uint64_t id);

/* Moves the events ready so far into *events (free() the array and each event's png).
 * @return how many. */
size_t image_worker_take_events(struct image_worker *w, struct image_event **events);

void image_worker_stats(struct image_worker *w, struct image_worker_stats *out);

#endif
