/* A generation in flight on a served model, whatever front end asked for it (the native
 * Generate method, the HTTP API). It turns the worker's token events into text pieces:
 * incremental detokenization (never a broken UTF-8 sequence) and stop strings matched across
 * token boundaries (never sent). Loop thread only. */
#ifndef INFERD_SERVER_GENERATION_H
#define INFERD_SERVER_GENERATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llm_worker.h"
#include "sample.h"

struct inferd_server;
struct served_model;
struct generation;

enum gen_status {
	GEN_OK,
	GEN_INVALID_ARGUMENT,
	GEN_NOT_FOUND,
	GEN_RESOURCE_EXHAUSTED,
	GEN_INTERNAL,
};

#define GEN_MAX_STOP 16

struct gen_request {
	const char *model;               /* NULL or "": the only model, when there is one */
	const char *text;                /* the prompt as text (tokenized with the model's), or */
	const int32_t *ids;              /* the prompt as token ids */
	size_t n_ids;
	bool parse_special;              /* text: special-token text becomes those tokens */
	uint32_t max_tokens;             /* 0: up to the context */
	int32_t priority;
	struct sampling_params sampling; /* start from sampling_params_init() */
	bool ignore_eos;
	bool logprobs;
	const char *const *stop;         /* stop strings */
	size_t n_stop;
};

struct gen_piece {
	int32_t token;
	const char *text;                /* valid UTF-8 that became final with this token */
	size_t len;
	float logprob;                   /* NaN unless asked for */
	const struct sampler_logprob *top;
	uint32_t n_top;
};

struct gen_end {
	enum gen_status status;          /* not GEN_OK: the generation failed */
	const char *message;
	enum llm_finish finish;
	const char *text;                /* the last text (held-back bytes) */
	size_t len;
	uint32_t prompt_tokens, completion_tokens, cached_tokens;
	double queue_s, ttft_s, tpot_s, total_s;
};

/* Sinks must not call generation_abandon() from inside these callbacks. */
struct gen_sink {
	void (*piece)(const struct gen_piece *p, void *arg);
	/* Exactly once; the generation is gone when it returns. */
	void (*end)(const struct gen_end *e, void *arg);
};

/* Validates and queues a request. @return GEN_OK and *out, or the reason it was refused with a
 * message (the sink is never called then). */
enum gen_status generation_start(struct inferd_server *srv, const struct gen_request *r,
                                 const struct gen_sink *sink, void *arg,
                                 struct generation **out, char *msg, size_t msglen);

/* Stops a generation whose consumer went away (cancel, deadline, disconnect): the worker
 * frees its blocks in its next iteration and the sink is not called again. */
void generation_abandon(struct generation *g);

/* The model a request names (NULL or "" = the only one), or NULL. */
struct served_model *generation_find_model(struct inferd_server *srv, const char *name);

/* Encodes text with a model's tokenizer. @return 0 and *ids (free with free()), or -errno. */
int generation_tokenize(const struct served_model *m, const char *text, bool add_special,
                        bool parse_special, int32_t **ids, size_t *n);

/* Loop thread, when the model's worker signals: delivers its events to the sinks. */
void generation_collect(struct served_model *m);

#endif
