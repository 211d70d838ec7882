/* Criterion suite of the sampler and the stop-string matcher (engine/tokenizer/sample.h). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample.h"

/* ---- helpers ----------------------------------------------------------------------- */

static struct sampler *mk(float temp, int32_t top_k, float top_p, float min_p, uint64_t seed)
{
	struct sampling_params p;
	sampling_params_init(&p);
	p.temperature = temp;
	p.top_k = top_k;
	p.top_p = top_p;
	p.min_p = min_p;
	p.seed = seed;
	struct sampler *s = sampler_new(&p, 4);
	cr_assert_not_null(s);
	return s;
}

/* Probabilities 0.5, 0.3, 0.15, 0.05 as logits. */
static void probs4(float *l)
{
	l[0] = logf(0.5f);
	l[1] = logf(0.3f);
	l[2] = logf(0.15f);
	l[3] = logf(0.05f);
}

/* Draws n tokens and counts them per id (4 ids). */
static void draw(struct sampler *s, int n, int *count)
{
	memset(count, 0, 4 * sizeof *count);
	for (int i = 0; i < n; i++) {
		float l[4];
		struct sampler_result r;
		probs4(l);
		cr_assert_eq(sampler_sample(s, l, &r), 0);
		cr_assert(r.token >= 0 && r.token < 4);
		count[r.token]++;
	}
}

/* ---- sampler ----------------------------------------------------------------------- */

Test(sampler, greedy_is_argmax)
{
	struct sampler *s = mk(0.0f, 0, 1.0f, 0.0f, 1);
	float l[4] = { 0.1f, 3.0f, 3.0f, -1.0f };
	struct sampler_result r;
	cr_expect_eq(sampler_sample(s, l, &r), 0);
	cr_expect_eq(r.token, 1, "ties go to the lowest id");
	float l2[4] = { NAN, -2.0f, 7.5f, 7.0f };
	cr_expect_eq(sampler_sample(s, l2, &r), 0);
	cr_expect_eq(r.token, 2);
	sampler_free(s);
}

Test(sampler, top_k_1_equals_greedy)
{
	struct sampler *g = mk(0.0f, 0, 1.0f, 0.0f, 1), *k1 = mk(1.5f, 1, 1.0f, 0.0f, 99);
	for (int t = 0; t < 50; t++) {
		float a[4], b[4];
		for (int i = 0; i < 4; i++)
			a[i] = b[i] = (float)((t * 7 + i * 13) % 11) - 5.0f;
		struct sampler_result ra, rb;
		sampler_sample(g, a, &ra);
		sampler_sample(k1, b, &rb);
		cr_expect_eq(ra.token, rb.token);
	}
	sampler_free(g);
	sampler_free(k1);
}

Test(sampler, same_seed_same_tokens)
{
	struct sampler *a = mk(1.0f, 0, 1.0f, 0.0f, 42), *b = mk(1.0f, 0, 1.0f, 0.0f, 42),
	               *c = mk(1.0f, 0, 1.0f, 0.0f, 43);
	int differ = 0;
	for (int i = 0; i < 200; i++) {
		float la[4], lb[4], lc[4];
		probs4(la);
		probs4(lb);
		probs4(lc);
		struct sampler_result ra, rb, rc;
		sampler_sample(a, la, &ra);
		sampler_sample(b, lb, &rb);
		sampler_sample(c, lc, &rc);
		cr_assert_eq(ra.token, rb.token, "draw %d", i);
		differ += ra.token != rc.token;
	}
	cr_expect_gt(differ, 0, "another seed gives other tokens");
	sampler_reset(a);
	struct sampler *d = mk(1.0f, 0, 1.0f, 0.0f, 42);
	for (int i = 0; i < 20; i++) {
		float la[4], ld[4];
		probs4(la);
		probs4(ld);
		struct sampler_result ra, rd;
		sampler_sample(a, la, &ra);
		sampler_sample(d, ld, &rd);
		cr_expect_eq(ra.token, rd.token, "reset reseeds");
	}
	sampler_free(a);
	sampler_free(b);
	sampler_free(c);
	sampler_free(d);
}

