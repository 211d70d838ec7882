/* Sampling: logit bias, penalties, greedy / temperature, top-k, top-p, min-p,
 * logprobs and a per-request PRNG. See sample.h for the order and semantics. */
#include "sample.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cand {
	float logit;
	int32_t id;
};

struct sampler {
	struct sampling_params p;
	int32_t n_vocab;
	struct sampler_bias *bias;
	int32_t *stop_ids;
	uint64_t rng[4];

	int32_t *hist;      /* prompt + generated tokens, in order */
	size_t n_hist, cap_hist;
	int32_t *gen_count; /* (n_vocab) times generated */
	int32_t *gen_ids;   /* distinct generated ids */
	size_t n_gen_ids;
	uint32_t *mark;     /* (n_vocab) stamp: already penalised in this call */
	uint32_t stamp;
	struct cand *cand;  /* (n_vocab) scratch */
	float *w;           /* (n_vocab) scratch: weights of the candidates */
};

/* ---- parameters -------------------------------------------------------------------- */

void sampling_params_init(struct sampling_params *p)
{
	memset(p, 0, sizeof *p);
	p->temperature = 1.0f;
	p->top_p = 1.0f;
	p->repeat_penalty = 1.0f;
	p->repeat_last_n = 64;
}

int sampling_params_check(const struct sampling_params *p, int32_t n_vocab, char *err,
                          size_t errlen)
{
	const char *bad = NULL;
	char buf[96];
	if (!(p->temperature <= 1e6f) || isnan(p->temperature))
		bad = "temperature must be a number <= 1e6";
	else if (!(p->top_p > 0.0f && p->top_p <= 1.0f) && !(p->top_p > 1.0f && isfinite(p->top_p)))
		bad = "top_p must be in (0, 1]";
	else if (!(p->min_p >= 0.0f && p->min_p < 1.0f))
		bad = "min_p must be in [0, 1)";
	else if (!(p->repeat_penalty >= 0.0f && isfinite(p->repeat_penalty)))
		bad = "repeat_penalty must be >= 0";
	else if (p->repeat_last_n < -1)
		bad = "repeat_last_n must be -1 (all), 0 (off) or positive";
	else if (!(fabsf(p->presence_penalty) <= 100.0f) || !(fabsf(p->frequency_penalty) <= 100.0f))
		bad = "presence_penalty and frequency_penalty must be finite, |x| <= 100";
	else if (p->n_logprobs < 0 || p->n_logprobs > SAMPLER_MAX_LOGPROBS)
		bad = "n_logprobs must be in [0, 20]";
	else if (n_vocab <= 0)
		bad = "the vocabulary is empty";
	else if (p->n_logit_bias && p->logit_bias == NULL)
		bad = "logit_bias is NULL";
	else if (p->n_stop_ids && p->stop_ids == NULL)
		bad = "stop_ids is NULL";
	for (size_t i = 0; bad == NULL && i < p->n_logit_bias; i++) {
		if (p->logit_bias[i].id < 0 || p->logit_bias[i].id >= n_vocab || isnan(p->logit_bias[i].bias)) {
			snprintf(buf, sizeof buf, "logit_bias: token %d is not in [0, %d) or its bias is NaN",
			         (int)p->logit_bias[i].id, (int)n_vocab);
			bad = buf;
		}
	}
	for (size_t i = 0; bad == NULL && i < p->n_stop_ids; i++) {
		if (p->stop_ids[i] < 0 || p->stop_ids[i] >= n_vocab) {
			snprintf(buf, sizeof buf, "stop_ids: token %d is not in [0, %d)", (int)p->stop_ids[i],
			         (int)n_vocab);
			bad = buf;
		}
	}
	if (bad == NULL)
		return 0;
	if (err && errlen)
		snprintf(err, errlen, "%s", bad);
	return -EINVAL;
}

