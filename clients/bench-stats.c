/* inferd-bench: per-request records, latency distributions and the summary of a point. */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct dvec { double *v; size_t n, cap; };

struct bench_stats {
	struct bench_record *recs;
	size_t n, cap;
	struct dvec itl;               /* every gap between token-carrying chunks (s) */
};

static int dvec_push(struct dvec *d, double x)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 256;
		double *nv = realloc(d->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		d->v = nv;
		d->cap = cap;
	}
	d->v[d->n++] = x;
	return 0;
}

int bench_stats_new(struct bench_stats **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void bench_stats_free(struct bench_stats *s)
{
	if (!s)
		return;
	free(s->recs);
	free(s->itl.v);
	free(s);
}

size_t bench_stats_count(const struct bench_stats *s)
{
	return s->n;
}

int bench_stats_add(struct bench_stats *s, const struct bench_record *r, const double *itl,
                    size_t n_itl)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		struct bench_record *nr = realloc(s->recs, cap * sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		s->recs = nr;
		s->cap = cap;
	}
	s->recs[s->n++] = *r;
	if (r->ok)
		for (size_t i = 0; i < n_itl; i++)
			if (dvec_push(&s->itl, itl[i]) < 0)
				return -ENOMEM;
	return 0;
}

/* ---- distributions ------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Percentile of sorted values by linear interpolation between closest ranks (as numpy). */
static double percentile(const double *v, size_t n, double q)
{
	double pos = q / 100.0 * (double)(n - 1);
	size_t lo = (size_t)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
	return v[lo] + (v[hi] - v[lo]) * (pos - (double)lo);
}

/* Sorts v in place and summarises it, scaled by `scale` (1000: seconds to ms). */
static void summarize(double *v, size_t n, double scale, struct bench_dist_summary *d)
{
	double sum = 0;

	memset(d, 0, sizeof(*d));
	d->n = n;
	if (!n)
		return;
	qsort(v, n, sizeof(*v), cmp_double);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	d->mean = sum / (double)n * scale;
	d->median = percentile(v, n, 50) * scale;
	d->p90 = percentile(v, n, 90) * scale;
	d->p99 = percentile(v, n, 99) * scale;
	d->min = v[0] * scale;
	d->max = v[n - 1] * scale;
}

/* ---- summary ------------------------------------------------------------------------------- */

int bench_stats_summarize(const struct bench_stats *s, double slo_ttft_ms, double slo_tpot_ms,
                          struct bench_summary *out)
{
	double *ttft = NULL, *tpot = NULL, *e2e = NULL, *itl = NULL, t_first = 0, t_last = 0;
	uint64_t counted = 0;          /* output tokens by usage where reported, else streamed */
	size_t n_ttft = 0, n_tpot = 0, n_e2e = 0;
	int rc = -ENOMEM;

	memset(out, 0, sizeof(*out));
	if (!(out->errors_by_status = json_object()))
		goto cleanup;
	ttft = malloc((s->n + 1) * sizeof(*ttft));
	tpot = malloc((s->n + 1) * sizeof(*tpot));
	e2e = malloc((s->n + 1) * sizeof(*e2e));
	itl = malloc((s->itl.n + 1) * sizeof(*itl));
	if (!ttft || !tpot || !e2e || !itl)
		goto cleanup;
	if (s->itl.n)
		memcpy(itl, s->itl.v, s->itl.n * sizeof(*itl));
	for (size_t i = 0; i < s->n; i++) {
		const struct bench_record *r = &s->recs[i];
		bool good = r->ok;
		/* A server may pack several tokens into a chunk: its usage is the truth. */
		uint32_t n_out = r->usage_output_tokens ? r->usage_output_tokens : r->output_tokens;

		if (i == 0 || r->start < t_first)
			t_first = r->start;
		if (r->end > t_last)
			t_last = r->end;
		out->sent++;
		if (!r->ok) {
			json_t *c = json_object_get(out->errors_by_status, r->status);
			json_object_set_new(out->errors_by_status, r->status,
			                    json_integer(c ? json_integer_value(c) + 1 : 1));
			out->errors++;
			continue;
		}
		out->ok++;
		out->input_tokens += r->input_tokens;
		out->output_tokens += r->output_tokens;
		out->usage_output_tokens += r->usage_output_tokens;
		counted += n_out;
		e2e[n_e2e++] = r->end - r->start;
		if (r->first) {
			ttft[n_ttft++] = r->first - r->start;
			if (slo_ttft_ms > 0 && (r->first - r->start) * 1e3 > slo_ttft_ms)
				good = false;
		} else if (slo_ttft_ms > 0) {
			good = false;
		}
		if (r->first && n_out > 1) {
			double t = (r->end - r->first) / (double)(n_out - 1);
			tpot[n_tpot++] = t;
			if (slo_tpot_ms > 0 && t * 1e3 > slo_tpot_ms)
				good = false;
		}
		if (good)
			out->good++;
	}
	out->duration_s = t_last > t_first ? t_last - t_first : 0;
	if (out->duration_s > 0) {
		out->request_throughput = (double)out->ok / out->duration_s;
		out->input_throughput = (double)out->input_tokens / out->duration_s;
		out->output_throughput = (double)counted / out->duration_s;
		out->goodput = (double)out->good / out->duration_s;
	}
	summarize(ttft, n_ttft, 1e3, &out->ttft_ms);
	summarize(tpot, n_tpot, 1e3, &out->tpot_ms);
	summarize(e2e, n_e2e, 1e3, &out->e2e_ms);
	summarize(itl, s->itl.n, 1e3, &out->itl_ms);
	rc = 0;
cleanup:
	free(ttft);
	free(tpot);
	free(e2e);
	free(itl);
	if (rc < 0)
		bench_summary_fini(out);
	return rc;
}

void bench_summary_fini(struct bench_summary *sum)
{
	json_decref(sum->errors_by_status);
	sum->errors_by_status = NULL;
}