Test(sampler, full_distribution_frequencies)
{
	struct sampler *s = mk(1.0f, 0, 1.0f, 0.0f, 7);
	int c[4];
	draw(s, 20000, c);
	cr_expect(abs(c[0] - 10000) < 400 && abs(c[1] - 6000) < 400 && abs(c[2] - 3000) < 300 &&
	          abs(c[3] - 1000) < 200, "%d %d %d %d", c[0], c[1], c[2], c[3]);
	sampler_free(s);
}

Test(sampler, top_p_keeps_the_smallest_set)
{
	int c[4];
	struct sampler *s = mk(1.0f, 0, 0.7f, 0.0f, 3); /* 0.5 + 0.3 >= 0.7 */
	draw(s, 2000, c);
	cr_expect(c[0] > 0 && c[1] > 0 && c[2] == 0 && c[3] == 0, "%d %d %d %d", c[0], c[1], c[2], c[3]);
	cr_expect(abs(c[0] - 1250) < 120, "renormalised 5/8: %d", c[0]);
	sampler_free(s);
	s = mk(1.0f, 0, 0.45f, 0.0f, 3);
	draw(s, 500, c);
	cr_expect_eq(c[0], 500);
	sampler_free(s);
}

Test(sampler, top_k_then_top_p)
{
	int c[4];
	struct sampler *s = mk(1.0f, 3, 0.95f, 0.0f, 5); /* over 0.5/0.3/0.15 renormalised: all 3 */
	draw(s, 2000, c);
	cr_expect(c[0] && c[1] && c[2] && c[3] == 0, "%d %d %d %d", c[0], c[1], c[2], c[3]);
	sampler_free(s);
}

Test(sampler, min_p_keeps_tokens_above_the_ratio)
{
	int c[4];
	struct sampler *s = mk(1.0f, 0, 1.0f, 0.2f, 9); /* keep p >= 0.1 */
	draw(s, 3000, c);
	cr_expect(c[0] && c[1] && c[2] && c[3] == 0, "%d %d %d %d", c[0], c[1], c[2], c[3]);
	sampler_free(s);
}

Test(sampler, top_p_on_a_large_flat_vocabulary)
{
	/* 50000 equal logits: top_p 0.5 needs 25000 candidates, found by growing the
	 * selection; ties order by id, so only ids below 25000 may come out. */
	struct sampling_params p;
	sampling_params_init(&p);
	p.top_p = 0.5f;
	p.seed = 11;
	int n = 50000;
	struct sampler *s = sampler_new(&p, n);
	float *l = malloc((size_t)n * sizeof *l);
	int32_t hi = 0;
	for (int t = 0; t < 50; t++) {
		for (int i = 0; i < n; i++)
			l[i] = 1.0f;
		struct sampler_result r;
		cr_assert_eq(sampler_sample(s, l, &r), 0);
		if (r.token > hi)
			hi = r.token;
	}
	cr_expect_leq(hi, 25001);
	cr_expect_gt(hi, 5000);
	free(l);
	sampler_free(s);
}

