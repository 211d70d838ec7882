/* The daemon's loop: listeners, signals, drain, watchdog, statistics. */
#include "server.h"

#include <errno.h>
#include <event2/thread.h>
#include <jemalloc/jemalloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_probe.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "server-internal.h"

double server_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void server_stats_count(struct inferd_server *srv, int method, int status)
{
	int m = method >= 0 && method < STATS_METHOD_SLOTS - 1 ? method : STATS_METHOD_SLOTS - 1;
	int s = status >= 0 && status < STATS_STATUS_SLOTS ? status
	                                                    : INFERD__V1__STATUS_CODE__STATUS_UNKNOWN;
	srv->stats.calls[m][s]++;
	srv->stats.calls_total++;
}

/* ---- drain ------------------------------------------------------------------------------- */

static void on_linger_done(evutil_socket_t fd, short what, void *arg)
{
	struct inferd_server *srv = arg;
	(void)fd;
	(void)what;
	event_base_loopexit(srv->base, NULL);
}

/* Every reply is handed to nanomsg; give its I/O threads a moment to write them out before
 * the sockets close (nanomsg 1.x has no working NN_LINGER). */
static void start_linger(struct inferd_server *srv)
{
	struct timeval tv = {
		.tv_sec = srv->cfg->drain_linger_ms / 1000,
		.tv_usec = (suseconds_t)(srv->cfg->drain_linger_ms % 1000) * 1000,
	};
	if (srv->state == SERVER_STATE_LINGERING)
		return;
	srv->state = SERVER_STATE_LINGERING;
	log_info("all calls finished; closing");
	if (!srv->linger_ev)
		srv->linger_ev = evtimer_new(srv->base, on_linger_done, srv);
	if (!srv->linger_ev || evtimer_add(srv->linger_ev, &tv) < 0)
		event_base_loopexit(srv->base, NULL);
}

void server_call_ended(struct inferd_server *srv)
{
	if (srv->state == SERVER_STATE_DRAINING && srv->calls.count == 0 &&
	    !http_server_busy(srv->http))
		start_linger(srv);
}

static void abort_call(struct call *c, void *arg)
{
	(void)arg;
	call_finish(c, INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE, NULL,
	            "the daemon shut down before the call finished");
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct inferd_server *srv = arg;
	(void)fd;
	(void)what;
	log_warn("drain timeout: ending %zu calls still in flight with UNAVAILABLE",
	         srv->calls.count);
	call_table_foreach(&srv->calls, abort_call, NULL);
	http_server_abort_all(srv->http);
	start_linger(srv); /* in case no call was left to trigger it */
}

static void start_drain(struct inferd_server *srv, const char *why)
{
	double t = srv->limits.drain_timeout_s;
	struct timeval tv = { .tv_sec = (time_t)t, .tv_usec = (suseconds_t)((t - (time_t)t) * 1e6) };

	if (srv->state != SERVER_STATE_SERVING) {
		/* A second signal: stop waiting. */
		if (srv->state == SERVER_STATE_DRAINING) {
			log_warn("%s again: not waiting for calls in flight", why);
			on_drain_timeout(-1, 0, srv);
		}
		return;
	}
	srv->state = SERVER_STATE_DRAINING;
	log_info("%s: draining, %zu calls in flight (drain_timeout = %.1f s)", why, srv->calls.count,
	         t);
	notify_stopping("draining");
	if (srv->calls.count == 0 && !http_server_busy(srv->http)) {
		start_linger(srv);
		return;
	}
	srv->drain_ev = evtimer_new(srv->base, on_drain_timeout, srv);
	if (!srv->drain_ev || evtimer_add(srv->drain_ev, &tv) < 0)
		on_drain_timeout(-1, 0, srv);
}

