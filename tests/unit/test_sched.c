/* Continuous batching: budgets, chunked prefill, preemption and resumption, prefix cache, load
 * shedding and the policies. The forward pass is not needed to check the plans: a driver marks
 * planned positions computed and appends a token that depends only on (sequence, index), so a
 * lost or repeated token shows in the result. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "batching.h"

static int32_t token_for(uint64_t id, uint32_t index)
{
	return (int32_t)((id * 7919 + index * 104729) % 30000);
}

struct driver {
	struct sched *s;
	struct block_manager *bm;
	struct sched_seq seqs[64];
	uint32_t computed[64];         /* positions the driver saw computed, per sequence */
	uint32_t first_token_iter[64]; /* iteration of the first generated token */
	uint32_t n;
	uint32_t iterations;
};

static void driver_init(struct driver *d, uint32_t n_blocks, struct sched_config cfg)
{
	memset(d, 0, sizeof(*d));
	cr_assert_eq(block_manager_new(n_blocks, 16, &d->bm), 0);
	if (!cfg.max_context)
		cfg.max_context = 8192;
	if (!cfg.max_queued)
		cfg.max_queued = 64;
	cr_assert_eq(sched_new(&cfg, d->bm, &d->s), 0);
}

static void driver_fini(struct driver *d)
{
	sched_free(d->s);
	block_manager_free(d->bm);
}

static struct sched_seq *submit(struct driver *d, uint32_t n_prompt, uint32_t max_new,
                                int32_t priority, int32_t prompt_base)
{
	static int32_t prompt[8192];
	struct sched_seq *q = &d->seqs[d->n];
	for (uint32_t i = 0; i < n_prompt; i++)
		prompt[i] = prompt_base + (int32_t)i;
	q->id = d->n;
	q->priority = priority;
	cr_assert_eq(sched_submit(d->s, q, prompt, n_prompt, max_new), 0);
	d->n++;
	return q;
}

/* One iteration. @return tokens planned. */
static uint32_t step(struct driver *d)
{
	const struct sched_plan *p = sched_plan(d->s);
	uint32_t total = 0;
	d->iterations++;
	for (uint32_t i = 0; i < p->n_items; i++) {
		const struct sched_item *it = &p->items[i];
		uint32_t k = (uint32_t)it->seq->id;
		if (it->start == 0)
			d->computed[k] = 0; /* (re)started from scratch or from the prefix cache */
		cr_assert(it->start >= d->computed[k] || it->start == it->seq->n_cached,
		          "seq %u: gap in computed positions", k);
		cr_assert(it->start + it->n_tokens <= it->seq->n_tokens);
		d->computed[k] = it->start + it->n_tokens;
		total += it->n_tokens;
	}
	cr_assert_eq(total, p->n_tokens);
	sched_plan_done(d->s);
	for (uint32_t i = 0; i < p->n_items; i++) {
		struct sched_seq *q = p->items[i].seq;
		if (!p->items[i].want_logits)
			continue;
		uint32_t generated = q->n_tokens - q->n_prompt;
		if (generated == 0)
			d->first_token_iter[q->id] = d->iterations;
		cr_assert_eq(sched_seq_append(d->s, q, token_for(q->id, generated)), 0);
		if (generated + 1 >= q->max_new)
			sched_finish(d->s, q);
	}
	return total;
}

static void run_to_end(struct driver *d, uint32_t max_iters)
{
	for (uint32_t i = 0; i < max_iters && sched_busy(d->s); i++)
		step(d);
	cr_assert(!sched_busy(d->s), "not finished after %u iterations", max_iters);
}

Test(sched, batches_decodes_and_prefills_under_the_budget)
{
	struct driver d;
	struct sched_config cfg = { .max_batched_tokens = 64, .max_sequences = 8 };
	driver_init(&d, 64, cfg);
	submit(&d, 20, 5, 0, 100);
	submit(&d, 30, 5, 0, 200);
	submit(&d, 40, 5, 0, 300);
	/* Iteration 1: 64 tokens of prompts (20 + 30 + 14 of the third). */
	cr_expect_eq(step(&d), 64);
	/* Iteration 2: two decodes and the rest of the third prompt (26). */
	const struct sched_plan *p;
	cr_expect_eq(step(&d), 2 + 26);
	p = sched_plan(d.s);
	cr_expect_eq(p->n_items, 3);
	cr_expect_eq(p->n_decode, 3, "all three decode together");
	sched_plan_done(d.s);
	for (uint32_t i = 0; i < p->n_items; i++)
		sched_seq_append(d.s, p->items[i].seq, 1);
	run_to_end(&d, 20);
	struct sched_stats st;
	sched_stats(d.s, &st);
	cr_expect_eq(st.prompt_tokens_computed, 90);
	cr_expect_eq(st.preemptions, 0);
	cr_expect_eq(st.tokens_generated, 15);
	driver_fini(&d);
}

