/* Several daemons behind one client: calls spread over both, and when one stops (SIGTERM) the
 * client goes on with the other, without a call failing. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon-fixture.h"

#define OK INFERD__V1__STATUS_CODE__STATUS_OK

static struct test_daemon a, b;

static void cleanup(void)
{
	td_cleanup(&a);
	td_cleanup(&b);
}

TestSuite(failover, .fini = cleanup, .timeout = 120);

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int echo(struct inferd_client *c, char *msg, size_t msglen)
{
	Inferd__V1__EchoRequest req = INFERD__V1__ECHO_REQUEST__INIT;
	struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;
	ProtobufCMessage *rep = NULL;
	req.data.data = (uint8_t *)"ping";
	req.data.len = 4;
	req.count = 1;
	o.deadline_ms = 10000;
	int st = inferd_client_unary(c, INFERD__V1__METHOD__METHOD_ECHO, &req.base,
	                             &inferd__v1__echo_reply__descriptor, &rep, &o, msg, msglen);
	if (rep)
		protobuf_c_message_free_unpacked(rep, NULL);
	return st;
}

static uint64_t echoes_served(const struct test_daemon *d)
{
	struct inferd_client *c = td_client(d, false, NULL);
	Inferd__V1__StatsRequest req = INFERD__V1__STATS_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	uint64_t n = 0;
	cr_assert_eq(inferd_client_unary(c, INFERD__V1__METHOD__METHOD_STATS, &req.base,
	                                 &inferd__v1__stats_reply__descriptor, &rep, NULL, NULL, 0),
	             OK);
	Inferd__V1__StatsReply *s = (Inferd__V1__StatsReply *)rep;
	for (size_t i = 0; i < s->n_calls; i++)
		if (!strcmp(s->calls[i]->method, "Echo") && !strcmp(s->calls[i]->status, "OK"))
			n = s->calls[i]->count;
	protobuf_c_message_free_unpacked(rep, NULL);
	inferd_client_free(c);
	return n;
}

static void run_failover(bool ipc)
{
	struct inferd_client *c;
	char err[256];

	td_start(&a, NULL, NULL);
	td_start(&b, NULL, NULL);
	const char *urls[] = { ipc ? a.ipc_url : a.tcp_url, ipc ? b.ipc_url : b.tcp_url };
	cr_assert_eq(inferd_client_new(urls, 2, NULL, &c, err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(echo(c, err, sizeof(err)), OK, "call %d: %s", i, err);
	uint64_t na = echoes_served(&a), nb = echoes_served(&b);
	cr_expect_geq(na, 5, "daemon a served %llu", (unsigned long long)na);
	cr_expect_geq(nb, 5, "daemon b served %llu", (unsigned long long)nb);

	cr_expect_eq(td_stop(&a), 0, "a drains and exits 0");
	double t0 = now_s();
	for (int i = 0; i < 20; i++)
		cr_expect_eq(echo(c, err, sizeof(err)), OK, "call %d after the stop: %s", i, err);
	double took = now_s() - t0;
	cr_expect_lt(took, 5.0, "20 calls after the stop took %.1f s", took);
	cr_expect_geq(echoes_served(&b), nb + 20, "b served all of them");
	inferd_client_free(c);
}

Test(failover, calls_go_on_on_the_other_daemon_over_tcp)
{
	run_failover(false);
}

Test(failover, calls_go_on_on_the_other_daemon_over_ipc)
{
	run_failover(true);
}

static int on_final(const struct inferd_reply *r, void *arg)
{
	int *status = arg;
	if (r->end_of_stream)
		*status = r->status;
	return 0;
}

/* While a daemon drains it refuses new calls with UNAVAILABLE before doing any work: the
 * client sends such a call again to another endpoint instead of failing it. */
Test(failover, calls_refused_by_a_draining_daemon_go_to_the_other)
{
	struct inferd_client *c, *slow;
	char err[256];
	int slow_status = -1;

	td_start(&a, NULL, NULL);
	td_start(&b, NULL, NULL);
	/* A call that keeps a draining for about 2 s. */
	slow = td_client(&a, false, NULL);
	Inferd__V1__EchoRequest req = INFERD__V1__ECHO_REQUEST__INIT;
	req.count = 2;
	req.interval_ms = 2000;
	cr_assert_eq(inferd_client_start_msg(slow, INFERD__V1__METHOD__METHOD_ECHO, &req.base, NULL,
	                                     on_final, &slow_status, NULL), 0);
	cr_assert_geq(inferd_client_poll(slow, 100), 0);

	const char *urls[] = { a.tcp_url, b.tcp_url };
	cr_assert_eq(inferd_client_new(urls, 2, NULL, &c, err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(echo(c, err, sizeof(err)), OK, "%s", err);
	uint64_t nb = echoes_served(&b);
	td_signal(&a, SIGTERM);
	for (int i = 0; i < 250 && !td_log_contains(&a, "SIGTERM: draining"); i++)
		usleep(20000);
	cr_assert(td_log_contains(&a, "SIGTERM: draining"));
	for (int i = 0; i < 20; i++)
		cr_expect_eq(echo(c, err, sizeof(err)), OK, "call %d during the drain: %s", i, err);
	uint64_t nb2 = echoes_served(&b);
	cr_expect_geq(nb2, nb + 20, "b served all of them: %llu, then %llu",
	              (unsigned long long)nb, (unsigned long long)nb2);
	while (slow_status < 0)
		cr_assert_geq(inferd_client_poll(slow, 1000), 0);
	cr_expect_eq(slow_status, OK, "the drained call finished");
	cr_expect_eq(td_wait(&a), 0);
	inferd_client_free(slow);
	inferd_client_free(c);
}