/* ---- signals ----------------------------------------------------------------------------- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct inferd_server *srv = arg;
	(void)what;

	if (sig == SIGTERM || sig == SIGINT) {
		start_drain(srv, sig == SIGTERM ? "SIGTERM" : "SIGINT");
		return;
	}
	/* SIGHUP: re-read the config file and apply its log level and limits. */
	if (!srv->cfg->path) {
		log_info("SIGHUP: no config file to reload");
		return;
	}
	struct inferd_config fresh;
	char err[512];
	config_init(&fresh);
	if (config_load_file(&fresh, srv->cfg->path, err, sizeof(err)) < 0) {
		log_error("SIGHUP: keeping the current settings: %s", err);
	} else {
		log_set_level(fresh.log_level);
		srv->limits = (struct server_limits){
			.max_frame_bytes = fresh.max_frame_bytes,
			.max_calls = fresh.max_calls,
			.default_deadline_ms = fresh.default_deadline_ms,
			.drain_timeout_s = fresh.drain_timeout_s,
		};
		for (size_t i = 0; i < srv->n_listeners; i++)
			listener_set_max_frame(&srv->listeners[i], fresh.max_frame_bytes);
		log_info("SIGHUP: log level is now %s; max_calls %u, max_frame_bytes %zu, "
		         "default_deadline_ms %llu, drain_timeout %.1f s",
		         log_level_name(fresh.log_level), fresh.max_calls, fresh.max_frame_bytes,
		         (unsigned long long)fresh.default_deadline_ms, fresh.drain_timeout_s);
	}
	config_fini(&fresh);
}

