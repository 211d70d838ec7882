/* Socket activation without systemd: the test binds the sockets, passes them to the real
 * daemon the way systemd does (fds from 3, LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) and talks
 * to the daemon through them. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-fixture.h"

#define OK INFERD__V1__STATUS_CODE__STATUS_OK

struct act_daemon {
	pid_t pid;
	char dir[64];
	char native_path[128];     /* the passed unix socket */
	char native_url[160];
	char tcp_url[64];          /* its own nanomsg listen address, for readiness */
	int http_port;             /* of the passed TCP socket, 0 when none */
	int conf_http_port;        /* [http] listen, which the passed socket replaces */
	char log_path[128];
	char model_path[128];
};

static struct act_daemon ad;

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void cleanup(void)
{
	char cmd[160];
	if (ad.pid > 0) {
		kill(ad.pid, SIGKILL);
		waitpid(ad.pid, NULL, 0);
	}
	if (ad.dir[0] && !getenv("KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ad.dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", ad.dir);
	}
	memset(&ad, 0, sizeof(ad));
}

TestSuite(activation, .fini = cleanup, .timeout = 120);

static int unix_listener(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	cr_assert_eq(listen(fd, 64), 0);
	return fd;
}

static int tcp_listener(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 64), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void make_dir(void)
{
	snprintf(ad.dir, sizeof(ad.dir), "/tmp/inferd-test-act-XXXXXX");
	cr_assert_not_null(mkdtemp(ad.dir));
	snprintf(ad.native_path, sizeof(ad.native_path), "%s/inferd.sock", ad.dir);
	snprintf(ad.native_url, sizeof(ad.native_url), "ipc://%s", ad.native_path);
	snprintf(ad.log_path, sizeof(ad.log_path), "%s/inferd.log", ad.dir);
}

