/* The real daemon on loopback: methods, concurrency, deadlines, cancel, drain, start-up errors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon-fixture.h"

#define OK INFERD__V1__STATUS_CODE__STATUS_OK

static struct test_daemon d;

static void stop_daemon(void)
{
	td_cleanup(&d);
}

/* Runs a unary call; returns the status and the decoded reply. */
static int unary(struct inferd_client *c, int method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **rep)
{
	char msg[256];
	return inferd_client_unary(c, method, req, desc, rep, NULL, msg, sizeof(msg));
}

static Inferd__V1__StatsReply *get_stats(struct inferd_client *c)
{
	Inferd__V1__StatsRequest req = INFERD__V1__STATS_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	cr_assert_eq(unary(c, INFERD__V1__METHOD__METHOD_STATS, &req.base,
	                   &inferd__v1__stats_reply__descriptor, &rep), OK);
	return (Inferd__V1__StatsReply *)rep;
}

static uint64_t count_of(const Inferd__V1__StatsReply *s, const char *method, const char *status)
{
	for (size_t i = 0; i < s->n_calls; i++)
		if (!strcmp(s->calls[i]->method, method) && !strcmp(s->calls[i]->status, status))
			return s->calls[i]->count;
	return 0;
}

/* Echo calls: count frames, remember the final status. */
struct echo_result {
	int frames;
	bool done;
	int status;
	bool local;
	char message[256];
	uint64_t call_id;
};

static int on_echo(const struct inferd_reply *r, void *arg)
{
	struct echo_result *er = arg;
	if (r->payload_len || !r->end_of_stream)
		er->frames++;
	if (r->end_of_stream) {
		er->done = true;
		er->status = r->status;
		er->local = r->local;
		snprintf(er->message, sizeof(er->message), "%s", r->status_message);
	}
	return 0;
}

static void start_echo(struct inferd_client *c, uint32_t count, uint32_t interval_ms,
                       uint64_t deadline_ms, struct echo_result *er)
{
	Inferd__V1__EchoRequest req = INFERD__V1__ECHO_REQUEST__INIT;
	struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;
	req.count = count;
	req.interval_ms = interval_ms;
	req.data.data = (uint8_t *)"ping";
	req.data.len = 4;
	o.deadline_ms = deadline_ms;
	memset(er, 0, sizeof(*er));
	cr_assert_eq(inferd_client_start_msg(c, INFERD__V1__METHOD__METHOD_ECHO, &req.base, &o,
	                                     on_echo, er, &er->call_id), 0);
}

static void wait_done(struct inferd_client *c, struct echo_result *er)
{
	while (!er->done)
		cr_assert(inferd_client_poll(c, 1000) >= 0);
}

TestSuite(daemon, .fini = stop_daemon, .timeout = 60);

Test(daemon, health_answers_over_tcp_and_ipc)
{
	td_start(&d, NULL, NULL);
	for (int ipc = 0; ipc < 2; ipc++) {
		struct inferd_client *c = td_client(&d, ipc, NULL);
		Inferd__V1__HealthRequest req = INFERD__V1__HEALTH_REQUEST__INIT;
		Inferd__V1__HealthReply *rep = NULL;
		cr_assert_eq(unary(c, INFERD__V1__METHOD__METHOD_HEALTH, &req.base,
		                   &inferd__v1__health_reply__descriptor, (ProtobufCMessage **)&rep), OK);
		cr_expect_eq(rep->state, INFERD__V1__SERVING_STATE__SERVING_STATE_SERVING);
		cr_expect_str_eq(rep->version, "0.1.0");
		cr_expect(strncmp(rep->allocator, "jemalloc ", 9) == 0, "allocator %s", rep->allocator);
		cr_expect(rep->uptime_seconds >= 0);
		protobuf_c_message_free_unpacked(&rep->base, NULL);
		inferd_client_free(c);
	}
	cr_expect(td_log_contains(&d, "allocator: jemalloc"));
	cr_expect_eq(td_stop(&d), 0);
}

