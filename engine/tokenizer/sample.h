/* Token sampling from f32 logits, per request, and stop-string matching on the
 * detokenized text.
 *
 * The order of the steps (vLLM's, which follows the OpenAI API):
 *   1. logit bias: logits[id] += bias;
 *   2. penalties:
 *      - repeat_penalty (CTRL / llama.cpp style: a positive logit is divided by
 *        it, a negative one multiplied) on every distinct token among the last
 *        repeat_last_n tokens of the prompt *and* the generated text (the
 *        prompt counts when fed with sampler_accept_prompt(), as llama.cpp's
 *        server does);
 *      - presence_penalty (subtracted once) and frequency_penalty (times the
 *        count) on the tokens *generated* so far only (OpenAI semantics);
 *   3. temperature <= 0: greedy, the argmax (lowest id on ties); the remaining
 *      steps are skipped;
 *   4. logits / temperature; top-k, then top-p (smallest set of the most
 *      likely tokens whose probability, renormalised over the top-k, reaches
 *      top_p), then min-p (drop tokens less likely than min_p x the most
 *      likely one); a draw from the renormalised remainder with the request's
 *      own PRNG (xoshiro256** seeded from seed: same seed, same logits -> same
 *      tokens).
 * Logprobs are the log-softmax over the whole vocabulary of the logits after
 * steps 1-2 and the temperature (temperature 1 when greedy), before any
 * truncation: every token has a finite logprob, and the sampled token's
 * logprob is its probability under the tempered distribution, not under the
 * truncated one.
 *
 * Cost per token: O(n_vocab), plus O(n_vocab log k) for top-k; top-p alone
 * finds its set with a histogram of the probability mass by logit and sorts
 * only the tokens of the bucket where the mass crosses top_p, never the whole
 * vocabulary (except when nearly all logits are equal). Every call makes one
 * full exp pass (log-sum-exp) for the sampled token's logprob.
 *
 * Conventions: functions return 0 or a negative errno code. A sampler belongs
 * to one request (one thread at a time).
 */
#ifndef INFERD_ENGINE_SAMPLE_H
#define INFERD_ENGINE_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SAMPLER_MAX_LOGPROBS 20

struct sampler_bias {
	int32_t id;
	float bias; /* added to the logit; -INFINITY bans the token */
};

struct sampling_params {
	float temperature;       /* <= 0: greedy */
	int32_t top_k;           /* <= 0: off */
	float top_p;             /* (0, 1]; >= 1: off */
	float min_p;             /* [0, 1); 0: off */
	float repeat_penalty;    /* >= 0; 1: off */
	int32_t repeat_last_n;   /* tokens the repeat penalty looks back on; -1: all, 0: off */
	float presence_penalty;  /* [-2, 2] as OpenAI; 0: off */
	float frequency_penalty; /* [-2, 2]; 0: off */
	uint64_t seed;
	int32_t n_logprobs;      /* top alternatives reported, 0..SAMPLER_MAX_LOGPROBS */
	const struct sampler_bias *logit_bias; /* copied by sampler_new() */
	size_t n_logit_bias;
	const int32_t *stop_ids; /* copied by sampler_new(); generation ends after one */
	size_t n_stop_ids;
};

/* Defaults: temperature 1, top_k 0, top_p 1, min_p 0, repeat_penalty 1,
 * repeat_last_n 64, no presence/frequency penalty, seed 0, no logprobs. */
void sampling_params_init(struct sampling_params *p);

/* Checks p against a vocabulary of n_vocab tokens. @return 0, or -EINVAL with
 * a one-line reason naming the parameter in err. */
int sampling_params_check(const struct sampling_params *p, int32_t n_vocab, char *err,
                          size_t errlen);

struct sampler; /* opaque */

/* @return a sampler (free with sampler_free()), or NULL when p fails
 * sampling_params_check() or memory runs out. */
struct sampler *sampler_new(const struct sampling_params *p, int n_vocab);
void sampler_free(struct sampler *s);

struct sampler_logprob {
	int32_t id;
	float logprob;
};

struct sampler_result {
	int32_t token;
	float logprob;  /* of token (see the top of this file for the distribution) */
	int32_t n_top;  /* = n_logprobs */
	struct sampler_logprob top[SAMPLER_MAX_LOGPROBS]; /* most likely first */
};

/* Picks the next token from logits (n_vocab values), which it modifies in
 * place (bias, penalties, temperature). Does not record the token: call
 * sampler_accept() with the token actually used. NaN logits count as -inf.
 * @return 0, or -EDOM when no logit is finite (out->token is then 0). */
int sampler_sample(struct sampler *s, float *logits, struct sampler_result *out);

/* Records prompt tokens for the repeat penalty. @return 0 or -ENOMEM. */
int sampler_accept_prompt(struct sampler *s, const int32_t *ids, size_t n);
/* Records a generated token. @return 1 when it is one of the stop ids,
 * 0 otherwise, -EINVAL for an id out of range, -ENOMEM. */
int sampler_accept(struct sampler *s, int32_t token);
/* Forgets the history (prompt and generated) and reseeds with the same seed. */
void sampler_reset(struct sampler *s);

/* ---- stop strings -------------------------------------------------------------------
 * Fed the detokenized text piece by piece, the matcher passes text on but holds
 * back any tail that could be the start of a stop string, releases it when the
 * continuation rules the stop string out, and never passes on the stop string
 * itself or anything after it. Fed valid UTF-8 (tok_stream output), it hands
 * out valid UTF-8. */

struct stop_matcher;

/* Copies the n stop strings (NUL-terminated, non-empty). @return the matcher
 * (free with stop_matcher_free()), or NULL for an empty string or ENOMEM. */
struct stop_matcher *stop_matcher_new(const char *const *stops, size_t n);
void stop_matcher_free(struct stop_matcher *m);
/* Feeds len bytes. *out / *out_len: the text that can be passed on now, valid
 * until the next call on m. @return 0 (go on), 1 (a stop string was found:
 * *out is the text before it, the request ends; *which (may be NULL) is its
 * index), -ENOMEM. After 1, further feeds return 1 with no text. */
int stop_matcher_feed(struct stop_matcher *m, const char *text, size_t len, const char **out,
                      size_t *out_len, size_t *which);
/* End of generation without a stop string: the held-back tail. */
int stop_matcher_flush(struct stop_matcher *m, const char **out, size_t *out_len);
/* Bytes held back right now. */
size_t stop_matcher_pending(const struct stop_matcher *m);

#endif