static void make_model(void)
{
	const char *mk = getenv("INFERD_MKMODEL");
	char cmd[512];
	cr_assert_not_null(mk, "INFERD_MKMODEL is not set");
	snprintf(ad.model_path, sizeof(ad.model_path), "%s/tiny.gguf", ad.dir);
	snprintf(cmd, sizeof(cmd), "'%s' llm --out '%s' --dim 64 --layers 2 --heads 4 --kv-heads 2 "
	         "--ffn 128 --vocab 512 --context 256 --seed 7 >/dev/null", mk, ad.model_path);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* Execs the daemon with fds[i] passed as fd 3 + i, named by names ("native:http").
 * runtime_dir: RUNTIME_DIRECTORY for the daemon, or NULL to leave it unset. */
static void spawn(const int *fds, int n, const char *names, const char *runtime_dir, bool http)
{
	char conf[192], env_fds[16];
	const char *bin = getenv("INFERD_BIN");
	FILE *f;

	cr_assert_not_null(bin, "INFERD_BIN is not set");
	snprintf(ad.tcp_url, sizeof(ad.tcp_url), "tcp://127.0.0.1:%d", td_free_port());
	ad.conf_http_port = td_free_port();
	snprintf(conf, sizeof(conf), "%s/inferd.conf", ad.dir);
	f = fopen(conf, "w");
	cr_assert_not_null(f);
	/* The passed socket's path is also a listen address: the daemon must leave it to the
	 * relay (nanomsg would find it in use). */
	fprintf(f, "[server]\nlisten = %s\nlisten = %s\ndrain_linger_ms = 100\n"
	        "[http]\nenabled = %s\nlisten = 127.0.0.1:%d\n", ad.tcp_url, ad.native_url,
	        http ? "true" : "false", ad.conf_http_port);
	if (ad.model_path[0])
		fprintf(f, "[model.tiny]\npath = %s\n", ad.model_path);
	fclose(f);
	snprintf(env_fds, sizeof(env_fds), "%d", n);

	ad.pid = fork();
	cr_assert(ad.pid >= 0);
	if (ad.pid == 0) {
		int high[8], log = open(ad.log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		char pid[16];
		if (log >= 0) {
			dup2(log, STDERR_FILENO);
			dup2(log, STDOUT_FILENO);
			close(log);
		}
		/* Out of the way first, so that dup2 to 3, 4, ... cannot clobber one of them. */
		for (int i = 0; i < n; i++)
			high[i] = fcntl(fds[i], F_DUPFD, 100);
		for (int i = 0; i < n; i++) {
			dup2(high[i], 3 + i);
			close(high[i]);
		}
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		setenv("LISTEN_FDS", env_fds, 1);
		setenv("LISTEN_PID", pid, 1);
		setenv("LISTEN_FDNAMES", names, 1);
		if (runtime_dir)
			setenv("RUNTIME_DIRECTORY", runtime_dir, 1);
		else
			unsetenv("RUNTIME_DIRECTORY");
		execl(bin, bin, "--config", conf, (char *)NULL);
		_exit(127);
	}
	/* The daemon holds its copies now (a manager keeps its own: so does the test, below). */
}

static bool log_contains(const char *text)
{
	char buf[65536];
	FILE *f = fopen(ad.log_path, "r");
	size_t n;
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, text) != NULL;
}

static struct inferd_client *client_for(const char *url)
{
	struct inferd_client_options o = { .client_name = "tests", .connect_timeout_ms = 30000 };
	struct inferd_client *c;
	char err[256];
	cr_assert_eq(inferd_client_new(&url, 1, &o, &c, err, sizeof(err)), 0, "%s", err);
	return c;
}

static int health(struct inferd_client *c, int deadline_ms)
{
	Inferd__V1__HealthRequest req = INFERD__V1__HEALTH_REQUEST__INIT;
	struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;
	ProtobufCMessage *rep = NULL;
	char msg[256];
	o.deadline_ms = (uint64_t)deadline_ms;
	int st = inferd_client_unary(c, INFERD__V1__METHOD__METHOD_HEALTH, &req.base,
	                             &inferd__v1__health_reply__descriptor, &rep, &o, msg,
	                             sizeof(msg));
	if (rep)
		protobuf_c_message_free_unpacked(rep, NULL);
	return st;
}

static void wait_ready(void)
{
	for (int i = 0; i < 400; i++) {
		struct inferd_client_options o = { .connect_timeout_ms = 200 };
		const char *url = ad.tcp_url;
		struct inferd_client *c;
		char err[256];
		int status;
		cr_assert_eq(waitpid(ad.pid, &status, WNOHANG), 0, "inferd exited; see %s",
		             ad.log_path);
		cr_assert_eq(inferd_client_new(&url, 1, &o, &c, err, sizeof(err)), 0, "%s", err);
		int st = health(c, 200);
		inferd_client_free(c);
		if (st == OK)
			return;
		sleep_ms(50);
	}
	cr_assert_fail("inferd did not become ready; see %s", ad.log_path);
}

static int stop_daemon(void)
{
	int status = 0;
	kill(ad.pid, SIGTERM);
	waitpid(ad.pid, &status, 0);
	ad.pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- Generate ---------------------------------------------------------------------------- */

struct gen {
	bool done;
	int status;
	int tokens;
	char message[256];
};

static int on_gen(const struct inferd_reply *r, void *arg)
{
	struct gen *g = arg;
	if (r->payload_len) {
		Inferd__V1__GenerateReply *rep =
			inferd__v1__generate_reply__unpack(NULL, r->payload_len, r->payload);
		cr_assert_not_null(rep);
		g->tokens += (int)rep->n_token_ids;
		inferd__v1__generate_reply__free_unpacked(rep, NULL);
	}
	if (r->end_of_stream) {
		g->done = true;
		g->status = r->status;
		snprintf(g->message, sizeof(g->message), "%s", r->status_message);
	}
	return 0;
}

static void start_gen(struct inferd_client *c, struct gen *g)
{
	Inferd__V1__GenerateRequest req = INFERD__V1__GENERATE_REQUEST__INIT;
	Inferd__V1__SamplingParams sp = INFERD__V1__SAMPLING_PARAMS__INIT;
	memset(g, 0, sizeof(*g));
	req.model = "tiny";
	req.prompt_case = INFERD__V1__GENERATE_REQUEST__PROMPT_TEXT;
	req.text = "hello";
	req.max_tokens = 8;
	sp.ignore_eos = true;
	req.sampling = &sp;
	cr_assert_eq(inferd_client_start_msg(c, INFERD__V1__METHOD__METHOD_GENERATE, &req.base,
	                                     NULL, on_gen, g, NULL), 0);
}

static void wait_gen(struct inferd_client *c, struct gen *g)
{
	while (!g->done)
		cr_assert(inferd_client_poll(c, 1000) >= 0);
}

/* ---- HTTP -------------------------------------------------------------------------------- */

/* GET path on 127.0.0.1:port. @return the status code, or -errno when it cannot connect. */
static int http_get(int port, const char *path)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	char req[256], rep[4096];
	size_t got = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0), code = 0;
	struct timeval tv = { .tv_sec = 10 };

	cr_assert(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\n"
	                 "Connection: close\r\n\r\n", path);
	cr_assert_eq(write(fd, req, (size_t)n), n);
	for (;;) {
		ssize_t r = read(fd, rep + got, sizeof(rep) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	rep[got] = '\0';
	close(fd);
	if (sscanf(rep, "HTTP/1.%*d %d", &code) != 1)
		return 0;
	return code;
}

/* ---- tests ------------------------------------------------------------------------------- */

Test(activation, native_socket_serves_calls_made_before_and_after_readiness)
{
	struct gen early, late;

	make_dir();
	make_model();
	int fd = unix_listener(ad.native_path);
	/* A client connects before the daemon exists: its calls wait in the socket's backlog. */
	struct inferd_client *c1 = client_for(ad.native_url);
	start_gen(c1, &early);
	for (int i = 0; i < 5; i++)
		cr_assert_geq(inferd_client_poll(c1, 20), 0);
	spawn(&fd, 1, "native", ad.dir, false);
	wait_gen(c1, &early);
	cr_expect_eq(early.status, OK, "%s", early.message);
	cr_expect_eq(early.tokens, 8);
	cr_expect_eq(health(c1, 10000), OK);

	wait_ready();
	struct inferd_client *c2 = client_for(ad.native_url);
	cr_expect_eq(health(c2, 10000), OK);
	start_gen(c2, &late);
	wait_gen(c2, &late);
	cr_expect_eq(late.status, OK, "%s", late.message);
	cr_expect_eq(late.tokens, 8);

	char private_path[160];
	struct stat st;
	snprintf(private_path, sizeof(private_path), "%s/native-relay.sock", ad.dir);
	cr_expect_eq(stat(private_path, &st), 0, "the private nanomsg socket is in "
	             "RUNTIME_DIRECTORY");
	cr_expect(log_contains("socket activation: adopted 'native' (unix:"));
	cr_expect(log_contains("is the passed 'native' socket: served by the relay"));
	inferd_client_free(c1);
	inferd_client_free(c2);

	cr_expect_eq(stop_daemon(), 0);
	cr_expect(log_contains("socket activation: relayed 2 connections"));
	cr_expect_neq(stat(private_path, &st), 0, "the private socket is removed at exit");
	cr_expect_eq(stat(ad.native_path, &st), 0, "the passed socket's path is never unlinked");
	close(fd);
}

#define ECHO_SIZE ((size_t)3 << 20)

struct echo_check {
	const uint8_t *data;
	int frames, status;
};

static int on_echo(const struct inferd_reply *r, void *arg)
{
	struct echo_check *ck = arg;
	if (r->payload_len) {
		Inferd__V1__EchoReply *rep =
			inferd__v1__echo_reply__unpack(NULL, r->payload_len, r->payload);
		cr_assert_not_null(rep);
		cr_expect_eq(rep->data.len, ECHO_SIZE);
		cr_expect(rep->data.len == ECHO_SIZE &&
		          memcmp(rep->data.data, ck->data, rep->data.len) == 0, "bytes changed");
		ck->frames++;
		inferd__v1__echo_reply__free_unpacked(rep, NULL);
	}
	if (r->end_of_stream)
		ck->status = r->status;
	return 0;
}

/* Each frame is larger than the relay's buffer bound (RELAY_HIGH_WATER, 1 MiB). */
Test(activation, relay_carries_frames_larger_than_its_buffers)
{
	enum { COUNT = 2 };
	uint8_t *data = malloc(ECHO_SIZE);
	struct echo_check ck = { .data = data, .status = -1 };

	cr_assert_not_null(data);
	make_dir();
	int fd = unix_listener(ad.native_path);
	spawn(&fd, 1, "native", NULL, false);
	wait_ready();
	for (size_t i = 0; i < ECHO_SIZE; i++)
		data[i] = (uint8_t)(i * 7 + (i >> 12));
	struct inferd_client *c = client_for(ad.native_url);
	Inferd__V1__EchoRequest req = INFERD__V1__ECHO_REQUEST__INIT;
	req.data.data = data;
	req.data.len = ECHO_SIZE;
	req.count = COUNT;
	cr_assert_eq(inferd_client_start_msg(c, INFERD__V1__METHOD__METHOD_ECHO, &req.base, NULL,
	                                     on_echo, &ck, NULL), 0);
	/* A slow reader: the client holds one frame and reads no more, so the relay's buffer
	 * toward it fills and the relay stops reading the daemon; it must resume once the client
	 * reads again. (Two frames of 3 MiB fit in the daemon's 4 MiB send buffer plus the
	 * relay's, so none is dropped meanwhile.) */
	for (int i = 0; i < 10 && inferd_client_in_flight(c) && ck.frames == 0; i++)
		cr_assert(inferd_client_poll(c, 5) >= 0);
	sleep_ms(1000);
	while (ck.status < 0)
		cr_assert(inferd_client_poll(c, 1000) >= 0);
	cr_expect_eq(ck.status, OK);
	cr_expect_eq(ck.frames, COUNT);
	inferd_client_free(c);
	cr_expect(log_contains("relayed to ipc:///tmp/inferd-relay-"), "a private directory "
	          "without RUNTIME_DIRECTORY");
	cr_expect_eq(stop_daemon(), 0);
	close(fd);
	free(data);
}

Test(activation, http_socket_replaces_the_configured_address)
{
	int fds[2];

	make_dir();
	fds[0] = unix_listener(ad.native_path);
	fds[1] = tcp_listener(&ad.http_port);
	spawn(fds, 2, "native:http", ad.dir, true);
	/* Before readiness the request waits in the passed socket's backlog. */
	cr_expect_eq(http_get(ad.http_port, "/health"), 200);
	wait_ready();
	cr_expect_eq(http_get(ad.http_port, "/health"), 200);
	cr_expect_eq(http_get(ad.conf_http_port, "/health"), -ECONNREFUSED,
	             "the configured [http] listen address is not bound");
	char want[128];
	snprintf(want, sizeof(want), "socket activation: adopted 'http' (127.0.0.1:%d)",
	         ad.http_port);
	cr_expect(log_contains(want));
	cr_expect_eq(stop_daemon(), 0);
	close(fds[0]);
	close(fds[1]);
}

Test(activation, unknown_names_and_wrong_kinds_are_logged_not_fatal)
{
	char other[160];
	int fds[2], port;

	make_dir();
	snprintf(other, sizeof(other), "%s/other.sock", ad.dir);
	fds[0] = tcp_listener(&port);        /* 'native' must be a unix socket */
	fds[1] = unix_listener(other);       /* a name the daemon does not know */
	spawn(fds, 2, "native:bogus", ad.dir, false);
	wait_ready();
	cr_expect(log_contains("the socket named 'native' (fd 3) is not a listening AF_UNIX "
	                       "stream socket"));
	cr_expect(log_contains("socket 'bogus' (fd 4) not used"));
	/* Nothing was adopted: nanomsg binds the configured ipc address itself. */
	struct inferd_client *c = client_for(ad.native_url);
	cr_expect_eq(health(c, 10000), OK);
	inferd_client_free(c);
	cr_expect_eq(stop_daemon(), 0);
	close(fds[0]);
	close(fds[1]);
}
