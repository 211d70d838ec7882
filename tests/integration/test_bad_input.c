/* Bad input: every kind gets a clear status and leaves the daemon and other calls unharmed. */
#include <criterion/criterion.h>
#include <nanomsg/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon-fixture.h"

#define STATUS(x) INFERD__V1__STATUS_CODE__STATUS_##x

static struct test_daemon d;
static int raw = -1;
static struct inferd_client *good;
static uint64_t long_call;
static bool long_done;
static int long_status, long_frames;

static int on_long(const struct inferd_reply *r, void *arg)
{
	(void)arg;
	long_frames++;
	if (r->end_of_stream) {
		long_done = true;
		long_status = r->status;
	}
	return 0;
}

/* A daemon with a small frame limit, a raw socket for the bad input, and a well-behaved client
 * with a streaming call running through all of it. */
static void setup(void)
{
	Inferd__V1__EchoRequest req = INFERD__V1__ECHO_REQUEST__INIT;
	td_start(&d, "max_frame_bytes = 4096", NULL);
	raw = td_raw_socket(d.tcp_url);
	good = td_client(&d, true, NULL);
	req.count = 5;
	req.interval_ms = 100;
	long_done = false;
	long_frames = 0;
	cr_assert_eq(inferd_client_start_msg(good, INFERD__V1__METHOD__METHOD_ECHO, &req.base, NULL,
	                                     on_long, NULL, &long_call), 0);
}

static void teardown(void)
{
	/* The well-behaved call finished normally and the daemon still answers. */
	if (good) {
		while (!long_done)
			cr_assert(inferd_client_poll(good, 1000) >= 0);
		cr_expect_eq(long_status, STATUS(OK));
		cr_expect_eq(long_frames, 5);
		Inferd__V1__HealthRequest hreq = INFERD__V1__HEALTH_REQUEST__INIT;
		ProtobufCMessage *rep = NULL;
		cr_expect_eq(inferd_client_unary(good, INFERD__V1__METHOD__METHOD_HEALTH, &hreq.base,
		                                 &inferd__v1__health_reply__descriptor, &rep, NULL,
		                                 NULL, 0), STATUS(OK));
		if (rep)
			protobuf_c_message_free_unpacked(rep, NULL);
		inferd_client_free(good);
		good = NULL;
	}
	if (raw >= 0)
		nn_close(raw);
	raw = -1;
	cr_expect_eq(td_stop(&d), 0, "the daemon exits cleanly after bad input");
	td_cleanup(&d);
}

TestSuite(bad_input, .init = setup, .fini = teardown, .timeout = 60);

static inferd_frame *expect_reply(uint32_t reqid, int status, const char *text)
{
	uint32_t got_id = 0;
	inferd_frame *f = td_raw_recv(raw, 3000, &got_id);
	cr_assert_not_null(f, "no reply to request %u", reqid);
	cr_expect_eq(got_id, reqid);
	cr_expect(f->end_of_stream);
	cr_expect_eq(f->status, status, "status %s, message '%s'", inferd_status_name(f->status),
	             f->status_message);
	cr_expect(strstr(f->status_message, text) != NULL, "message '%s' lacks '%s'",
	          f->status_message, text);
	return f;
}

Test(bad_input, undecodable_frame)
{
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x01, 0x02 };
	td_raw_send(raw, 11, junk, sizeof(junk));
	inferd_frame *f = expect_reply(11, STATUS(INVALID_ARGUMENT), "do not decode");
	cr_expect_eq(f->call_id, 0);
	inferd_frame_free(f);
}

Test(bad_input, unknown_method)
{
	inferd_frame q = INFERD_FRAME_INIT;
	q.call_id = 12;
	q.method = (Inferd__V1__Method)99;
	td_raw_send_frame(raw, 12, &q);
	inferd_frame *f = expect_reply(12, STATUS(UNIMPLEMENTED), "unknown method 99");
	cr_expect_eq(f->call_id, 12);
	inferd_frame_free(f);
}

Test(bad_input, method_without_a_model)
{
	inferd_frame q = INFERD_FRAME_INIT;
	q.call_id = 13;
	q.method = INFERD__V1__METHOD__METHOD_IMAGE_STREAM;
	td_raw_send_frame(raw, 13, &q);
	inferd_frame_free(expect_reply(13, STATUS(UNIMPLEMENTED), "ImageStream is not served"));
	/* GenerateImage is served, but this daemon has no image model. */
	q.call_id = 22;
	q.method = INFERD__V1__METHOD__METHOD_GENERATE_IMAGE;
	td_raw_send_frame(raw, 22, &q);
	inferd_frame_free(expect_reply(22, STATUS(NOT_FOUND), "serves no image model"));
	/* Generate is served, but this daemon has no model. */
	q.call_id = 21;
	q.method = INFERD__V1__METHOD__METHOD_GENERATE;
	td_raw_send_frame(raw, 21, &q);
	inferd_frame_free(expect_reply(21, STATUS(NOT_FOUND), "this daemon serves no model"));
}