Test(sched, chunked_prefill_asks_for_logits_only_at_the_end)
{
	struct driver d;
	struct sched_config cfg = { .max_batched_tokens = 32, .max_sequences = 4 };
	driver_init(&d, 64, cfg);
	submit(&d, 100, 2, 0, 0);
	for (int i = 0; i < 3; i++) {
		const struct sched_plan *p = sched_plan(d.s);
		cr_assert_eq(p->n_items, 1);
		cr_expect_eq(p->items[0].n_tokens, 32);
		cr_expect(!p->items[0].want_logits);
		sched_plan_done(d.s);
	}
	const struct sched_plan *p = sched_plan(d.s);
	cr_expect_eq(p->items[0].start, 96);
	cr_expect_eq(p->items[0].n_tokens, 4);
	cr_expect(p->items[0].want_logits);
	sched_plan_done(d.s);
	sched_finish(d.s, p->items[0].seq);
	cr_expect_eq(block_manager_available(d.bm), 64);
	driver_fini(&d);
}

/* Records generated tokens before finish() frees them. */
struct record {
	int32_t tokens[64][256];
	uint32_t n[64];
};

static void run_recording(struct driver *d, struct record *r, uint32_t max_iters)
{
	for (uint32_t it = 0; it < max_iters && sched_busy(d->s); it++) {
		const struct sched_plan *p = sched_plan(d->s);
		for (uint32_t i = 0; i < p->n_items; i++)
			if (p->items[i].start == 0)
				d->computed[p->items[i].seq->id] = 0;
		sched_plan_done(d->s);
		for (uint32_t i = 0; i < p->n_items; i++) {
			struct sched_seq *q = p->items[i].seq;
			if (!p->items[i].want_logits)
				continue;
			uint32_t g = q->n_tokens - q->n_prompt;
			int32_t t = token_for(q->id, g);
			r->tokens[q->id][r->n[q->id]++] = t;
			sched_seq_append(d->s, q, t);
			if (g + 1 >= q->max_new)
				sched_finish(d->s, q);
		}
	}
	cr_assert(!sched_busy(d->s));
}

Test(sched, preempts_the_youngest_and_resumes_without_losing_tokens)
{
	static struct record big, tiny;
	struct driver d;
	struct sched_config cfg = { .max_batched_tokens = 256, .max_sequences = 8 };

	/* Reference: a pool large enough for everyone. */
	driver_init(&d, 256, cfg);
	for (int i = 0; i < 6; i++)
		submit(&d, 20 + 7 * i, 60, 0, 1000 * i);
	run_recording(&d, &big, 1000);
	driver_fini(&d);

	/* 16 blocks of 16 positions: 6 sequences growing to ~100 positions cannot all fit. */
	driver_init(&d, 16, cfg);
	for (int i = 0; i < 6; i++)
		submit(&d, 20 + 7 * i, 60, 0, 1000 * i);
	run_recording(&d, &tiny, 5000);
	struct sched_stats st;
	sched_stats(d.s, &st);
	cr_expect_gt(st.preemptions, 0, "the tiny pool forced preemption");
	for (int i = 0; i < 6; i++) {
		cr_expect_eq(tiny.n[i], 60, "sequence %d generated %u tokens", i, tiny.n[i]);
		cr_expect_arr_eq(tiny.tokens[i], big.tokens[i], 60 * sizeof(int32_t),
		                 "sequence %d: same tokens with and without preemption", i);
	}
	cr_expect_eq(block_manager_available(d.bm), 16);
	driver_fini(&d);
}

Test(sched, serves_a_shared_prefix_from_the_cache)
{
	struct driver d;
	struct sched_config cfg = { .max_batched_tokens = 128, .max_sequences = 8 };
	driver_init(&d, 64, cfg);
	struct sched_seq *a = submit(&d, 50, 1, 0, 500);
	step(&d); /* computes a's prompt; a finishes after its one token */
	cr_expect_eq(a->state, SCHED_SEQ_FINISHED);
	struct sched_seq *b = submit(&d, 60, 1, 0, 500); /* same first 50 tokens */
	const struct sched_plan *p = sched_plan(d.s);
	cr_assert_eq(p->n_items, 1);
	cr_expect_eq(b->n_cached, 48, "three whole blocks of the shared 50 tokens");
	cr_expect_eq(p->items[0].start, 48);
	cr_expect_eq(p->items[0].n_tokens, 12);
	sched_plan_done(d.s);
	struct block_stats bs;
	block_manager_stats(d.bm, &bs);
	cr_expect_eq(bs.prefix_hits, 3);
	struct sched_stats st;
	sched_stats(d.s, &st);
	cr_expect_eq(st.prompt_tokens_cached, 48);
	sched_finish(d.s, b);
	driver_fini(&d);
}