static void on_broken_check(evutil_socket_t fd, short what, void *arg)
{
	struct inferd_server *srv = arg;
	(void)fd;
	(void)what;
	for (size_t i = 0; i < srv->n_listeners; i++)
		listener_check_broken(&srv->listeners[i]);
	peers_check(srv);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	notify_watchdog();
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void read_allocator(struct inferd_server *srv)
{
	const char *version = NULL;
	size_t sz = sizeof(version);

	if (mallctl("version", (void *)&version, &sz, NULL, 0) == 0 && version)
		snprintf(srv->allocator, sizeof(srv->allocator), "jemalloc %s", version);
	else
		snprintf(srv->allocator, sizeof(srv->allocator), "unknown");
}

/* Which compute backends this build has and which devices it sees. */
static void log_backends(void)
{
	struct cuda_device_info dev[8];
	char why[256];
	int n = cuda_probe(dev, 8, why, sizeof(why));

	if (n < 0) {
		log_info("backends: cpu%s; running on the CPU (%s)", cuda_built() ? ", cuda" : "", why);
		return;
	}
	if (n == 0) {
		log_info("backends: cpu, cuda; no CUDA device visible: running on the CPU");
		return;
	}
	for (int i = 0; i < n && i < 8; i++)
		log_info("CUDA device %d: %s, compute capability %d.%d, %.1f GiB, %d SMs", i,
		         dev[i].name, dev[i].major, dev[i].minor,
		         (double)dev[i].memory_bytes / (1 << 30), dev[i].multiprocessors);
	log_info("backends: cpu, cuda; the LLM path still runs on the CPU (the CUDA backend's "
	         "kernels are not built yet)");
}

int inferd_server_new(const struct inferd_config *cfg, struct inferd_server **out, char *err,
                      size_t errlen)
{
	struct inferd_server *srv = calloc(1, sizeof(*srv));
	int rc = -ENOMEM;

	*out = NULL;
	if (!srv) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	srv->cfg = cfg;
	srv->limits = (struct server_limits){
		.max_frame_bytes = cfg->max_frame_bytes,
		.max_calls = cfg->max_calls,
		.default_deadline_ms = cfg->default_deadline_ms,
		.drain_timeout_s = cfg->drain_timeout_s,
	};
	srv->started = server_now();
	srv->state = SERVER_STATE_SERVING;
	read_allocator(srv);
	if (call_table_init(&srv->calls) < 0)
		goto fail_msg;
	/* Model workers wake the loop from their threads (event_active). */
	if (evthread_use_pthreads() < 0)
		goto fail_msg;
	srv->base = event_base_new();
	if (!srv->base)
		goto fail_msg;
	rc = auth_new((const char *const *)cfg->api_keys.items, cfg->api_keys.n, cfg->api_key_file,
	              &srv->auth, err, errlen);
	if (rc < 0)
		goto fail;
	log_backends();
	/* Models load before the sockets open: ready means ready to generate. */
	rc = models_open(srv, &srv->models, &srv->n_models, err, errlen);
	if (rc < 0)
		goto fail;
	rc = images_open(srv, &srv->images, &srv->n_images, err, errlen);
	if (rc < 0)
		goto fail;
	srv->listeners = calloc(cfg->listen.n, sizeof(*srv->listeners));
	if (!srv->listeners)
		goto fail_msg;
	for (size_t i = 0; i < cfg->listen.n; i++) {
		rc = listener_open(&srv->listeners[i], srv, cfg->listen.items[i], err, errlen);
		if (rc < 0)
			goto fail;
		srv->n_listeners++;
	}
	if (metrics_new(&srv->metrics) < 0)
		goto fail_msg;
	if (cfg->http.enabled && (rc = http_server_new(srv, &srv->http, err, errlen)) < 0)
		goto fail;
	srv->sig_term = evsignal_new(srv->base, SIGTERM, on_signal, srv);
	srv->sig_int = evsignal_new(srv->base, SIGINT, on_signal, srv);
	srv->sig_hup = evsignal_new(srv->base, SIGHUP, on_signal, srv);
	if (!srv->sig_term || !srv->sig_int || !srv->sig_hup || evsignal_add(srv->sig_term, NULL) < 0 ||
	    evsignal_add(srv->sig_int, NULL) < 0 || evsignal_add(srv->sig_hup, NULL) < 0) {
		rc = -ENOMEM;
		goto fail_msg;
	}
	*out = srv;
	return 0;

fail_msg:
	snprintf(err, errlen, "out of memory setting up the daemon");
fail:
	inferd_server_free(srv);
	return rc;
}

void inferd_server_free(struct inferd_server *srv)
{
	if (!srv)
		return;
	/* Calls still running (only when run() was never called or failed) end silently. */
	call_table_foreach(&srv->calls, abort_call, NULL);
	http_server_free(srv->http); /* before the models: it abandons its generations */
	for (size_t i = 0; i < srv->n_listeners; i++)
		listener_close(&srv->listeners[i]);
	free(srv->listeners);
	struct event *evs[] = { srv->sig_term, srv->sig_int, srv->sig_hup, srv->drain_ev,
	                        srv->linger_ev, srv->watchdog_ev, srv->broken_ev };
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_free(evs[i]);
	images_close(srv->images, srv->n_images);
	models_close(srv->models, srv->n_models);
	metrics_free(srv->metrics);
	auth_free(srv->auth);
	if (srv->base)
		event_base_free(srv->base);
	call_table_fini(&srv->calls);
	free(srv);
}

int inferd_server_run(struct inferd_server *srv)
{
	char status[256];
	uint64_t wd = notify_watchdog_usec();

	if (wd) {
		struct timeval tv = { .tv_sec = (time_t)(wd / 2000000),
		                      .tv_usec = (suseconds_t)(wd / 2 % 1000000) };
		srv->watchdog_ev = event_new(srv->base, -1, EV_PERSIST, on_watchdog, srv);
		if (srv->watchdog_ev)
			event_add(srv->watchdog_ev, &tv);
	}
	struct timeval second = { .tv_sec = 1, .tv_usec = 0 };
	srv->broken_ev = event_new(srv->base, -1, EV_PERSIST, on_broken_check, srv);
	if (srv->broken_ev)
		event_add(srv->broken_ev, &second);
	for (size_t i = 0; i < srv->n_listeners; i++)
		log_info("listening on %s", srv->listeners[i].url);
	log_info("ready (allocator: %s, API keys: %s)", srv->allocator,
	         auth_is_open(srv->auth) ? "none" : "required");
	snprintf(status, sizeof(status), "serving on %zu address%s", srv->n_listeners,
	         srv->n_listeners == 1 ? "" : "es");
	notify_ready(status);
	if (event_base_dispatch(srv->base) < 0) {
		log_error("event loop failed");
		return 1;
	}
	log_info("stopped after %.1f s: %llu calls served", server_now() - srv->started,
	         (unsigned long long)srv->stats.calls_total);
	return 0;
}