/* ---- PRNG: xoshiro256**, seeded through splitmix64 ---------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t *s)
{
	uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

static double rng_uniform(uint64_t *s) /* [0, 1) */
{
	return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

static void rng_seed(struct sampler *s)
{
	uint64_t x = s->p.seed;
	for (int i = 0; i < 4; i++)
		s->rng[i] = splitmix64(&x);
}

/* ---- life cycle -------------------------------------------------------------------- */

struct sampler *sampler_new(const struct sampling_params *p, int n_vocab)
{
	if (sampling_params_check(p, n_vocab, NULL, 0) < 0)
		return NULL;
	struct sampler *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->p = *p;
	s->n_vocab = n_vocab;
	s->bias = malloc((p->n_logit_bias + 1) * sizeof *s->bias);
	s->stop_ids = malloc((p->n_stop_ids + 1) * sizeof *s->stop_ids);
	s->gen_count = calloc((size_t)n_vocab, sizeof *s->gen_count);
	s->gen_ids = malloc((size_t)n_vocab * sizeof *s->gen_ids);
	s->mark = calloc((size_t)n_vocab, sizeof *s->mark);
	s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
	s->w = malloc((size_t)n_vocab * sizeof *s->w);
	if (!s->bias || !s->stop_ids || !s->gen_count || !s->gen_ids || !s->mark || !s->cand || !s->w) {
		sampler_free(s);
		return NULL;
	}
	if (p->n_logit_bias)
		memcpy(s->bias, p->logit_bias, p->n_logit_bias * sizeof *s->bias);
	if (p->n_stop_ids)
		memcpy(s->stop_ids, p->stop_ids, p->n_stop_ids * sizeof *s->stop_ids);
	s->p.logit_bias = NULL;
	s->p.stop_ids = NULL;
	rng_seed(s);
	return s;
}

void sampler_free(struct sampler *s)
{
	if (s == NULL)
		return;
	free(s->bias);
	free(s->stop_ids);
	free(s->hist);
	free(s->gen_count);
	free(s->gen_ids);
	free(s->mark);
	free(s->cand);
	free(s->w);
	free(s);
}

void sampler_reset(struct sampler *s)
{
	for (size_t i = 0; i < s->n_gen_ids; i++)
		s->gen_count[s->gen_ids[i]] = 0;
	s->n_gen_ids = 0;
	s->n_hist = 0;
	rng_seed(s);
}

static int hist_push(struct sampler *s, int32_t id)
{
	if (s->n_hist == s->cap_hist) {
		size_t cap = s->cap_hist ? 2 * s->cap_hist : 256;
		int32_t *h = realloc(s->hist, cap * sizeof *h);
		if (h == NULL)
			return -ENOMEM;
		s->hist = h;
		s->cap_hist = cap;
	}
	s->hist[s->n_hist++] = id;
	return 0;
}

int sampler_accept_prompt(struct sampler *s, const int32_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= s->n_vocab)
			return -EINVAL;
		if (hist_push(s, ids[i]) < 0)
			return -ENOMEM;
	}
	return 0;
}

int sampler_accept(struct sampler *s, int32_t id)
{
	if (id < 0 || id >= s->n_vocab)
		return -EINVAL;
	if (hist_push(s, id) < 0)
		return -ENOMEM;
	if (s->gen_count[id]++ == 0)
		s->gen_ids[s->n_gen_ids++] = id;
	for (size_t i = 0; i < s->p.n_stop_ids; i++)
		if (s->stop_ids[i] == id)
			return 1;
	return 0;
}

/* ---- bias and penalties ------------------------------------------------------------- */

static void apply_penalties(struct sampler *s, float *logits)
{
	const struct sampling_params *p = &s->p;
	for (size_t i = 0; i < p->n_logit_bias; i++)
		logits[s->bias[i].id] += s->bias[i].bias;

	if (p->repeat_penalty != 1.0f && p->repeat_last_n != 0 && s->n_hist) {
		size_t from = p->repeat_last_n < 0 || (size_t)p->repeat_last_n >= s->n_hist
		              ? 0 : s->n_hist - (size_t)p->repeat_last_n;
		if (++s->stamp == 0) { /* wrapped: clear the marks */
			memset(s->mark, 0, (size_t)s->n_vocab * sizeof *s->mark);
			s->stamp = 1;
		}
		for (size_t i = from; i < s->n_hist; i++) {
			int32_t id = s->hist[i];
			if (s->mark[id] == s->stamp)
				continue;
			s->mark[id] = s->stamp;
			float *l = &logits[id];
			*l = *l > 0.0f ? *l / p->repeat_penalty : *l * p->repeat_penalty;
		}
	}
	if (p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f)
		for (size_t i = 0; i < s->n_gen_ids; i++) {
			int32_t id = s->gen_ids[i];
			logits[id] -= p->presence_penalty + p->frequency_penalty * (float)s->gen_count[id];
		}
}