Test(sched, sheds_load_beyond_the_queue_limits)
{
	struct driver d;
	struct sched_config cfg = { .max_batched_tokens = 64, .max_sequences = 4, .max_queued = 2,
	                            .max_queued_tokens = 100, .max_context = 200 };
	int32_t prompt[300] = { 0 };
	struct sched_seq extra[3] = { { .id = 40 }, { .id = 41 }, { .id = 42 } };
	driver_init(&d, 64, cfg);
	submit(&d, 40, 4, 0, 0);
	cr_expect_eq(sched_submit(d.s, &extra[0], prompt, 70, 4), -EAGAIN, "over the token limit");
	submit(&d, 40, 4, 0, 0);
	cr_expect_eq(sched_submit(d.s, &extra[1], prompt, 5, 4), -EAGAIN, "over the count limit");
	cr_expect_eq(sched_submit(d.s, &extra[2], prompt, 199, 4), -E2BIG, "over the context");
	cr_expect_eq(sched_submit(d.s, &extra[2], prompt, 0, 4), -EINVAL);
	struct sched_stats st;
	sched_stats(d.s, &st);
	cr_expect_eq(st.shed, 2);
	cr_expect_eq(st.waiting, 2);
	cr_expect_eq(st.queued_tokens, 80);
	step(&d); /* both start: the queue has room again */
	cr_expect_eq(sched_submit(d.s, &extra[1], prompt, 5, 4), 0);
	run_to_end(&d, 50);
	driver_fini(&d);
}

Test(sched, cancel_frees_blocks_of_waiting_and_running_sequences)
{
	struct driver d;
	struct sched_config cfg = { .max_batched_tokens = 32, .max_sequences = 1 };
	driver_init(&d, 32, cfg);
	struct sched_seq *a = submit(&d, 64, 10, 0, 0);
	struct sched_seq *b = submit(&d, 16, 10, 0, 0);
	step(&d);
	cr_expect_eq(a->state, SCHED_SEQ_RUNNING);
	cr_expect_eq(b->state, SCHED_SEQ_WAITING);
	cr_expect_lt(block_manager_available(d.bm), 32);
	sched_finish(d.s, b);
	sched_finish(d.s, a);
	sched_finish(d.s, a); /* twice is harmless */
	cr_expect(!sched_busy(d.s));
	struct block_stats bs;
	block_manager_stats(d.bm, &bs);
	cr_expect_eq(bs.used, 0);
	cr_expect_eq(block_manager_available(d.bm), 32);
	driver_fini(&d);
}

/* With long prompts queued ahead, how many iterations until a short request's first token? */
static uint32_t short_request_wait(enum sched_policy policy)
{
	struct driver d;
	struct sched_config cfg = { .max_batched_tokens = 256, .max_sequences = 16,
	                            .policy = policy };
	driver_init(&d, 1024, cfg);
	for (int i = 0; i < 4; i++)
		submit(&d, 2000, 4, 0, 10000 * i);
	step(&d);
	struct sched_seq *shorty = submit(&d, 12, 4, 0, 77);
	uint32_t submitted_at = d.iterations;
	for (int i = 0; i < 200 && !d.first_token_iter[shorty->id]; i++)
		step(&d);
	uint32_t wait = d.first_token_iter[shorty->id] - submitted_at;
	run_to_end(&d, 1000);
	driver_fini(&d);
	return wait;
}

Test(sched, fairness_lets_short_requests_pass_long_prompts)
{
	uint32_t fair = short_request_wait(SCHED_POLICY_FAIR);
	uint32_t fcfs = short_request_wait(SCHED_POLICY_FCFS);
	cr_expect_leq(fair, 2, "FAIR: first token after %u iterations", fair);
	cr_expect_gt(fcfs, 10, "FCFS makes it wait behind 8000 prompt tokens (%u iterations)", fcfs);
}

Test(sched, fairness_still_advances_long_prompts)
{
	struct driver d;
	struct sched_config cfg = { .max_batched_tokens = 64, .max_sequences = 64,
	                            .policy = SCHED_POLICY_FAIR };
	driver_init(&d, 1024, cfg);
	struct sched_seq *big = submit(&d, 400, 1, 0, 1);
	/* A stream of short requests every iteration must not starve the long prompt. */
	for (int i = 0; i < 40 && big->state != SCHED_SEQ_FINISHED; i++) {
		if (d.n < 60)
			submit(&d, 8, 1, 0, 5000 + i);
		step(&d);
	}
	cr_expect_eq(big->state, SCHED_SEQ_FINISHED, "the long prompt finished under the stream");
	run_to_end(&d, 100);
	driver_fini(&d);
}

Test(sched, priority_policy_starts_higher_priority_first)
{
	struct driver d;
	struct sched_config cfg = { .max_batched_tokens = 16, .max_sequences = 1,
	                            .policy = SCHED_POLICY_PRIORITY };
	driver_init(&d, 64, cfg);
	struct sched_seq *low = submit(&d, 8, 1, 0, 0);
	struct sched_seq *high = submit(&d, 8, 1, 5, 0);
	const struct sched_plan *p = sched_plan(d.s);
	cr_assert_eq(p->n_items, 1);
	cr_expect_eq(p->items[0].seq, high);
	sched_plan_done(d.s);
	sched_finish(d.s, high);
	p = sched_plan(d.s);
	cr_expect_eq(p->items[0].seq, low);
	sched_plan_done(d.s);
	sched_finish(d.s, low);
	driver_fini(&d);
}
