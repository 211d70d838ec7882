/* Starts and stops the real inferd binary for integration tests. */
#include "daemon-fixture.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *inferd_bin(void)
{
	const char *bin = getenv("INFERD_BIN");
	cr_assert_not_null(bin, "INFERD_BIN is not set (run the tests through meson test)");
	return bin;
}

int td_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static pid_t spawn(const char *const argv[], const char *log_path)
{
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			dup2(fd, STDOUT_FILENO);
			close(fd);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static bool answers_health(const struct test_daemon *d, const char *api_key)
{
	struct inferd_client_options co = { .api_key = api_key, .connect_timeout_ms = 300 };
	const char *url = d->tcp_url;
	struct inferd_client *c;
	char err[256];
	cr_assert_eq(inferd_client_new(&url, 1, &co, &c, err, sizeof(err)), 0, "%s", err);
	Inferd__V1__HealthRequest req = INFERD__V1__HEALTH_REQUEST__INIT;
	struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;
	ProtobufCMessage *rep = NULL;
	int st;

	o.deadline_ms = 300;
	st = inferd_client_unary(c, INFERD__V1__METHOD__METHOD_HEALTH, &req.base,
	                         &inferd__v1__health_reply__descriptor, &rep, &o, NULL, 0);
	if (rep)
		protobuf_c_message_free_unpacked(rep, NULL);
	inferd_client_free(c);
	return st == INFERD__V1__STATUS_CODE__STATUS_OK;
}

void td_start(struct test_daemon *d, const char *extra, const char *api_key)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/inferd-test-XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir));
	snprintf(d->conf_path, sizeof(d->conf_path), "%s/inferd.conf", d->dir);
	snprintf(d->log_path, sizeof(d->log_path), "%s/inferd.log", d->dir);
	snprintf(d->ipc_url, sizeof(d->ipc_url), "ipc://%s/inferd.sock", d->dir);

	for (int attempt = 0; attempt < 5; attempt++) {
		snprintf(d->tcp_url, sizeof(d->tcp_url), "tcp://127.0.0.1:%d", td_free_port());
		FILE *f = fopen(d->conf_path, "w");
		cr_assert_not_null(f);
		/* HTTP stays off unless the test configures it: parallel daemons must not all
		 * reach for the default port. */
		fprintf(f, "[server]\nlisten = %s\nlisten = %s\ndrain_linger_ms = 100\n%s\n%s",
		        d->tcp_url, d->ipc_url, extra ? extra : "",
		        extra && strstr(extra, "[http]") ? "" : "[http]\nenabled = false\n");
		fclose(f);
		const char *argv[] = { inferd_bin(), "--config", d->conf_path, NULL };
		d->pid = spawn(argv, d->log_path);
		for (int i = 0; i < 100; i++) {
			int status;
			if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
				d->pid = 0;
				break; /* exited: maybe the port was taken meanwhile; retry */
			}
			if (answers_health(d, api_key))
				return;
			sleep_ms(50);
		}
		if (d->pid) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, NULL, 0);
			d->pid = 0;
		}
	}
	cr_assert_fail("inferd did not start; see %s", d->log_path);
}

void td_signal(struct test_daemon *d, int sig)
{
	if (d->pid > 0)
		kill(d->pid, sig);
}

int td_wait(struct test_daemon *d)
{
	int status = 0;
	if (d->pid <= 0)
		return -1;
	waitpid(d->pid, &status, 0);
	d->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int td_stop(struct test_daemon *d)
{
	td_signal(d, SIGTERM);
	return td_wait(d);
}

void td_cleanup(struct test_daemon *d)
{
	char cmd[256];
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
	if (d->dir[0] && !getenv("KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", d->dir);
	}
}

bool td_log_contains(const struct test_daemon *d, const char *text)
{
	char buf[65536];
	FILE *f = fopen(d->log_path, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, text) != NULL;
}

struct inferd_client *td_client(const struct test_daemon *d, bool ipc, const char *api_key)
{
	const char *url = ipc ? d->ipc_url : d->tcp_url;
	struct inferd_client_options o = { .api_key = api_key, .client_name = "tests",
	                                   .connect_timeout_ms = 3000 };
	struct inferd_client *c;
	char err[256];

	cr_assert_eq(inferd_client_new(&url, 1, &o, &c, err, sizeof(err)), 0, "%s", err);
	/* Wait for the connection: one answered call (whatever its status) proves it. */
	Inferd__V1__HealthRequest req = INFERD__V1__HEALTH_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	int st = inferd_client_unary(c, INFERD__V1__METHOD__METHOD_HEALTH, &req.base,
	                             &inferd__v1__health_reply__descriptor, &rep, NULL, err,
	                             sizeof(err));
	cr_assert_neq(st, INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE, "%s: %s", url, err);
	if (rep)
		protobuf_c_message_free_unpacked(rep, NULL);
	return c;
}

int td_run_inferd(char *const argv_tail[], char *out, size_t outlen)
{
	char log_path[] = "/tmp/inferd-test-run-XXXXXX";
	const char *argv[32] = { inferd_bin() };
	size_t n = 1;
	int fd = mkstemp(log_path), status = 0;

	cr_assert(fd >= 0);
	close(fd);
	for (size_t i = 0; argv_tail[i] && n < 31; i++)
		argv[n++] = argv_tail[i];
	argv[n] = NULL;
	pid_t pid = spawn(argv, log_path);
	waitpid(pid, &status, 0);
	FILE *f = fopen(log_path, "r");
	size_t got = f ? fread(out, 1, outlen - 1, f) : 0;
	out[got] = '\0';
	if (f)
		fclose(f);
	unlink(log_path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- raw sockets ------------------------------------------------------------------------- */

int td_raw_socket(const char *url)
{
	int s = nn_socket(AF_SP_RAW, NN_REQ);
	int maxsize = -1;
	cr_assert(s >= 0);
	nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsize, sizeof(maxsize));
	cr_assert(nn_connect(s, url) >= 0);
	return s;
}

void td_raw_send(int sock, uint32_t reqid, const void *buf, size_t len)
{
	uint8_t hdr[4];
	inferd_wire_request_id(reqid, hdr);
	/* The connection is made in the background: retry briefly. */
	for (int i = 0; i < 300; i++) {
		if (inferd_wire_send(sock, hdr, 4, buf, len, NN_DONTWAIT) == 0)
			return;
		sleep_ms(10);
	}
	cr_assert_fail("raw send failed");
}

void td_raw_send_frame(int sock, uint32_t reqid, const inferd_frame *f)
{
	uint8_t *buf;
	size_t len;
	cr_assert_eq(inferd_frame_pack(f, &buf, &len), 0);
	td_raw_send(sock, reqid, buf, len);
	free(buf);
}

inferd_frame *td_raw_recv(int sock, int timeout_ms, uint32_t *reqid)
{
	struct inferd_wire_msg msg;
	inferd_frame *f = NULL;
	char err[128];

	nn_setsockopt(sock, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
	if (inferd_wire_recv(sock, &msg, 0) < 0)
		return NULL;
	if (reqid && msg.header_len >= 4) {
		const uint8_t *h = msg.header + msg.header_len - 4;
		*reqid = ((uint32_t)(h[0] & 0x7f) << 24) | ((uint32_t)h[1] << 16) |
		         ((uint32_t)h[2] << 8) | h[3];
	}
	inferd_frame_unpack(msg.body, msg.body_len, 0, &f, err, sizeof(err));
	inferd_wire_msg_fini(&msg);
	return f;
}
