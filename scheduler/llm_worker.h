/* The LLM worker: one thread per served model that runs iterations of continuous batching.
 *
 * The event-loop thread hands requests over with llm_worker_submit() / llm_worker_cancel()
 * (a locked inbox and a condition variable wake the worker). Each iteration the worker asks the
 * scheduler for a plan, runs the model's batched forward pass over it, samples the sequences
 * that reached their end, and publishes events (tokens, ends) to a locked outbox; then it calls
 * the notify callback once so the loop thread collects them with llm_worker_take_events().
 * The worker never touches a socket and the loop never waits on the engine.
 *
 * Errors: 0 or a negative errno; constructors write a message.
 */
#ifndef INFERD_SCHEDULER_LLM_WORKER_H
#define INFERD_SCHEDULER_LLM_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batching.h"
#include "forward.h"
#include "sample.h"

struct backend;
struct llama_model;
struct tokenizer;
struct llm_worker;

struct llm_worker_params {
	struct llama_model *model;         /* borrowed; must outlive the worker */
	struct backend *backend;           /* the model's backend (borrowed): holds the KV pool */
	const struct tokenizer *tok;       /* borrowed: end-of-generation tokens */
	struct sched_config sched;         /* max_context is clamped to the model's */
	uint32_t kv_blocks;                /* KV pool in blocks */
	uint32_t kv_block_size;            /* positions per block */
	enum dtype kv_type;                /* DTYPE_F32 (0, the default) or DTYPE_F16 */
	bool nano;                         /* run iterations as two nano-batches */
	struct fwd_nano nano_params;
	void (*notify)(void *arg);         /* called from the worker thread: events are ready */
	void *notify_arg;
};

struct llm_gen_params {
	const int32_t *prompt;             /* copied */
	uint32_t n_prompt;
	uint32_t max_new;                  /* generated tokens at most (>= 1) */
	int32_t priority;
	struct sampling_params sampling;   /* copied (stop strings are the caller's business) */
	bool ignore_eos;                   /* do not stop at end-of-generation tokens */
	bool logprobs;                     /* report logprobs (and sampling.n_logprobs alternatives) */
};

enum llm_finish {
	LLM_FINISH_NONE = 0,
	LLM_FINISH_STOP,                   /* end-of-generation token or a stop token id */
	LLM_FINISH_LENGTH,                 /* max_new or the context */
	LLM_FINISH_CANCELLED,
	LLM_FINISH_ERROR,
};

enum llm_event_kind {
	LLM_EVENT_TOKEN,                   /* one generated token */
	LLM_EVENT_END,                     /* the request is over; no more events for its id */
};

struct llm_event {
	uint64_t id;
	enum llm_event_kind kind;
	/* TOKEN */
	int32_t token;
	float logprob;                     /* of the sampled token (NaN unless asked for) */
	struct sampler_logprob top[SAMPLER_MAX_LOGPROBS];
	uint32_t n_top;
	/* END */
	int error;                         /* 0, -EAGAIN (shed), -E2BIG (too long), -ENOMEM, ... */
	enum llm_finish finish;
	uint32_t prompt_tokens, completion_tokens, cached_tokens;
	double queue_s, ttft_s, total_s;   /* submit -> first scheduled, -> first token, -> end */
};

struct llm_worker_stats {
	struct sched_stats sched;
	struct block_stats blocks;
	double iteration_s_total;          /* time in iterations */
	double forward_s_total;            /* of which the forward pass */
	double sample_s_total;             /* of which sampling */
	uint64_t finished;                 /* generations ended with at least one token */
	double ttft_s_sum, ttft_s_max;     /* submit -> first token */
	uint64_t tpot_n;                   /* generations with two tokens or more */
	double tpot_s_sum, tpot_s_max;     /* mean time per token after the first, per generation */
};

/* Creates the KV pool, the scheduler and starts the thread.
 * @return 0 and *out (free with llm_worker_free()), or a negative errno with err set. */
int llm_worker_new(const struct llm_worker_params *p, struct llm_worker **out, char *err,
                   size_t errlen);
/* Stops the thread; requests still in flight end without events. Accepts NULL. */
void llm_worker_free(struct llm_worker *w);

/* Queues a request with a caller-chosen id, unique among the worker's requests in flight. Its
 * events (and at least an END event) follow. @return 0, -EINVAL (sampling parameters that
 * sampling_params_check() refuses), -ENOMEM. */
int llm_worker_submit(struct llm_worker *w, uint64_t id, const struct llm_gen_params *p);
/* Ends a request (END with LLM_FINISH_CANCELLED unless it already ended). */
void llm_worker_cancel(struct llm_worker *w, uint64_t id);

/* Moves the events ready so far into *events (an array the caller frees with free()).
 * @return how many. */
size_t llm_worker_take_events(struct llm_worker *w, struct llm_event **events);

/* A consistent snapshot of the worker's figures (any thread). */
void llm_worker_stats(struct llm_worker *w, struct llm_worker_stats *out);

#endif
