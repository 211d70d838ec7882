/* Iteration-level (continuous) batching: which tokens of which sequences run in the next
 * forward pass.
 *
 * Every iteration takes the decode token of each running sequence plus chunks of prompts
 * (chunked prefill) up to a token budget. Sequences enter from a waiting queue in the order of
 * a policy, only when KV blocks are available; when the pool runs out, the youngest running
 * sequence is preempted (its blocks released, to be recomputed later from its tokens, generated
 * ones included, so it resumes without losing or repeating a token). Full prompt blocks are
 * shared through the block manager's prefix cache.
 *
 * Use from one thread (the scheduler thread):
 *   sched_submit()              a new sequence (or -EAGAIN/-E2BIG: shed / too long)
 *   sched_plan()                the next iteration's work
 *   ... run the forward pass on the plan, sample the items with want_logits ...
 *   sched_plan_done()           positions computed, blocks committed to the prefix cache
 *   sched_seq_append()          the sampled token of each item with want_logits
 *   sched_finish()              when a sequence ends (stop, length, cancel, deadline)
 * Errors: 0 or a negative errno.
 */
#ifndef INFERD_SCHEDULER_BATCHING_H
#define INFERD_SCHEDULER_BATCHING_H

#include <stdbool.h>
#include <stdint.h>

#include "block_manager.h"

enum sched_policy {
	SCHED_POLICY_FCFS,       /* arrival order */
	SCHED_POLICY_PRIORITY,   /* higher priority first, then arrival */
	SCHED_POLICY_FAIR,       /* short prompts first, with aging; long prefills keep a share */
};

struct sched_config {
	uint32_t max_batched_tokens;   /* tokens per iteration, decode and prefill together */
	uint32_t max_sequences;        /* running sequences at most */
	uint32_t max_queued;           /* waiting sequences at most; beyond, submit sheds */
	uint64_t max_queued_tokens;    /* prompt tokens waiting at most; beyond, submit sheds */
	uint32_t max_context;          /* positions per sequence */
	enum sched_policy policy;
	uint32_t fair_max_wait;        /* FAIR: after this many iterations waiting, go first */
	uint64_t prefix_salt;          /* separates models in a shared block manager */
};

enum sched_seq_state {
	SCHED_SEQ_WAITING,
	SCHED_SEQ_RUNNING,
	SCHED_SEQ_FINISHED,
};

struct sched_seq {
	uint64_t id;
	int32_t priority;
	void *user;                 /* the owner's request */
	/* set by the scheduler: */
	enum sched_seq_state state;
	int32_t *tokens;            /* (cap) prompt, then generated tokens */
	uint32_t n_tokens, cap;
	uint32_t n_prompt;
	uint32_t n_computed;        /* positions whose KV is written */
	uint32_t n_cached;          /* prompt positions the prefix cache served at the last start */
	uint32_t max_new;           /* generated tokens allowed */
	uint64_t order;             /* submission order */
	uint64_t submitted_iter;    /* iteration count at submission */
	uint64_t waiting_since;     /* iteration count when it (re)entered the queue */
	uint32_t n_preemptions;
	uint64_t planned_iter;      /* the iteration whose plan holds it */
	struct block_table blocks;
	struct sched_seq *prev, *next;  /* in the waiting or running list */
};

struct sched_item {
	struct sched_seq *seq;
	uint32_t start;             /* first position computed = seq->n_computed */
	uint32_t n_tokens;          /* tokens seq->tokens[start .. start + n_tokens) */
	bool want_logits;           /* the chunk reaches the end: sample a token after it */
};

struct sched_plan {
	struct sched_item *items;   /* (max_sequences) owned by the scheduler */
	uint32_t n_items;
	uint32_t n_tokens;          /* total tokens, <= max_batched_tokens */
	uint32_t n_decode;          /* items that are single decode tokens */
	uint64_t iteration;
};

struct sched_stats {
	uint32_t running, waiting;
	uint64_t queued_tokens;
	uint64_t preemptions;
	uint64_t iterations;
	uint64_t prompt_tokens_computed, prompt_tokens_cached, tokens_generated;
	uint64_t shed;              /* submissions refused by the queue limits */
};

struct sched;

/* @return 0 and *out (free with sched_free()), -EINVAL for a bad config, -ENOMEM. The block
 * manager is borrowed and must outlive the scheduler. */
int sched_new(const struct sched_config *cfg, struct block_manager *bm, struct sched **out);
void sched_free(struct sched *s);

/* Queues a new sequence with its prompt (copied). seq is owned by the caller and must stay
 * valid until sched_finish(). @return 0, -EINVAL (empty prompt), -E2BIG (prompt + max_new over
 * the context, or more blocks than the pool), -EAGAIN (queue limits: shed), -ENOMEM. */
int sched_submit(struct sched *s, struct sched_seq *seq, const int32_t *prompt,
                 uint32_t n_prompt, uint32_t max_new);

/* Plans the next iteration into s's plan. @return the plan (n_items may be 0: nothing to do). */
const struct sched_plan *sched_plan(struct sched *s);

/* Marks the last plan's positions computed and registers full blocks for sharing. */
void sched_plan_done(struct sched *s);

/* Appends a sampled token to a running sequence. @return 0 or -ENOMEM. */
int sched_seq_append(struct sched *s, struct sched_seq *seq, int32_t token);

/* Removes a sequence, waiting or running, and releases its blocks. Safe on finished ones. */
void sched_finish(struct sched *s, struct sched_seq *seq);

void sched_stats(const struct sched *s, struct sched_stats *out);

/* @return whether anything is running or waiting. */
bool sched_busy(const struct sched *s);

#endif