/* ---- candidates --------------------------------------------------------------------- */

/* a ranks before b: higher logit, then lower id. */
static bool better(const struct cand *a, const struct cand *b)
{
	return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cand_cmp(const void *x, const void *y)
{
	const struct cand *a = x, *b = y;
	return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* Moves the best k of c[0..n) to c[0..k), sorted best first: a min-heap of the
 * k best seen so far, O(n log k). */
static void top_k(struct cand *c, size_t n, size_t k)
{
	if (k >= n) {
		qsort(c, n, sizeof *c, cand_cmp);
		return;
	}
	/* heap over c[0..k): root = the worst of the k kept */
	for (size_t i = k / 2; i-- > 0;) {
		for (size_t j = i;;) {
			size_t l = 2 * j + 1, w = j;
			if (l < k && better(&c[w], &c[l]))
				w = l;
			if (l + 1 < k && better(&c[w], &c[l + 1]))
				w = l + 1;
			if (w == j)
				break;
			struct cand t = c[j];
			c[j] = c[w];
			c[w] = t;
			j = w;
		}
	}
	for (size_t i = k; i < n; i++) {
		if (!better(&c[i], &c[0]))
			continue;
		c[0] = c[i];
		for (size_t j = 0;;) {
			size_t l = 2 * j + 1, w = j;
			if (l < k && better(&c[w], &c[l]))
				w = l;
			if (l + 1 < k && better(&c[w], &c[l + 1]))
				w = l + 1;
			if (w == j)
				break;
			struct cand t = c[j];
			c[j] = c[w];
			c[w] = t;
			j = w;
		}
	}
	qsort(c, k, sizeof *c, cand_cmp);
}

static size_t fill_cands(struct sampler *s, const float *logits)
{
	for (int32_t i = 0; i < s->n_vocab; i++)
		s->cand[i] = (struct cand){ .logit = logits[i], .id = i };
	return (size_t)s->n_vocab;
}

static void report_logprobs(struct sampler *s, const float *logits, float lse,
                            struct sampler_result *out)
{
	out->logprob = logits[out->token] - lse;
	out->n_top = s->p.n_logprobs;
	if (out->n_top == 0)
		return;
	size_t n = fill_cands(s, logits);
	size_t k = (size_t)out->n_top < n ? (size_t)out->n_top : n;
	top_k(s->cand, n, k);
	out->n_top = (int32_t)k;
	for (size_t i = 0; i < k; i++)
		out->top[i] = (struct sampler_logprob){ .id = s->cand[i].id, .logprob = s->cand[i].logit - lse };
}

/* Top-p over the whole vocabulary without sorting it: a histogram of the
 * probability mass by logit (1024 buckets over the 32 nats below the maximum,
 * the rest in the last) finds the bucket where the cumulative mass crosses
 * top_p; tokens of the buckets above are in, and only the crossing bucket is
 * sorted to find where exactly the mass reaches top_p. Leaves the kept tokens
 * in s->cand (unordered) and returns their count. */
#define TOPP_BUCKETS 1024
#define TOPP_SPAN 32.0f

static int topp_bucket(float max, float l)
{
	float d = (max - l) * ((TOPP_BUCKETS - 1) / TOPP_SPAN);
	return d < (float)(TOPP_BUCKETS - 1) ? (int)d : TOPP_BUCKETS - 1; /* NaN-free: l is not NaN */
}

static size_t top_p_select(struct sampler *s, const float *logits, float max, double sum,
                           float top_p)
{
	int32_t n = s->n_vocab;
	double mass[TOPP_BUCKETS] = { 0 }; /* unnormalised: s->w[i] = exp(logit - max) */
	double target = (double)top_p * sum;
	for (int32_t i = 0; i < n; i++)
		mass[topp_bucket(max, logits[i])] += s->w[i];
	int cross = 0;
	double cum = 0.0;
	for (; cross < TOPP_BUCKETS - 1; cross++) {
		if (cum + mass[cross] >= target)
			break;
		cum += mass[cross];
	}
	size_t o = 0;
	for (int32_t i = 0; i < n; i++)
		if (topp_bucket(max, logits[i]) < cross)
			s->cand[o++] = (struct cand){ .logit = logits[i], .id = i };
	size_t b0 = o;
	for (int32_t i = 0; i < n; i++)
		if (topp_bucket(max, logits[i]) == cross)
			s->cand[o++] = (struct cand){ .logit = logits[i], .id = i };
	qsort(s->cand + b0, o - b0, sizeof *s->cand, cand_cmp);
	for (size_t i = b0; i < o; i++) {
		cum += s->w[s->cand[i].id];
		if (cum >= target)
			return i + 1;
	}
	return o;
}

/* ---- sampling ----------------------------------------------------------------------- */

int sampler_sample(struct sampler *s, float *logits, struct sampler_result *out)
{
	const struct sampling_params *p = &s->p;
	int32_t n = s->n_vocab;

	memset(out, 0, sizeof *out);
	apply_penalties(s, logits);
	float inv_t = p->temperature > 0.0f ? 1.0f / p->temperature : 1.0f;
	int32_t best = -1;
	for (int32_t i = 0; i < n; i++) {
		float l = isnan(logits[i]) ? -INFINITY : logits[i] * inv_t;
		if (l > FLT_MAX) /* +inf (a forced token): the largest finite value */
			l = FLT_MAX;
		logits[i] = l;
		if (best < 0 || l > logits[best])
			best = i;
	}
	if (!isfinite(logits[best]))
		return -EDOM; /* out->token stays 0 */
	float max = logits[best];
	/* log-sum-exp over the vocabulary, for the sampled token's logprob (always
	 * reported) and top-p: one full exp pass. */
	double sum = 0.0;
	for (int32_t i = 0; i < n; i++)
		sum += (s->w[i] = expf(logits[i] - max)); /* reused by every later step */
	float lse = max + (float)log(sum);

	if (p->temperature <= 0.0f) {
		out->token = best;
		report_logprobs(s, logits, lse, out);
		return 0;
	}

	/* Candidates: top-k (then top-p over them), else top-p over the vocabulary,
	 * else all. */
	size_t nc = fill_cands(s, logits), k = nc;
	bool p_done = false;
	if (p->top_k > 0 && (size_t)p->top_k < nc) {
		k = (size_t)p->top_k;
		top_k(s->cand, nc, k);
	} else if (p->top_p < 1.0f) {
		k = top_p_select(s, logits, max, sum, p->top_p);
		p_done = true;
	}
	/* s->w[id] = exp(logit - max); the best candidate is the maximum. */
	float top = max;
	if (p->top_p < 1.0f && !p_done) { /* after top-k, sorted: the shortest prefix holding top_p */
		double total = 0.0, cum = 0.0;
		for (size_t i = 0; i < k; i++)
			total += s->w[s->cand[i].id];
		size_t keep = k;
		for (size_t i = 0; i < k; i++) {
			cum += s->w[s->cand[i].id] / total;
			if (cum >= p->top_p) {
				keep = i + 1;
				break;
			}
		}
		k = keep;
	}
	if (p->min_p > 0.0f) { /* keep p >= min_p * p_max: logit >= top + log(min_p) */
		float cut = top + logf(p->min_p);
		size_t o = 0;
		for (size_t i = 0; i < k; i++)
			if (s->cand[i].logit >= cut)
				s->cand[o++] = s->cand[i];
		k = o;
	}
	/* The draw over the kept candidates, weights from the exp pass. */
	double total = 0.0;
	for (size_t i = 0; i < k; i++)
		total += s->w[s->cand[i].id];
	double r = rng_uniform(s->rng) * total, cum = 0.0;
	out->token = s->cand[k - 1].id;
	for (size_t i = 0; i < k; i++) {
		cum += s->w[s->cand[i].id];
		if (r < cum) {
			out->token = s->cand[i].id;
			break;
		}
	}
	report_logprobs(s, logits, lse, out);
	return 0;
}
