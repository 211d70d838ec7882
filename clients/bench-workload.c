/* inferd-bench: workloads. Synthetic prompts (token ids or words) with fixed, uniform or normal
 * lengths and an optional shared prefix, or the prompts of a JSONL file.
 *
 * Accepted JSONL fields, one JSON object per line (blank lines skipped):
 *   "prompt": "text"                        a text prompt, or
 *   "prompt_token_ids" / "prompt_tokens": [ids]   a token prompt, or
 *   "conversations" (ShareGPT: [{"from": "human"|"gpt", "value": "..."}]) or
 *   "messages" ([{"role": "user"|"assistant", "content": "..."}]): the first human/user turn
 *     is the prompt; the assistant turn after it sets the expected output length (its bytes / 4,
 *     a rough token count) when no explicit length is given;
 *   "output_len" / "max_tokens" / "expected_output_len": the output length in tokens.
 * Without any output length, --output-len applies.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const words[] = {
	"the", "cat", "sat", "on", "a", "warm", "mat", "and", "looked", "at", "little", "bird",
	"in", "garden", "where", "flowers", "grew", "tall", "under", "bright", "sun", "one", "day",
	"girl", "named", "lily", "found", "big", "red", "ball", "she", "was", "very", "happy",
	"played", "with", "her", "friend", "tom", "they", "ran", "to", "park", "saw", "dog",
};
#define N_WORDS (sizeof(words) / sizeof(words[0]))

/* Token ids below this are usually special (unknown, BOS, EOS): prompts avoid them. */
#define FIRST_PLAIN_ID 3

static uint32_t draw_len(struct bench_rng *r, enum bench_dist dist, uint32_t len, double ratio)
{
	double x = len;

	if (dist == BENCH_DIST_UNIFORM) {
		double lo = len * (1.0 - ratio), hi = len * (1.0 + ratio);
		x = lo + (hi - lo + 1.0) * bench_rng_uniform(r);
		x = floor(x);
	} else if (dist == BENCH_DIST_NORMAL) {
		x = round(len + len * ratio * bench_rng_normal(r));
	}
	return x < 1 ? 1 : x > 1e7 ? 10000000u : (uint32_t)x;
}

static int32_t draw_id(struct bench_rng *r, uint32_t vocab)
{
	uint32_t lo = vocab > FIRST_PLAIN_ID + 1 ? FIRST_PLAIN_ID : 0;
	return (int32_t)(lo + bench_rng_next(r) % (vocab - lo));
}

/* Appends n words to a growing string. */
static int add_words(struct bench_rng *r, uint32_t n, char **s, size_t *len, size_t *cap)
{
	for (uint32_t i = 0; i < n; i++) {
		const char *w = words[bench_rng_next(r) % N_WORDS];
		size_t wl = strlen(w) + 1;
		if (*len + wl + 1 > *cap) {
			size_t nc = *cap ? *cap * 2 : 256;
			while (nc < *len + wl + 1)
				nc *= 2;
			char *ns = realloc(*s, nc);
			if (!ns)
				return -ENOMEM;
			*s = ns;
			*cap = nc;
		}
		memcpy(*s + *len, w, wl - 1);
		(*s)[*len + wl - 1] = ' ';
		*len += wl;
		(*s)[*len] = '\0';
	}
	return 0;
}

/* ---- synthetic ----------------------------------------------------------------------------- */

static int make_synthetic(const struct bench_config *cfg, struct bench_workload *w, size_t n)
{
	struct bench_rng r, pr;

	bench_rng_seed(&r, cfg->seed);
	bench_rng_seed(&pr, cfg->seed ^ 0x5eedf00dull); /* the shared prefix, same for all */
	if (!(w->items = calloc(n, sizeof(*w->items))))
		return -ENOMEM;
	w->n = n;
	for (size_t i = 0; i < n; i++) {
		struct bench_item *it = &w->items[i];
		uint32_t in = draw_len(&r, cfg->input_dist, cfg->input_len, cfg->range_ratio);

		it->output_len = draw_len(&r, cfg->output_dist, cfg->output_len, cfg->range_ratio);
		it->input_len = cfg->shared_prefix + in;
		if (cfg->text_prompts) {
			size_t len = 0, cap = 0;
			struct bench_rng p = pr;
			if (add_words(&p, cfg->shared_prefix, &it->text, &len, &cap) < 0 ||
			    add_words(&r, in, &it->text, &len, &cap) < 0)
				return -ENOMEM;
			if (len)
				it->text[len - 1] = '\0'; /* no trailing space */
			continue;
		}
		struct bench_rng p = pr;
		if (!(it->ids = malloc(it->input_len * sizeof(*it->ids))))
			return -ENOMEM;
		it->n_ids = it->input_len;
		for (uint32_t k = 0; k < cfg->shared_prefix; k++)
			it->ids[k] = draw_id(&p, cfg->vocab_size);
		for (uint32_t k = cfg->shared_prefix; k < it->input_len; k++)
			it->ids[k] = draw_id(&r, cfg->vocab_size);
	}
	return 0;
}

/* ---- JSONL --------------------------------------------------------------------------------- */