Test(bad_input, oversized_frame)
{
	inferd_frame q = INFERD_FRAME_INIT;
	static uint8_t big[10000];
	q.call_id = 14;
	q.method = INFERD__V1__METHOD__METHOD_ECHO;
	q.payload.data = big;
	q.payload.len = sizeof(big);
	td_raw_send_frame(raw, 14, &q);
	inferd_frame *f = expect_reply(14, STATUS(RESOURCE_EXHAUSTED), "over the limit of 4096");
	cr_expect_eq(f->call_id, 14, "the call id is recovered from the oversized frame");
	inferd_frame_free(f);
}

Test(bad_input, missing_call_id)
{
	inferd_frame q = INFERD_FRAME_INIT;
	q.method = INFERD__V1__METHOD__METHOD_HEALTH;
	td_raw_send_frame(raw, 15, &q);
	inferd_frame_free(expect_reply(15, STATUS(INVALID_ARGUMENT), "no call_id"));
}

Test(bad_input, duplicate_call_id_in_flight)
{
	Inferd__V1__EchoRequest req = INFERD__V1__ECHO_REQUEST__INIT;
	uint8_t payload[64];
	inferd_frame q = INFERD_FRAME_INIT;

	req.count = 1;
	req.interval_ms = 300;
	q.call_id = 16;
	q.method = INFERD__V1__METHOD__METHOD_ECHO;
	q.payload.data = payload;
	q.payload.len = inferd__v1__echo_request__pack(&req, payload);
	td_raw_send_frame(raw, 16, &q);
	td_raw_send_frame(raw, 17, &q);
	inferd_frame_free(expect_reply(17, STATUS(ALREADY_EXISTS), "call id 16 is already in flight"));
	/* The first call is unaffected. */
	inferd_frame *f = expect_reply(16, STATUS(OK), "");
	cr_expect_eq(f->call_id, 16);
	inferd_frame_free(f);
}

Test(bad_input, payload_that_does_not_decode)
{
	inferd_frame q = INFERD_FRAME_INIT;
	static uint8_t junk[] = { 0x0a, 0x50, 1, 2 }; /* field 1, length 80, 2 bytes */
	q.call_id = 18;
	q.method = INFERD__V1__METHOD__METHOD_ECHO;
	q.payload.data = junk;
	q.payload.len = sizeof(junk);
	td_raw_send_frame(raw, 18, &q);
	inferd_frame_free(expect_reply(18, STATUS(INVALID_ARGUMENT), "does not decode as a Echo"));
}

/* Over twice the limit nanomsg itself drops the connection (NN_RCVMAXSIZE): no reply is
 * possible, the daemon logs it, and the other clients' calls go on (checked by teardown). */
Test(bad_input, a_frame_over_twice_the_limit_is_dropped_with_a_log_line)
{
	int bad = td_raw_socket(d.tcp_url);
	static uint8_t huge[100000];
	td_raw_send(bad, 31, huge, sizeof huge);
	bool logged = false;
	for (int i = 0; i < 50 && !logged; i++) {
		usleep(100000);
		logged = td_log_contains(&d, "closed") &&
		         td_log_contains(&d, "over twice max_frame_bytes");
	}
	cr_expect(logged, "no log line about the dropped connection");
	nn_close(bad);
}

Test(bad_input, out_of_range_arguments)
{
	Inferd__V1__EchoRequest req = INFERD__V1__ECHO_REQUEST__INIT;
	uint8_t payload[64];
	inferd_frame q = INFERD_FRAME_INIT;

	req.count = 1u << 30;
	q.call_id = 19;
	q.method = INFERD__V1__METHOD__METHOD_ECHO;
	q.payload.data = payload;
	q.payload.len = inferd__v1__echo_request__pack(&req, payload);
	td_raw_send_frame(raw, 19, &q);
	inferd_frame_free(expect_reply(19, STATUS(INVALID_ARGUMENT), "count must be at most"));
}

Test(bad_input, rejected_frames_are_counted)
{
	static const uint8_t junk[] = { 0xff, 0xff };
	td_raw_send(raw, 20, junk, sizeof(junk));
	inferd_frame_free(expect_reply(20, STATUS(INVALID_ARGUMENT), "do not decode"));
	Inferd__V1__StatsRequest req = INFERD__V1__STATS_REQUEST__INIT;
	Inferd__V1__StatsReply *s = NULL;
	cr_assert_eq(inferd_client_unary(good, INFERD__V1__METHOD__METHOD_STATS, &req.base,
	                                 &inferd__v1__stats_reply__descriptor,
	                                 (ProtobufCMessage **)&s, NULL, NULL, 0), STATUS(OK));
	cr_expect_geq(s->frames_rejected, 1);
	protobuf_c_message_free_unpacked(&s->base, NULL);
}