Test(sampler, penalties_change_the_right_logits)
{
	struct sampling_params p;
	sampling_params_init(&p);
	p.temperature = 0.0f;
	p.repeat_penalty = 2.0f;
	p.repeat_last_n = -1;
	p.presence_penalty = 0.5f;
	p.frequency_penalty = 0.25f;
	struct sampler *s = sampler_new(&p, 5);
	int32_t prompt[] = { 0, 1, 0 };
	cr_assert_eq(sampler_accept_prompt(s, prompt, 3), 0);
	cr_assert_eq(sampler_accept(s, 3), 0);
	cr_assert_eq(sampler_accept(s, 3), 0);
	float l[5] = { 2.0f, -2.0f, 1.0f, 4.0f, 0.5f };
	struct sampler_result r;
	sampler_sample(s, l, &r);
	cr_expect_float_eq(l[0], 1.0f, 1e-6, "prompt token, positive: divided");
	cr_expect_float_eq(l[1], -4.0f, 1e-6, "prompt token, negative: multiplied");
	cr_expect_float_eq(l[2], 1.0f, 1e-6, "untouched");
	cr_expect_float_eq(l[3], 4.0f / 2.0f - 0.5f - 2 * 0.25f, 1e-6, "repeat, presence, 2 x frequency");
	cr_expect_float_eq(l[4], 0.5f, 1e-6);
	sampler_free(s);

	p.repeat_last_n = 1; /* only the last token (3) */
	p.presence_penalty = p.frequency_penalty = 0.0f;
	s = sampler_new(&p, 5);
	sampler_accept_prompt(s, prompt, 3);
	sampler_accept(s, 3);
	float l2[5] = { 2.0f, -2.0f, 1.0f, 4.0f, 0.5f };
	sampler_sample(s, l2, &r);
	cr_expect_float_eq(l2[0], 2.0f, 1e-6);
	cr_expect_float_eq(l2[3], 2.0f, 1e-6);
	sampler_free(s);
}

Test(sampler, logit_bias_and_stop_ids)
{
	struct sampler_bias bias[] = { { 0, -INFINITY }, { 2, 0.25f } };
	int32_t stop[] = { 3 };
	struct sampling_params p;
	sampling_params_init(&p);
	p.temperature = 0.0f;
	p.logit_bias = bias;
	p.n_logit_bias = 2;
	p.stop_ids = stop;
	p.n_stop_ids = 1;
	struct sampler *s = sampler_new(&p, 4);
	float l[4] = { 9.0f, 1.0f, 0.9f, 0.0f };
	struct sampler_result r;
	sampler_sample(s, l, &r);
	cr_expect_eq(r.token, 2);
	/* the logprob comes without asking for alternatives: logits 1.0, 1.15, 0 */
	cr_expect_float_eq(r.logprob, 1.15 - log(exp(1.0) + exp(1.15) + 1.0), 1e-5);
	cr_expect_eq(r.n_top, 0);
	cr_expect_eq(sampler_accept(s, 2), 0);
	cr_expect_eq(sampler_accept(s, 3), 1);
	cr_expect_eq(sampler_accept(s, 4), -EINVAL);
	sampler_free(s);
}

Test(sampler, logprobs_of_the_tempered_distribution)
{
	struct sampling_params p;
	sampling_params_init(&p);
	p.temperature = 0.5f;
	p.top_k = 1;
	p.n_logprobs = 3;
	struct sampler *s = sampler_new(&p, 4);
	float l[4];
	probs4(l);
	struct sampler_result r;
	sampler_sample(s, l, &r);
	/* p^2 normalised: 0.25, 0.09, 0.0225, 0.0025 / 0.365 */
	double z = 0.25 + 0.09 + 0.0225 + 0.0025;
	cr_expect_eq(r.token, 0);
	cr_expect_float_eq(r.logprob, log(0.25 / z), 1e-4);
	cr_assert_eq(r.n_top, 3);
	cr_expect(r.top[0].id == 0 && r.top[1].id == 1 && r.top[2].id == 2);
	cr_expect_float_eq(r.top[2].logprob, log(0.0225 / z), 1e-4);
	sampler_free(s);
}