static json_t *first_of(json_t *o, const char *a, const char *b, const char *c)
{
	json_t *v = json_object_get(o, a);
	if (!v && b)
		v = json_object_get(o, b);
	if (!v && c)
		v = json_object_get(o, c);
	return v;
}

/* ShareGPT or chat messages: the first user turn and the length of the reply after it. */
static void from_turns(json_t *turns, const char **prompt, size_t *reply_bytes)
{
	size_t i;
	json_t *t;

	json_array_foreach(turns, i, t) {
		const char *who = json_string_value(first_of(t, "from", "role", NULL));
		const char *text = json_string_value(first_of(t, "value", "content", NULL));
		if (!who || !text)
			continue;
		bool user = !strcmp(who, "human") || !strcmp(who, "user");
		if (!*prompt && user) {
			*prompt = text;
		} else if (*prompt && !user) {
			*reply_bytes = strlen(text);
			return;
		}
	}
}

static int parse_line(const struct bench_config *cfg, json_t *o, struct bench_item *it,
                      char *err, size_t errlen)
{
	json_t *ids = first_of(o, "prompt_token_ids", "prompt_tokens", NULL);
	json_t *turns = first_of(o, "conversations", "messages", NULL);
	json_t *olen = first_of(o, "output_len", "max_tokens", "expected_output_len");
	const char *prompt = json_string_value(json_object_get(o, "prompt"));
	size_t reply_bytes = 0, i;
	json_t *v;

	if (!prompt && json_is_array(turns))
		from_turns(turns, &prompt, &reply_bytes);
	if (json_is_array(ids) && json_array_size(ids)) {
		it->n_ids = it->input_len = (uint32_t)json_array_size(ids);
		if (!(it->ids = malloc(it->n_ids * sizeof(*it->ids))))
			return -ENOMEM;
		json_array_foreach(ids, i, v) {
			if (!json_is_integer(v)) {
				snprintf(err, errlen, "prompt_token_ids holds a non-integer");
				return -EINVAL;
			}
			it->ids[i] = (int32_t)json_integer_value(v);
		}
	} else if (prompt) {
		if (!(it->text = strdup(prompt)))
			return -ENOMEM;
		it->input_len = (uint32_t)((strlen(prompt) + 3) / 4); /* until usage says */
	} else {
		snprintf(err, errlen, "no prompt, prompt_token_ids, conversations or messages");
		return -EINVAL;
	}
	if (json_is_integer(olen) && json_integer_value(olen) > 0)
		it->output_len = (uint32_t)json_integer_value(olen);
	else if (reply_bytes)
		it->output_len = (uint32_t)((reply_bytes + 3) / 4);
	else
		it->output_len = cfg->output_len;
	return 0;
}

static int load_dataset(const struct bench_config *cfg, struct bench_workload *w, char *err,
                        size_t errlen)
{
	FILE *f = fopen(cfg->dataset, "r");
	char *line = NULL, lerr[200];
	size_t cap = 0, n_cap = 0, lineno = 0;
	ssize_t len;
	int rc = 0;

	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "cannot open %s: %s", cfg->dataset, strerror(errno));
		return rc;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		json_error_t je;
		json_t *o;

		lineno++;
		if (strspn(line, " \t\r\n") == (size_t)len)
			continue;
		if (!(o = json_loadb(line, (size_t)len, 0, &je)) || !json_is_object(o)) {
			snprintf(err, errlen, "%s:%zu: %s", cfg->dataset, lineno,
			         o ? "not a JSON object" : je.text);
			json_decref(o);
			rc = -EINVAL;
			goto cleanup;
		}
		if (w->n == n_cap) {
			size_t nc = n_cap ? n_cap * 2 : 64;
			struct bench_item *ni = realloc(w->items, nc * sizeof(*ni));
			if (!ni) {
				json_decref(o);
				rc = -ENOMEM;
				goto cleanup;
			}
			memset(ni + n_cap, 0, (nc - n_cap) * sizeof(*ni));
			w->items = ni;
			n_cap = nc;
		}
		rc = parse_line(cfg, o, &w->items[w->n++], lerr, sizeof(lerr));
		json_decref(o);
		if (rc < 0) {
			snprintf(err, errlen, "%s:%zu: %s", cfg->dataset, lineno,
			         rc == -ENOMEM ? "out of memory" : lerr);
			goto cleanup;
		}
	}
	if (!w->n) {
		snprintf(err, errlen, "%s: no prompts", cfg->dataset);
		rc = -EINVAL;
	}
cleanup:
	free(line);
	fclose(f);
	return rc;
}

/* ---- public -------------------------------------------------------------------------------- */

int bench_workload_new(const struct bench_config *cfg, size_t n, struct bench_workload **out,
                       char *err, size_t errlen)
{
	struct bench_workload *w = calloc(1, sizeof(*w));
	int rc = -ENOMEM;

	*out = NULL;
	if (!w)
		goto fail;
	if (cfg->dataset)
		rc = load_dataset(cfg, w, err, errlen);
	else
		rc = make_synthetic(cfg, w, n ? n : 1);
	if (rc < 0)
		goto fail;
	*out = w;
	return 0;
fail:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	bench_workload_free(w);
	return rc;
}

void bench_workload_free(struct bench_workload *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++) {
		free(w->items[i].text);
		free(w->items[i].ids);
	}
	free(w->items);
	free(w);
}