Test(daemon, list_models_is_empty_without_models)
{
	td_start(&d, NULL, NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	Inferd__V1__ListModelsRequest req = INFERD__V1__LIST_MODELS_REQUEST__INIT;
	Inferd__V1__ListModelsReply *rep = NULL;
	cr_assert_eq(unary(c, INFERD__V1__METHOD__METHOD_LIST_MODELS, &req.base,
	                   &inferd__v1__list_models_reply__descriptor, (ProtobufCMessage **)&rep), OK);
	cr_expect_eq(rep->n_models, 0);
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	inferd_client_free(c);
}

Test(daemon, stats_count_calls_and_bytes)
{
	td_start(&d, NULL, NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	Inferd__V1__StatsReply *before = get_stats(c);
	struct echo_result er;
	for (int i = 0; i < 5; i++) {
		start_echo(c, 2, 0, 0, &er);
		wait_done(c, &er);
		cr_expect_eq(er.status, OK);
		cr_expect_eq(er.frames, 2);
	}
	Inferd__V1__StatsReply *after = get_stats(c);
	cr_expect_eq(count_of(after, "Echo", "OK") - count_of(before, "Echo", "OK"), 5);
	cr_expect_eq(count_of(after, "Stats", "OK") - count_of(before, "Stats", "OK"), 1);
	cr_expect_eq(after->calls_in_flight, 1, "only the Stats call itself");
	cr_expect_gt(after->bytes_in, before->bytes_in);
	cr_expect_gt(after->bytes_out, before->bytes_out);
	cr_expect_geq(after->frames_out - before->frames_out, 11);
	cr_expect_gt(after->uptime_seconds, 0);
	protobuf_c_message_free_unpacked(&before->base, NULL);
	protobuf_c_message_free_unpacked(&after->base, NULL);
	inferd_client_free(c);
}

Test(daemon, thousand_calls_in_flight_over_eight_sockets, .timeout = 120)
{
	enum { N_CLIENTS = 8, PER_CLIENT = 125 };
	static struct echo_result res[N_CLIENTS][PER_CLIENT];
	struct inferd_client *clients[N_CLIENTS];

	td_start(&d, NULL, NULL);
	for (int i = 0; i < N_CLIENTS; i++) {
		clients[i] = td_client(&d, i % 2 == 1, NULL);
		for (int j = 0; j < PER_CLIENT; j++)
			start_echo(clients[i], 2, 2500, 0, &res[i][j]);
	}
	/* Every call is in flight at once: the daemon counts them all before any finishes. */
	struct inferd_client *observer = td_client(&d, false, NULL);
	uint64_t peak = 0;
	for (int tries = 0; tries < 500 && peak < N_CLIENTS * PER_CLIENT + 1; tries++) {
		for (int i = 0; i < N_CLIENTS; i++)
			inferd_client_poll(clients[i], 0);
		Inferd__V1__StatsReply *s = get_stats(observer);
		peak = s->calls_in_flight > peak ? s->calls_in_flight : peak;
		protobuf_c_message_free_unpacked(&s->base, NULL);
	}
	cr_expect_geq(peak, N_CLIENTS * PER_CLIENT + 1, "peak calls in flight %llu",
	              (unsigned long long)peak);

	for (int i = 0; i < N_CLIENTS; i++)
		while (inferd_client_in_flight(clients[i]))
			cr_assert(inferd_client_poll(clients[i], 1000) >= 0);
	for (int i = 0; i < N_CLIENTS; i++) {
		for (int j = 0; j < PER_CLIENT; j++) {
			cr_expect_eq(res[i][j].status, OK, "client %d call %d: %s", i, j,
			             res[i][j].message);
			cr_expect_eq(res[i][j].frames, 2, "client %d call %d", i, j);
		}
		inferd_client_free(clients[i]);
	}
	Inferd__V1__StatsReply *s = get_stats(observer);
	cr_expect_eq(count_of(s, "Echo", "OK"), N_CLIENTS * PER_CLIENT);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	inferd_client_free(observer);
	cr_expect_eq(td_stop(&d), 0);
}

Test(daemon, deadline_ends_a_call_with_deadline_exceeded)
{
	td_start(&d, NULL, NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct echo_result er;
	start_echo(c, 1, 5000, 200, &er);
	wait_done(c, &er);
	cr_expect_eq(er.status, INFERD__V1__STATUS_CODE__STATUS_DEADLINE_EXCEEDED, "%s", er.message);
	cr_expect(!er.local, "the daemon ended it, not the client library");
	cr_expect_eq(er.frames, 0);

	/* The daemon's default deadline applies to calls that set none. */
	td_cleanup(&d);
	inferd_client_free(c);
	td_start(&d, "default_deadline_ms = 150", NULL);
	c = td_client(&d, false, NULL);
	start_echo(c, 1, 5000, 0, &er);
	wait_done(c, &er);
	cr_expect_eq(er.status, INFERD__V1__STATUS_CODE__STATUS_DEADLINE_EXCEEDED, "%s", er.message);
	inferd_client_free(c);
}

Test(daemon, cancel_ends_a_streaming_call)
{
	td_start(&d, NULL, NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct echo_result er;
	start_echo(c, 1000, 20, 0, &er);
	while (er.frames < 3)
		cr_assert(inferd_client_poll(c, 1000) >= 0);
	cr_assert_eq(inferd_client_cancel(c, er.call_id), 0);
	wait_done(c, &er);
	cr_expect_eq(er.status, INFERD__V1__STATUS_CODE__STATUS_CANCELLED, "%s", er.message);
	cr_expect_lt(er.frames, 1000);
	cr_expect_eq(inferd_client_cancel(c, er.call_id), -ENOENT);

	/* Cancelling a call that is not in flight is NOT_FOUND. */
	Inferd__V1__CancelRequest req = INFERD__V1__CANCEL_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	req.call_id = 987654;
	cr_expect_eq(unary(c, INFERD__V1__METHOD__METHOD_CANCEL, &req.base,
	                   &inferd__v1__cancel_reply__descriptor, &rep),
	             INFERD__V1__STATUS_CODE__STATUS_NOT_FOUND);
	Inferd__V1__StatsReply *s = get_stats(c);
	cr_expect_eq(count_of(s, "Echo", "CANCELLED"), 1);
	cr_expect_eq(s->calls_in_flight, 1);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	inferd_client_free(c);
}

Test(daemon, sigterm_drains_calls_in_flight_without_losing_replies)
{
	enum { N = 20 };
	struct echo_result res[N], late;

	td_start(&d, NULL, NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	for (int i = 0; i < N; i++)
		start_echo(c, 3, 300, 0, &res[i]);
	/* Make sure the daemon holds them all before the signal. */
	struct inferd_client *obs = td_client(&d, true, NULL);
	uint64_t held = 0;
	int tries;
	for (tries = 0; tries < 500 && held < N + 1; tries++) {
		inferd_client_poll(c, 0);
		Inferd__V1__StatsReply *s = get_stats(obs);
		held = s->calls_in_flight;
		protobuf_c_message_free_unpacked(&s->base, NULL);
	}
	cr_assert_geq(held, N + 1, "%llu calls held after %d tries", (unsigned long long)held, tries);

	td_signal(&d, SIGTERM);
	/* Health says DRAINING; new work is refused with UNAVAILABLE. */
	Inferd__V1__HealthRequest hreq = INFERD__V1__HEALTH_REQUEST__INIT;
	Inferd__V1__HealthReply *h = NULL;
	for (int i = 0; i < 50; i++) {
		cr_assert_eq(unary(obs, INFERD__V1__METHOD__METHOD_HEALTH, &hreq.base,
		                   &inferd__v1__health_reply__descriptor, (ProtobufCMessage **)&h), OK);
		int draining = h->state == INFERD__V1__SERVING_STATE__SERVING_STATE_DRAINING;
		protobuf_c_message_free_unpacked(&h->base, NULL);
		if (draining)
			break;
		usleep(10000);
	}
	start_echo(obs, 1, 0, 0, &late);
	wait_done(obs, &late);
	cr_expect_eq(late.status, INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE, "%s", late.message);

	while (inferd_client_in_flight(c))
		cr_assert(inferd_client_poll(c, 1000) >= 0);
	for (int i = 0; i < N; i++) {
		cr_expect_eq(res[i].status, OK, "call %d: %s", i, res[i].message);
		cr_expect_eq(res[i].frames, 3, "call %d", i);
	}
	cr_expect_eq(td_wait(&d), 0);
	cr_expect(td_log_contains(&d, "SIGTERM: draining"));
	inferd_client_free(c);
	inferd_client_free(obs);
}

Test(daemon, drain_timeout_ends_stragglers_with_unavailable)
{
	td_start(&d, "drain_timeout = 0.3", NULL);
	struct inferd_client *c = td_client(&d, false, NULL);
	struct echo_result er;
	start_echo(c, 1, 30000, 0, &er);
	Inferd__V1__StatsReply *s = get_stats(c);
	cr_assert_eq(s->calls_in_flight, 2, "the Echo call and this Stats call");
	protobuf_c_message_free_unpacked(&s->base, NULL);
	td_signal(&d, SIGTERM);
	wait_done(c, &er);
	cr_expect_eq(er.status, INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE, "%s", er.message);
	cr_expect_eq(td_wait(&d), 0);
	inferd_client_free(c);
}

Test(daemon, second_daemon_on_the_same_address_fails_clearly)
{
	char out[4096];
	td_start(&d, NULL, NULL);
	char *args[] = { "--listen", d.tcp_url, NULL };
	cr_expect_eq(td_run_inferd(args, out, sizeof(out)), 1);
	cr_expect(strstr(out, "address already in use") != NULL, "%s", out);
	cr_expect(strstr(out, d.tcp_url) != NULL, "%s", out);
	char *args2[] = { "--listen", d.ipc_url, NULL };
	cr_expect_eq(td_run_inferd(args2, out, sizeof(out)), 1);
	cr_expect(strstr(out, "address already in use") != NULL, "%s", out);
	/* The first daemon is unharmed. */
	struct inferd_client *c = td_client(&d, true, NULL);
	Inferd__V1__StatsReply *s = get_stats(c);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	inferd_client_free(c);
	cr_expect_eq(td_stop(&d), 0);
}

Test(daemon, start_up_errors_are_clear)
{
	char out[4096];
	char *remote[] = { "--listen", "tcp://0.0.0.0:7071", NULL };
	cr_expect_eq(td_run_inferd(remote, out, sizeof(out)), 1);
	cr_expect(strstr(out, "not a loopback address") != NULL, "%s", out);

	char *bad_flag[] = { "--no-such-flag", NULL };
	cr_expect_eq(td_run_inferd(bad_flag, out, sizeof(out)), 2);
	cr_expect(strstr(out, "usage:") != NULL, "%s", out);

	char *bad_level[] = { "--log-level", "loud", NULL };
	cr_expect_eq(td_run_inferd(bad_level, out, sizeof(out)), 2);
	cr_expect(strstr(out, "bad value 'loud'") != NULL, "%s", out);

	char path[] = "/tmp/inferd-test-conf-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "[server]\nlisten = tcp://127.0.0.1:1\nbogus = 1\n", 46), 46);
	close(fd);
	char *bad_conf[] = { "--config", path, NULL };
	cr_expect_eq(td_run_inferd(bad_conf, out, sizeof(out)), 1);
	cr_expect(strstr(out, ":3: unknown key 'bogus'") != NULL, "%s", out);
	unlink(path);

	char *version[] = { "--version", NULL };
	cr_expect_eq(td_run_inferd(version, out, sizeof(out)), 0);
	cr_expect(strstr(out, "inferd 0.1.0") != NULL, "%s", out);
}

Test(daemon, sighup_reloads_the_log_level_and_limits)
{
	td_start(&d, "[log]\nlevel = info", NULL);
	FILE *f = fopen(d.conf_path, "w");
	cr_assert_not_null(f);
	fprintf(f, "[server]\nlisten = %s\nlisten = %s\nmax_frame_bytes = 4096\n"
	        "[http]\nenabled = false\n[log]\nlevel = debug\n", d.tcp_url, d.ipc_url);
	fclose(f);
	td_signal(&d, SIGHUP);
	for (int i = 0; i < 100 && !td_log_contains(&d, "log level is now debug"); i++)
		usleep(20000);
	cr_expect(td_log_contains(&d, "SIGHUP: log level is now debug"));
	cr_expect(td_log_contains(&d, "max_frame_bytes 4096"));
	/* At debug level, calls are logged. */
	struct inferd_client *c = td_client(&d, false, NULL);
	Inferd__V1__StatsReply *s = get_stats(c);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	for (int i = 0; i < 100 && !td_log_contains(&d, " Stats"); i++)
		usleep(20000);
	cr_expect(td_log_contains(&d, " Stats"));
	/* The new frame limit applies: a 10000-byte Echo is refused. */
	Inferd__V1__EchoRequest req = INFERD__V1__ECHO_REQUEST__INIT;
	static uint8_t big[10000];
	uint8_t *payload = malloc(12000);
	char msg[256];
	req.data.data = big;
	req.data.len = sizeof(big);
	size_t n = inferd__v1__echo_request__pack(&req, payload);
	cr_expect_eq(inferd_client_call(c, INFERD__V1__METHOD__METHOD_ECHO, payload, n, NULL, NULL,
	                                NULL, msg, sizeof(msg)),
	             INFERD__V1__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, "%s", msg);
	free(payload);
	inferd_client_free(c);
	cr_expect_eq(td_stop(&d), 0);
}

Test(daemon, client_spreads_calls_over_endpoints_and_reports_unreachable_ones)
{
	struct test_daemon d2;
	char err[256];
	struct inferd_client *c;

	td_start(&d, NULL, NULL);
	td_start(&d2, NULL, NULL);
	const char *urls[] = { d.tcp_url, d2.ipc_url };
	cr_assert_eq(inferd_client_new(urls, 2, NULL, &c, err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 10; i++) {
		struct echo_result er;
		start_echo(c, 1, 0, 0, &er);
		wait_done(c, &er);
		cr_expect_eq(er.status, OK);
	}
	for (int k = 0; k < 2; k++) {
		struct inferd_client *one = td_client(k ? &d2 : &d, false, NULL);
		Inferd__V1__StatsReply *s = get_stats(one);
		cr_expect_geq(count_of(s, "Echo", "OK"), 3, "daemon %d served %llu", k,
		              (unsigned long long)count_of(s, "Echo", "OK"));
		protobuf_c_message_free_unpacked(&s->base, NULL);
		inferd_client_free(one);
	}
	inferd_client_free(c);
	td_cleanup(&d2);

	/* Nothing listens on a fresh port: the call ends UNAVAILABLE, made by the library. */
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", td_free_port());
	const char *dead[] = { url };
	struct inferd_client_options o = { .connect_timeout_ms = 200 };
	cr_assert_eq(inferd_client_new(dead, 1, &o, &c, err, sizeof(err)), 0);
	struct echo_result er;
	start_echo(c, 1, 0, 0, &er);
	wait_done(c, &er);
	cr_expect_eq(er.status, INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE);
	cr_expect(er.local);
	cr_expect(strstr(er.message, url) != NULL, "%s", er.message);
	inferd_client_free(c);
}

/* ---- systemd notifications --------------------------------------------------------------- */

static bool wait_notify(int fd, const char *what, int timeout_ms)
{
	char buf[1024];
	for (int waited = 0; waited < timeout_ms; waited += 20) {
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
		if (n > 0) {
			buf[n] = '\0';
			if (strstr(buf, what))
				return true;
			continue;
		}
		usleep(20000);
	}
	return false;
}

Test(daemon, tells_systemd_ready_watchdog_and_stopping)
{
	char dir[] = "/tmp/inferd-test-notify-XXXXXX";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

	cr_assert_not_null(mkdtemp(dir));
	cr_assert(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", sa.sun_path, 1);
	setenv("WATCHDOG_USEC", "200000", 1);
	td_start(&d, NULL, NULL);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	cr_expect(wait_notify(fd, "READY=1", 2000));
	cr_expect(wait_notify(fd, "WATCHDOG=1", 2000));
	cr_expect_eq(td_stop(&d), 0);
	cr_expect(wait_notify(fd, "STOPPING=1", 2000));
	close(fd);
	unlink(sa.sun_path);
	rmdir(dir);
}

/* ---- journald ---------------------------------------------------------------------------- */

/* Starts the daemon with stderr on a file and JOURNAL_STREAM naming that file, which is how
 * systemd tells a service that stderr is the journal. */
static void start_as_under_journald(const char *extra)
{
	const char *bin = getenv("INFERD_BIN");
	struct stat st;
	char stream[64];
	FILE *f;

	cr_assert_not_null(bin, "INFERD_BIN is not set");
	memset(&d, 0, sizeof(d));
	snprintf(d.dir, sizeof(d.dir), "/tmp/inferd-test-XXXXXX");
	cr_assert_not_null(mkdtemp(d.dir));
	snprintf(d.conf_path, sizeof(d.conf_path), "%s/inferd.conf", d.dir);
	snprintf(d.log_path, sizeof(d.log_path), "%s/inferd.log", d.dir);
	snprintf(d.tcp_url, sizeof(d.tcp_url), "tcp://127.0.0.1:%d", td_free_port());
	f = fopen(d.conf_path, "w");
	cr_assert_not_null(f);
	fprintf(f, "[server]\nlisten = %s\ndrain_linger_ms = 100\n%s\n[http]\nenabled = false\n",
	        d.tcp_url, extra);
	fclose(f);
	int fd = open(d.log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	cr_assert(fd >= 0);
	cr_assert_eq(fstat(fd, &st), 0);
	snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
	         (unsigned long long)st.st_ino);
	d.pid = fork();
	cr_assert(d.pid >= 0);
	if (d.pid == 0) {
		dup2(fd, STDERR_FILENO);
		dup2(fd, STDOUT_FILENO);
		close(fd);
		setenv("JOURNAL_STREAM", stream, 1);
		execl(bin, bin, "--config", d.conf_path, (char *)NULL);
		_exit(127);
	}
	close(fd);
	for (int i = 0; i < 200 && !td_log_contains(&d, "ready (allocator"); i++)
		usleep(20000);
	cr_assert(td_log_contains(&d, "ready (allocator"), "see %s", d.log_path);
}

Test(daemon, log_lines_carry_syslog_priorities_for_journald)
{
	struct echo_result er;

	start_as_under_journald("drain_timeout = 0.3\n[log]\nlevel = debug");
	struct inferd_client *c = td_client(&d, false, NULL);
	/* A call that outlives the drain timeout: the drain ends it with a warning. */
	start_echo(c, 2, 10000, 0, &er);
	for (int i = 0; i < 100 && !td_log_contains(&d, "Echo"); i++)
		cr_assert_geq(inferd_client_poll(c, 20), 0);
	/* An error: SIGHUP with a file that no longer parses keeps the settings. */
	FILE *f = fopen(d.conf_path, "w");
	cr_assert_not_null(f);
	fprintf(f, "[server]\nmax_calls = many\n");
	fclose(f);
	td_signal(&d, SIGHUP);
	for (int i = 0; i < 100 && !td_log_contains(&d, "keeping the current settings"); i++)
		usleep(20000);
	td_signal(&d, SIGTERM);
	wait_done(c, &er);
	cr_expect_eq(er.status, INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE);
	cr_expect_eq(td_wait(&d), 0);
	inferd_client_free(c);

	cr_expect(td_log_contains(&d, "<6>inferd ") && td_log_contains(&d, " starting\n"),
	          "info: start-up");
	cr_expect(td_log_contains(&d, "<7>"), "debug: calls are logged at debug level");
	cr_expect(td_log_contains(&d, "<4>drain timeout: ending 1 calls"), "warning: drain");
	cr_expect(td_log_contains(&d, "<3>SIGHUP: keeping the current settings"), "error");
	/* Every line has a priority and no timestamp or pid of its own (journald adds those). */
	char line[4096];
	int lines = 0;
	f = fopen(d.log_path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		lines++;
		cr_expect(line[0] == '<' && strchr("3467", line[1]) && line[2] == '>',
		          "a line without a priority: %s", line);
		cr_expect(!strstr(line, "inferd["), "a line with its own pid stamp: %s", line);
	}
	fclose(f);
	cr_expect_geq(lines, 5);

	/* Not under journald (no JOURNAL_STREAM): timestamped lines with a level name. */
	char out[8192], listen[64];
	snprintf(listen, sizeof(listen), "tcp://127.0.0.1:%d", td_free_port());
	char *args[] = { "--listen", listen, "--no-http", "--model", "/nonexistent/none.gguf",
	                 NULL };
	cr_expect_neq(td_run_inferd(args, out, sizeof(out)), 0);
	cr_expect(strstr(out, "Z inferd[") && strstr(out, "] info: inferd "), "%s", out);
	cr_expect(strstr(out, "] error: "), "%s", out);
}
