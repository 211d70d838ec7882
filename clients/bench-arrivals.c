/* inferd-bench: random numbers, arrivals (closed and open loop) and the run of one point. */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- random numbers: xoshiro256**, seeded by splitmix64 --------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void bench_rng_seed(struct bench_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t bench_rng_next(struct bench_rng *r)
{
	uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

double bench_rng_uniform(struct bench_rng *r)
{
	return (bench_rng_next(r) >> 11) * 0x1.0p-53;
}

double bench_rng_normal(struct bench_rng *r)
{
	double u1 = 1.0 - bench_rng_uniform(r), u2 = bench_rng_uniform(r); /* u1 in (0, 1] */
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Marsaglia and Tsang; shapes below 1 through Gamma(a) = Gamma(a + 1) * U^(1/a). */
double bench_rng_gamma(struct bench_rng *r, double shape)
{
	if (shape < 1.0) {
		double u = 1.0 - bench_rng_uniform(r);
		return bench_rng_gamma(r, shape + 1.0) * pow(u, 1.0 / shape);
	}
	double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		double x = bench_rng_normal(r), v = 1.0 + c * x;
		if (v <= 0)
			continue;
		v = v * v * v;
		double u = 1.0 - bench_rng_uniform(r);
		if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
			return d * v;
	}
}

/* ---- the run of one point ---------------------------------------------------------------- */

struct bench_run {
	const struct bench_config *cfg;
	const struct bench_workload *wl;
	struct event_base *base;
	struct bench_target *target;
	struct bench_stats *stats;
	uint32_t concurrency;
	double rate;
	struct bench_rng rng;
	uint64_t issued, finished, errors, out_tokens, in_flight;
	double t0, next_arrival;
	bool stopping;                 /* no more requests are sent */
	int failure;                   /* a negative errno that ends the run early */
	struct bench_call *calls;      /* in flight */
	struct event *refill_ev, *arrival_ev, *stop_ev, *progress_ev, *sigint_ev;
	int interrupts;
};

static bool can_issue(struct bench_run *run)
{
	const struct bench_config *cfg = run->cfg;

	if (run->stopping || run->failure)
		return false;
	if (cfg->requests && run->issued >= cfg->requests)
		return false;
	if (cfg->duration_s > 0 && bench_now() - run->t0 >= cfg->duration_s)
		return false;
	return true;
}

static void maybe_finish(struct bench_run *run)
{
	if (!can_issue(run)) {
		run->stopping = true;
		if (run->arrival_ev)
			event_del(run->arrival_ev);
		if (!run->in_flight)
			event_base_loopexit(run->base, NULL);
	}
}

static void call_free(struct bench_call *call)
{
	if (!call)
		return;
	free(call->itl);
	free(call);
}

static void unlink_call(struct bench_run *run, struct bench_call *call)
{
	if (call->prev)
		call->prev->next = call->next;
	else
		run->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
}

/* Sends the next request. A request the target refuses counts as sent and failed. */
static void issue(struct bench_run *run)
{
	struct bench_call *call = calloc(1, sizeof(*call));
	struct bench_record failed = { 0 };
	int rc = -ENOMEM;

	run->issued++;
	if (call) {
		call->run = run;
		call->item = &run->wl->items[(run->issued - 1) % run->wl->n];
		call->rec.start = bench_now();
		call->rec.input_tokens = call->item->input_len;
		call->next = run->calls;
		if (run->calls)
			run->calls->prev = call;
		run->calls = call;
		run->in_flight++;
		rc = run->target->ops->submit(run->target, call);
		if (rc == 0)
			return;
		run->in_flight--;
		unlink_call(run, call);
		call_free(call);
	}
	failed.start = failed.end = bench_now();
	snprintf(failed.status, sizeof(failed.status), "SUBMIT_FAILED");
	run->finished++;
	run->errors++;
	if (bench_stats_add(run->stats, &failed, NULL, 0) < 0)
		run->failure = -ENOMEM;
}

void bench_call_tokens(struct bench_call *call, uint32_t n)
{
	double now = bench_now();

	if (!n)
		return;
	if (!call->rec.first) {
		call->rec.first = now;
	} else {
		if (call->n_itl == call->cap_itl) {
			size_t cap = call->cap_itl ? call->cap_itl * 2 : 64;
			double *ni = realloc(call->itl, cap * sizeof(*ni));
			if (ni) {
				call->itl = ni;
				call->cap_itl = cap;
			}
		}
		if (call->n_itl < call->cap_itl)
			call->itl[call->n_itl++] = now - call->last_token;
	}
	call->last_token = now;
	call->rec.output_tokens += n;
	call->rec.chunks++;
	call->run->out_tokens += n;
}

void bench_call_done(struct bench_call *call, const char *status, uint32_t usage_prompt_tokens,
                     uint32_t usage_completion_tokens)
{
	struct bench_run *run = call->run;

	call->rec.end = bench_now();
	call->rec.ok = strcmp(status, "OK") == 0;
	snprintf(call->rec.status, sizeof(call->rec.status), "%s", status);
	if (usage_prompt_tokens)
		call->rec.input_tokens = usage_prompt_tokens;
	call->rec.usage_output_tokens = usage_completion_tokens;
	if (bench_stats_add(run->stats, &call->rec, call->itl, call->n_itl) < 0)
		run->failure = -ENOMEM;
	run->finished++;
	if (!call->rec.ok)
		run->errors++;
	run->in_flight--;
	unlink_call(run, call);
	call_free(call);
	/* New requests start from the loop, not from inside the target's callback. */
	event_active(run->refill_ev, EV_TIMEOUT, 0);
}

/* ---- events ------------------------------------------------------------------------------ */

static void on_refill(evutil_socket_t fd, short what, void *arg)
{
	struct bench_run *run = arg;

	if (!run->rate)
		while (run->in_flight < run->concurrency && can_issue(run))
			issue(run);
	maybe_finish(run);
}

static double next_gap(struct bench_run *run)
{
	double shape = run->cfg->burstiness > 0 ? run->cfg->burstiness : 1.0;
	/* Gamma(shape, scale = 1 / (rate * shape)) has mean 1 / rate; shape 1 is exponential. */
	return bench_rng_gamma(&run->rng, shape) / (run->rate * shape);
}

static void arm_arrival(struct bench_run *run)
{
	double wait = run->next_arrival - bench_now();
	struct timeval tv;

	if (wait < 0)
		wait = 0;
	tv.tv_sec = (time_t)wait;
	tv.tv_usec = (suseconds_t)((wait - (double)tv.tv_sec) * 1e6);
	event_add(run->arrival_ev, &tv);
}

static void on_arrival(evutil_socket_t fd, short what, void *arg)
{
	struct bench_run *run = arg;

	/* Catch up on arrivals that fell due while the loop was busy. */
	while (can_issue(run) && run->next_arrival <= bench_now()) {
		issue(run);
		run->next_arrival += next_gap(run);
	}
	if (can_issue(run))
		arm_arrival(run);
	maybe_finish(run);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct bench_run *run = arg;

	run->stopping = true;
	maybe_finish(run);
}

static void on_progress(evutil_socket_t fd, short what, void *arg)
{
	struct bench_run *run = arg;

	bench_report_progress(run->cfg, run->issued, run->finished, run->in_flight, run->errors,
	                      run->out_tokens, bench_now() - run->t0, false);
}

static void on_sigint(evutil_socket_t fd, short what, void *arg)
{
	struct bench_run *run = arg;

	if (++run->interrupts >= 2) {
		fprintf(stderr, "\ninferd-bench: interrupted again: abandoning %llu requests\n",
		        (unsigned long long)run->in_flight);
		run->failure = -EINTR;
		event_base_loopbreak(run->base);
		return;
	}
	fprintf(stderr, "\ninferd-bench: interrupted: sending no more requests, waiting for %llu "
	        "(Ctrl-C again to quit)\n", (unsigned long long)run->in_flight);
	run->stopping = true;
	maybe_finish(run);
}

int bench_run_point(const struct bench_config *cfg, const struct bench_workload *wl,
                    uint32_t concurrency, double rate, struct bench_stats *stats,
                    char *err, size_t errlen)
{
	struct bench_run run = { .cfg = cfg, .wl = wl, .stats = stats, .concurrency = concurrency,
	                         .rate = rate };
	struct timeval tv;
	int rc = -ENOMEM;

	bench_rng_seed(&run.rng, cfg->seed ^ 0xa55a5aa5ull);
	if (!(run.base = event_base_new()))
		goto fail;
	run.refill_ev = event_new(run.base, -1, 0, on_refill, &run);
	run.stop_ev = evtimer_new(run.base, on_stop, &run);
	run.arrival_ev = rate > 0 ? evtimer_new(run.base, on_arrival, &run) : NULL;
	run.progress_ev = event_new(run.base, -1, EV_PERSIST, on_progress, &run);
	run.sigint_ev = evsignal_new(run.base, SIGINT, on_sigint, &run);
	if (!run.refill_ev || !run.stop_ev || (rate > 0 && !run.arrival_ev) || !run.progress_ev ||
	    !run.sigint_ev)
		goto fail;
	rc = cfg->openai_url ? bench_openai_new(run.base, cfg, &run.target, err, errlen)
	                     : bench_native_new(run.base, cfg, &run.target, err, errlen);
	if (rc < 0)
		goto cleanup;
	evsignal_add(run.sigint_ev, NULL);
	run.t0 = bench_now();
	if (cfg->duration_s > 0) {
		tv.tv_sec = (time_t)cfg->duration_s;
		tv.tv_usec = (suseconds_t)((cfg->duration_s - (double)tv.tv_sec) * 1e6);
		evtimer_add(run.stop_ev, &tv);
	}
	if (cfg->progress) {
		tv.tv_sec = 0;
		tv.tv_usec = 250000;
		event_add(run.progress_ev, &tv);
	}
	if (rate > 0) {
		run.next_arrival = run.t0; /* the first request goes at once */
		arm_arrival(&run);
	} else {
		event_active(run.refill_ev, EV_TIMEOUT, 0);
	}
	if (event_base_dispatch(run.base) < 0) {
		snprintf(err, errlen, "the event loop failed");
		rc = -EIO;
		goto cleanup;
	}
	if (cfg->progress)
		bench_report_progress(cfg, run.issued, run.finished, run.in_flight, run.errors,
		                      run.out_tokens, bench_now() - run.t0, true);
	rc = run.failure;
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	else if (rc == -EINTR)
		snprintf(err, errlen, "interrupted");
	goto cleanup;
fail:
	snprintf(err, errlen, "cannot set up the event loop");
	rc = -ENOMEM;
cleanup:
	if (run.target)
		run.target->ops->free(run.target); /* abandons calls in flight without callbacks */
	while (run.calls) {
		struct bench_call *c = run.calls;
		unlink_call(&run, c);
		call_free(c);
	}
	if (run.sigint_ev)
		event_free(run.sigint_ev);
	if (run.progress_ev)
		event_free(run.progress_ev);
	if (run.arrival_ev)
		event_free(run.arrival_ev);
	if (run.stop_ev)
		event_free(run.stop_ev);
	if (run.refill_ev)
		event_free(run.refill_ev);
	if (run.base)
		event_base_free(run.base);
	return rc;
}
