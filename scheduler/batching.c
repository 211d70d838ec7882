/* Iteration-level batching with chunked prefill, preemption by recomputation and policies. */
#include "batching.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct seq_list {
	struct sched_seq *head, *tail;
	uint32_t n;
};

struct sched {
	struct sched_config cfg;
	struct block_manager *bm;
	struct seq_list waiting, running;
	struct sched_plan plan;
	struct sched_seq **snap;       /* (max_sequences) running sequences at a phase's start */
	bool planning;                 /* between sched_plan() and sched_plan_done() */
	uint64_t next_order;
	uint64_t queued_tokens;
	struct sched_stats st;
};

/* ---- lists ------------------------------------------------------------------------------- */

static void list_push(struct seq_list *l, struct sched_seq *q)
{
	q->next = NULL;
	q->prev = l->tail;
	if (l->tail)
		l->tail->next = q;
	else
		l->head = q;
	l->tail = q;
	l->n++;
}

static void list_remove(struct seq_list *l, struct sched_seq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		l->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		l->tail = q->prev;
	q->prev = q->next = NULL;
	l->n--;
}

/* ---- construction ------------------------------------------------------------------------ */

int sched_new(const struct sched_config *cfg, struct block_manager *bm, struct sched **out)
{
	struct sched *s;

	*out = NULL;
	if (!cfg->max_batched_tokens || !cfg->max_sequences || !cfg->max_context || !bm)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	if (!s->cfg.fair_max_wait)
		s->cfg.fair_max_wait = 32;
	s->bm = bm;
	s->plan.items = calloc(cfg->max_sequences, sizeof(*s->plan.items));
	s->snap = calloc(cfg->max_sequences, sizeof(*s->snap));
	if (!s->plan.items || !s->snap) {
		free(s->plan.items);
		free(s->snap);
		free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void sched_free(struct sched *s)
{
	if (!s)
		return;
	while (s->waiting.head)
		sched_finish(s, s->waiting.head);
	while (s->running.head)
		sched_finish(s, s->running.head);
	free(s->plan.items);
	free(s->snap);
	free(s);
}

/* ---- sequences --------------------------------------------------------------------------- */

static int seq_reserve_tokens(struct sched_seq *q, uint32_t n)
{
	if (n <= q->cap)
		return 0;
	uint32_t cap = q->cap ? q->cap : 64;
	while (cap < n)
		cap *= 2;
	int32_t *t = realloc(q->tokens, cap * sizeof(*t));
	if (!t)
		return -ENOMEM;
	q->tokens = t;
	q->cap = cap;
	return 0;
}

int sched_submit(struct sched *s, struct sched_seq *seq, const int32_t *prompt,
                 uint32_t n_prompt, uint32_t max_new)
{
	uint32_t bs = block_manager_block_size(s->bm);
	struct block_stats bst;

	if (!n_prompt)
		return -EINVAL;
	block_manager_stats(s->bm, &bst);
	if ((uint64_t)n_prompt + max_new > s->cfg.max_context ||
	    ((uint64_t)n_prompt + max_new + bs - 1) / bs > bst.n_blocks)
		return -E2BIG;
	if (s->waiting.n >= s->cfg.max_queued ||
	    (s->cfg.max_queued_tokens && s->queued_tokens + n_prompt > s->cfg.max_queued_tokens)) {
		s->st.shed++;
		return -EAGAIN;
	}
	seq->tokens = NULL;
	seq->cap = 0;
	if (seq_reserve_tokens(seq, n_prompt + 1) < 0)
		return -ENOMEM;
	memcpy(seq->tokens, prompt, n_prompt * sizeof(*prompt));
	seq->n_tokens = seq->n_prompt = n_prompt;
	seq->n_computed = seq->n_cached = 0;
	seq->max_new = max_new;
	seq->n_preemptions = 0;
	seq->order = s->next_order++;
	seq->submitted_iter = seq->waiting_since = s->plan.iteration;
	seq->state = SCHED_SEQ_WAITING;
	block_table_init(&seq->blocks);
	list_push(&s->waiting, seq);
	s->queued_tokens += n_prompt;
	return 0;
}

int sched_seq_append(struct sched *s, struct sched_seq *seq, int32_t token)
{
	if (seq_reserve_tokens(seq, seq->n_tokens + 1) < 0)
		return -ENOMEM;
	seq->tokens[seq->n_tokens++] = token;
	s->st.tokens_generated++;
	return 0;
}

/* Takes q out of the plan being made (a finished plan is left as it is: the caller may be
 * walking its items). */
static void drop_from_plan(struct sched *s, struct sched_seq *q)
{
	struct sched_plan *p = &s->plan;
	if (!s->planning)
		return;
	for (uint32_t i = 0; i < p->n_items; i++) {
		if (p->items[i].seq != q)
			continue;
		p->n_tokens -= p->items[i].n_tokens;
		if (p->items[i].n_tokens == 1 && p->items[i].want_logits &&
		    p->items[i].start >= q->n_prompt)
			p->n_decode--;
		q->planned_iter = 0;
		memmove(&p->items[i], &p->items[i + 1], (p->n_items - i - 1) * sizeof(p->items[0]));
		p->n_items--;
		return;
	}
}

void sched_finish(struct sched *s, struct sched_seq *seq)
{
	if (seq->state == SCHED_SEQ_WAITING) {
		list_remove(&s->waiting, seq);
		s->queued_tokens -= seq->n_prompt;
	} else if (seq->state == SCHED_SEQ_RUNNING) {
		list_remove(&s->running, seq);
		drop_from_plan(s, seq);
	} else {
		return;
	}
	block_manager_release(s->bm, &seq->blocks);
	block_table_fini(&seq->blocks);
	free(seq->tokens);
	seq->tokens = NULL;
	seq->cap = 0;
	seq->state = SCHED_SEQ_FINISHED;
}

/* ---- planning ---------------------------------------------------------------------------- */

/* Sends a running sequence back to the queue; its KV will be recomputed from its tokens. */
static void preempt(struct sched *s, struct sched_seq *q)
{
	list_remove(&s->running, q);
	drop_from_plan(s, q);
	block_manager_release(s->bm, &q->blocks);
	q->n_computed = 0;
	q->n_preemptions++;
	q->state = SCHED_SEQ_WAITING;
	q->waiting_since = s->plan.iteration;
	list_push(&s->waiting, q);
	s->queued_tokens += q->n_prompt;
	s->st.preemptions++;
}

static struct sched_seq *youngest_running(struct sched *s, const struct sched_seq *except)
{
	struct sched_seq *best = NULL;
	for (struct sched_seq *q = s->running.head; q; q = q->next)
		if (q != except && (!best || q->order > best->order))
			best = q;
	return best;
}

static void plan_add(struct sched *s, struct sched_seq *q, uint32_t n)
{
	struct sched_plan *p = &s->plan;
	struct sched_item *it = &p->items[p->n_items++];
	it->seq = q;
	it->start = q->n_computed;
	it->n_tokens = n;
	it->want_logits = q->n_computed + n == q->n_tokens;
	p->n_tokens += n;
	q->planned_iter = p->iteration;
	if (n == 1 && it->want_logits && q->n_computed >= q->n_prompt)
		p->n_decode++;
}

/* Plans up to max_chunk tokens of a running sequence, preempting younger ones for blocks.
 * @return false when q itself had to be preempted. */
static bool plan_running(struct sched *s, struct sched_seq *q, uint32_t max_chunk)
{
	uint32_t left = q->n_tokens - q->n_computed;
	uint32_t budget = s->cfg.max_batched_tokens - s->plan.n_tokens;
	uint32_t n = left < budget ? left : budget;

	if (n > max_chunk)
		n = max_chunk;
	if (!n)
		return true;
	while (block_manager_reserve(s->bm, &q->blocks, q->n_computed + n) == -ENOSPC) {
		struct sched_seq *victim = youngest_running(s, q);
		if (!victim || victim->order < q->order) {
			preempt(s, q); /* q is the youngest: it waits for the others */
			return false;
		}
		preempt(s, victim);
	}
	plan_add(s, q, n);
	return true;
}

static bool better(const struct sched *s, const struct sched_seq *a, const struct sched_seq *b)
{
	uint64_t it = s->plan.iteration;
	switch (s->cfg.policy) {
	case SCHED_POLICY_PRIORITY:
		if (a->priority != b->priority)
			return a->priority > b->priority;
		return a->order < b->order;
	case SCHED_POLICY_FAIR: {
		bool a_old = it - a->waiting_since >= s->cfg.fair_max_wait;
		bool b_old = it - b->waiting_since >= s->cfg.fair_max_wait;
		if (a_old != b_old)
			return a_old;          /* aging: nobody waits for ever */
		if (!a_old && a->n_tokens != b->n_tokens)
			return a->n_tokens < b->n_tokens; /* shortest prompt first */
		return a->order < b->order;
	}
	case SCHED_POLICY_FCFS:
	default:
		return a->order < b->order;
	}
}

static struct sched_seq *pick_waiting(struct sched *s)
{
	struct sched_seq *best = s->waiting.head;
	for (struct sched_seq *q = best ? best->next : NULL; q; q = q->next)
		if (better(s, q, best))
			best = q;
	return best;
}

/* Starts waiting sequences while the budget, the sequence limit and free blocks allow; keeps
 * `reserve` tokens of the budget for running prefills. Never preempts for a newcomer. */
static void admit(struct sched *s, uint32_t reserve)
{
	struct sched_seq *q;

	while (s->running.n < s->cfg.max_sequences &&
	       s->plan.n_tokens + reserve < s->cfg.max_batched_tokens &&
	       (q = pick_waiting(s)) != NULL) {
		uint32_t budget = s->cfg.max_batched_tokens - reserve - s->plan.n_tokens;
		if (q->blocks.n_blocks == 0)
			q->n_computed = q->n_cached =
				block_manager_match_prefix(s->bm, &q->blocks, q->tokens,
				                           q->n_tokens, s->cfg.prefix_salt);
		uint32_t left = q->n_tokens - q->n_computed;
		uint32_t n = left < budget ? left : budget;
		if (block_manager_reserve(s->bm, &q->blocks, q->n_computed + n) < 0) {
			block_manager_release(s->bm, &q->blocks);
			q->n_computed = q->n_cached = 0;
			break; /* wait for blocks; the order of the queue is kept */
		}
		list_remove(&s->waiting, q);
		s->queued_tokens -= q->n_prompt;
		if (q->n_cached > q->n_prompt)
			s->st.prompt_tokens_cached += q->n_prompt;
		else
			s->st.prompt_tokens_cached += q->n_cached;
		q->state = SCHED_SEQ_RUNNING;
		list_push(&s->running, q);
		plan_add(s, q, n);
	}
}

/* Plans the running sequences that still need more than min_left - 1 tokens (decodes: 1..1,
 * prefills: 2..), oldest first. Works on a snapshot: preemption reorders the lists. */
static void plan_phase(struct sched *s, bool decodes)
{
	uint32_t n = 0;
	for (struct sched_seq *q = s->running.head; q && n < s->cfg.max_sequences; q = q->next)
		s->snap[n++] = q;
	for (uint32_t i = 0; i < n; i++) {
		struct sched_seq *q = s->snap[i];
		uint32_t left = q->n_tokens - q->n_computed;
		if (q->state != SCHED_SEQ_RUNNING || q->planned_iter == s->plan.iteration ||
		    (decodes ? left != 1 : left <= 1))
			continue;
		plan_running(s, q, decodes ? 1 : UINT32_MAX);
	}
}

const struct sched_plan *sched_plan(struct sched *s)
{
	struct sched_plan *p = &s->plan;

	p->n_items = p->n_tokens = p->n_decode = 0;
	p->iteration++;
	s->planning = true;
	s->st.iterations = p->iteration;

	/* 1. Every running sequence's decode token. */
	plan_phase(s, true);
	if (s->cfg.policy == SCHED_POLICY_FAIR) {
		/* 2. Newcomers (shortest first) before long prefills continue; those keep a
		 * quarter of the budget so they still advance. */
		uint32_t prefill_left = 0, share = s->cfg.max_batched_tokens / 4;
		for (struct sched_seq *q = s->running.head; q; q = q->next)
			if (q->n_tokens - q->n_computed > 1)
				prefill_left += q->n_tokens - q->n_computed;
		admit(s, prefill_left < share ? prefill_left : share);
		plan_phase(s, false);
	} else {
		/* 2. Prompts in progress continue, then newcomers in policy order. */
		plan_phase(s, false);
		admit(s, 0);
	}
	s->st.running = s->running.n;
	s->st.waiting = s->waiting.n;
	return p;
}

void sched_plan_done(struct sched *s)
{
	struct sched_plan *p = &s->plan;
	s->planning = false;
	for (uint32_t i = 0; i < p->n_items; i++) {
		struct sched_seq *q = p->items[i].seq;
		uint32_t end = p->items[i].start + p->items[i].n_tokens;
		if (p->items[i].start < q->n_prompt)
			s->st.prompt_tokens_computed += (end < q->n_prompt ? end : q->n_prompt) -
			                                p->items[i].start;
		q->n_computed = end;
		block_manager_commit(s->bm, &q->blocks, q->tokens, q->n_computed, s->cfg.prefix_salt);
	}
}

void sched_stats(const struct sched *s, struct sched_stats *out)
{
	*out = s->st;
	out->running = s->running.n;
	out->waiting = s->waiting.n;
	out->queued_tokens = s->queued_tokens;
}

bool sched_busy(const struct sched *s)
{
	return s->running.n || s->waiting.n;
}