Test(sampler, bad_parameters_and_logits)
{
	struct sampling_params p;
	char err[128] = "";
	sampling_params_init(&p);
	p.top_p = 0.0f;
	cr_expect_eq(sampling_params_check(&p, 10, err, sizeof err), -EINVAL);
	cr_expect(strstr(err, "top_p") != NULL, "%s", err);
	cr_expect_null(sampler_new(&p, 10));
	sampling_params_init(&p);
	struct sampler_bias b = { 10, 1.0f };
	p.logit_bias = &b;
	p.n_logit_bias = 1;
	cr_expect_eq(sampling_params_check(&p, 10, err, sizeof err), -EINVAL);
	sampling_params_init(&p);
	struct sampler *s = sampler_new(&p, 3);
	float l[3] = { -INFINITY, NAN, -INFINITY };
	struct sampler_result r;
	cr_expect_eq(sampler_sample(s, l, &r), -EDOM);
	float l2[3] = { 0.0f, INFINITY, 1.0f };
	cr_expect_eq(sampler_sample(s, l2, &r), 0);
	cr_expect_eq(r.token, 1);
	sampler_free(s);
}

/* ---- stop strings ------------------------------------------------------------------- */

struct feed_case {
	char stops[3][12];
	char pieces[6][12];
	char want[32];   /* all text passed on, flush included */
	int stopped;     /* whether a stop string ended it */
};

static struct feed_case feed_cases[] = {
	{ { "\n\n" }, { "Hello\n", "\nWorld" }, "Hello", 1 },
	{ { "\n\n" }, { "a\n", "b\n", "c" }, "a\nb\nc", 0 },
	{ { "\n\n" }, { "a\n" }, "a\n", 0 },                         /* flush releases "\n" */
	{ { "END", "STOP" }, { "x S", "T", "O", "P!" }, "x ", 1 },
	{ { "abc" }, { "aab", "c" }, "a", 1 },                        /* overlapping start */
	{ { "abc" }, { "ab", "ab", "abd" }, "ababab" "d", 0 },
	{ { "<|im_end|>" }, { "hi <|im", "_e", "nd|> more" }, "hi ", 1 },
	{ { "caf\xc3\xa9!" }, { "un caf", "\xc3\xa9", "?" }, "un caf\xc3\xa9?", 0 },
	{ { "xy", "y" }, { "axy" }, "a", 1 },                          /* earliest start wins */
};

ParameterizedTestParameters(stop, feeds)
{
	return cr_make_param_array(struct feed_case, feed_cases, sizeof feed_cases / sizeof feed_cases[0]);
}

ParameterizedTest(struct feed_case *c, stop, feeds)
{
	const char *stops[3];
	size_t ns = 0;
	while (ns < 3 && c->stops[ns][0])
		stops[ns] = c->stops[ns], ns++;
	struct stop_matcher *m = stop_matcher_new(stops, ns);
	cr_assert_not_null(m);
	char all[64] = "";
	int stopped = 0;
	for (int i = 0; i < 6 && c->pieces[i][0] && !stopped; i++) {
		const char *o;
		size_t n;
		int rc = stop_matcher_feed(m, c->pieces[i], strlen(c->pieces[i]), &o, &n, NULL);
		cr_assert_geq(rc, 0);
		strncat(all, o, n);
		stopped = rc;
	}
	if (!stopped) {
		const char *o;
		size_t n;
		stop_matcher_flush(m, &o, &n);
		strncat(all, o, n);
	}
	cr_expect_str_eq(all, c->want);
	cr_expect_eq(stopped, c->stopped);
	stop_matcher_free(m);
}

Test(stop, holds_back_only_possible_starts)
{
	const char *stops[] = { "\n\n" };
	struct stop_matcher *m = stop_matcher_new(stops, 1);
	const char *o;
	size_t n, which = 9;
	cr_expect_eq(stop_matcher_feed(m, "one\n", 4, &o, &n, NULL), 0);
	cr_expect(n == 3 && memcmp(o, "one", 3) == 0);
	cr_expect_eq(stop_matcher_pending(m), 1);
	cr_expect_eq(stop_matcher_feed(m, "\n", 1, &o, &n, &which), 1);
	cr_expect_eq(n, 0);
	cr_expect_eq(which, 0);
	cr_expect_eq(stop_matcher_feed(m, "more", 4, &o, &n, NULL), 1, "stays stopped");
	stop_matcher_free(m);
	const char *bad[] = { "" };
	cr_expect_null(stop_matcher_new(bad, 1));
}
