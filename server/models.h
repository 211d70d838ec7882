/* The models a daemon serves: loaded at start-up from the config, each with its worker thread.
 * Loop-thread only, except the worker's notify callback. */
#ifndef INFERD_SERVER_MODELS_H
#define INFERD_SERVER_MODELS_H

#include <event2/event.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"

struct gguf;
struct llama_model;
struct tokenizer;
struct llm_worker;
struct generation;
struct inferd_server;

struct served_model {
	const struct model_config *cfg;
	struct inferd_server *srv;
	struct gguf *gguf;
	struct backend backend;
	struct llama_model *model;
	struct tokenizer *tok;
	struct llm_worker *worker;
	struct event *events_ev;      /* made active by the worker: events are waiting */
	uint32_t max_context;
	uint32_t n_vocab;
	uint64_t n_params;
	char arch[32];
	char dtype[16];               /* type of the first attention weight, e.g. "Q8_0" */
	struct generation *gens;      /* generations in flight on this model */
	uint64_t next_gen_id;
};

/* Loads every configured model and starts its worker. @return 0 or a negative errno with a
 * message naming the model and file. */
int models_open(struct inferd_server *srv, struct served_model **out, size_t *n_out, char *err,
                size_t errlen);
void models_close(struct served_model *models, size_t n);

/* `inferd --tune NAME`: measures nano-batching for a configured model on this machine and
 * writes its profile (tune_file, default PATH.tune). Progress goes to stdout. */
int models_tune(const struct inferd_config *cfg, const char *name, char *err, size_t errlen);

#endif
