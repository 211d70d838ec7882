/* The image models a daemon serves (a [model.NAME] whose path is a diffusers folder), each with
 * its image worker, and the image generations in flight on them, whatever front end asked (the
 * native GenerateImage method, the HTTP API). Loop thread only, except the worker's notify. */
#ifndef INFERD_SERVER_IMAGES_H
#define INFERD_SERVER_IMAGES_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "image_worker.h"
#include "sd.h"

struct inferd_server;
struct image_gen;

struct served_image {
	const struct model_config *cfg;
	struct inferd_server *srv;
	struct sd_model *sd;
	struct sd_model_info info;
	struct image_worker *worker;
	struct event *events_ev;          /* made active by the worker: events are waiting */
	struct image_gen *gens;           /* generations in flight on this model */
	uint64_t next_id;
};

/* True when path is a folder (a diffusers pipeline) rather than a GGUF file. */
bool model_path_is_image(const char *path);

/* Loads every configured image model and starts its worker. @return 0 or a negative errno with
 * a message naming the model and folder. */
int images_open(struct inferd_server *srv, struct served_image **out, size_t *n_out, char *err,
                size_t errlen);
void images_close(struct served_image *models, size_t n);

/* The image model a request names (NULL or "" = the only one), or NULL. */
struct served_image *images_find(struct inferd_server *srv, const char *name);

/* Callbacks of a generation; the event's PNG bytes are freed after image() returns. */
struct image_sink {
	void (*progress)(int step, int total, void *arg);
	void (*image)(const struct image_event *e, void *arg);
	/* Exactly once; the generation is gone when it returns. status: a gRPC status code
	 * (INFERD__V1__STATUS_CODE__*). */
	void (*end)(const struct image_event *e, int status, void *arg);
};

/* Checks and queues a request. model: the name asked for. @return 0 and *out, or a gRPC status
 * code (NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED) with a message; the sink is not called
 * then. */
int image_gen_start(struct inferd_server *srv, const char *model,
                    const struct image_gen_params *p, const struct image_sink *sink, void *arg,
                    struct image_gen **out, char *msg, size_t msglen);

/* The consumer went away (cancel, deadline, disconnect): the worker drops the request at its
 * next step and the sink is not called again. Accepts NULL. */
void image_gen_abandon(struct image_gen *g);

/* The gRPC status code of a worker END event's error. */
int image_status_of(int error);

#endif