/* ---- API keys ---------------------------------------------------------------------------- */

static struct test_daemon kd;

static void stop_keyed(void)
{
	td_cleanup(&kd);
}

TestSuite(api_keys, .fini = stop_keyed, .timeout = 60);

static int echo_with_key(const char *key, int *frames, char *msg, size_t msglen)
{
	Inferd__V1__EchoRequest req = INFERD__V1__ECHO_REQUEST__INIT;
	struct inferd_client *c = td_client(&kd, false, key);
	uint8_t payload[64];
	int st;

	req.count = 3;
	size_t n = inferd__v1__echo_request__pack(&req, payload);
	*frames = 0;
	st = inferd_client_call(c, INFERD__V1__METHOD__METHOD_ECHO, payload, n, NULL,
	                        NULL, NULL, msg, msglen);
	inferd_client_free(c);
	return st;
}

static int count_frames(const struct inferd_reply *r, void *arg)
{
	(void)r;
	(*(int *)arg)++;
	return 0;
}

Test(api_keys, calls_without_a_valid_key_do_no_work)
{
	char msg[256];
	int frames;

	td_start(&kd, "[auth]\napi_key = correct-horse-battery", "correct-horse-battery");
	cr_expect_eq(echo_with_key(NULL, &frames, msg, sizeof(msg)), STATUS(UNAUTHENTICATED));
	cr_expect(strstr(msg, "missing API key") != NULL, "%s", msg);
	cr_expect_eq(echo_with_key("wrong-horse-battery", &frames, msg, sizeof(msg)),
	             STATUS(UNAUTHENTICATED));
	cr_expect(strstr(msg, "invalid API key") != NULL, "%s", msg);
	cr_expect_eq(echo_with_key("correct-horse-battery", &frames, msg, sizeof(msg)), STATUS(OK));

	/* Only one frame comes back to an unauthenticated Echo: nothing ran. */
	struct inferd_client *c = td_client(&kd, false, "nope-nope-nope");
	Inferd__V1__EchoRequest req = INFERD__V1__ECHO_REQUEST__INIT;
	uint8_t payload[64];
	req.count = 3;
	size_t n = inferd__v1__echo_request__pack(&req, payload);
	frames = 0;
	cr_expect_eq(inferd_client_call(c, INFERD__V1__METHOD__METHOD_ECHO, payload, n, NULL,
	                                count_frames, &frames, NULL, 0), STATUS(UNAUTHENTICATED));
	cr_expect_eq(frames, 1);
	inferd_client_free(c);

	/* Even Stats needs the key; with it, Stats shows the Echo ran once. */
	c = td_client(&kd, false, "correct-horse-battery");
	Inferd__V1__StatsRequest sreq = INFERD__V1__STATS_REQUEST__INIT;
	Inferd__V1__StatsReply *s = NULL;
	cr_assert_eq(inferd_client_unary(c, INFERD__V1__METHOD__METHOD_STATS, &sreq.base,
	                                 &inferd__v1__stats_reply__descriptor,
	                                 (ProtobufCMessage **)&s, NULL, NULL, 0), STATUS(OK));
	uint64_t echo_ok = 0, echo_unauth = 0;
	for (size_t i = 0; i < s->n_calls; i++) {
		if (!strcmp(s->calls[i]->method, "Echo") && !strcmp(s->calls[i]->status, "OK"))
			echo_ok = s->calls[i]->count;
		if (!strcmp(s->calls[i]->method, "Echo") &&
		    !strcmp(s->calls[i]->status, "UNAUTHENTICATED"))
			echo_unauth = s->calls[i]->count;
	}
	cr_expect_eq(echo_ok, 1);
	cr_expect_eq(echo_unauth, 3);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	inferd_client_free(c);
	cr_expect_eq(td_stop(&kd), 0);
}

Test(api_keys, remote_address_is_allowed_with_keys)
{
	/* With keys configured a non-loopback bind is accepted (checked with --check-config, so
	 * the test never listens beyond loopback). */
	char out[4096], path[] = "/tmp/inferd-test-keys-XXXXXX";
	int fd = mkstemp(path);
	const char *text = "[server]\nlisten = tcp://0.0.0.0:7072\n[auth]\napi_key = long-enough-key\n";
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	char *args[] = { "--config", path, "--check-config", NULL };
	cr_expect_eq(td_run_inferd(args, out, sizeof(out)), 0, "%s", out);
	cr_expect(strstr(out, "listen: tcp://0.0.0.0:7072") != NULL, "%s", out);
	unlink(path);
}
