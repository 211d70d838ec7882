/* Several daemons behind one client: calls spread over both, and when one stops (SIGTERM) the
 * client goes on with the other, without a call failing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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
