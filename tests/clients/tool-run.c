/* Helpers of the command-line client tests. */
#include "tool-run.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *tr_inferctl(void)
{
	const char *bin = getenv("INFERCTL_BIN");
	cr_assert_not_null(bin, "INFERCTL_BIN is not set (run the tests through meson test)");
	return bin;
}

const char *tr_bench(void)
{
	const char *bin = getenv("INFERD_BENCH_BIN");
	cr_assert_not_null(bin, "INFERD_BENCH_BIN is not set (run the tests through meson test)");
	return bin;
}

static void slurp(int fd, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	lseek(fd, 0, SEEK_SET);
	while (got < len - 1 && (n = read(fd, buf + got, len - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
}

void tr_run(const char *const argv[], const char *stdin_text, struct tool_result *r)
{
	char out_path[] = "/tmp/inferd-tool-out-XXXXXX", err_path[] = "/tmp/inferd-tool-err-XXXXXX";
	char in_path[] = "/tmp/inferd-tool-in-XXXXXX";
	int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path), in_fd = mkstemp(in_path);
	int status = 0;
	pid_t pid;

	cr_assert(out_fd >= 0 && err_fd >= 0 && in_fd >= 0);
	if (stdin_text)
		cr_assert_eq(write(in_fd, stdin_text, strlen(stdin_text)), (ssize_t)strlen(stdin_text));
	lseek(in_fd, 0, SEEK_SET);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		dup2(in_fd, STDIN_FILENO);
		dup2(out_fd, STDOUT_FILENO);
		dup2(err_fd, STDERR_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	slurp(out_fd, r->out, sizeof(r->out));
	slurp(err_fd, r->err, sizeof(r->err));
	close(out_fd);
	close(err_fd);
	close(in_fd);
	unlink(out_path);
	unlink(err_path);
	unlink(in_path);
}

json_t *tr_json(const struct tool_result *r)
{
	json_error_t je;
	json_t *v = json_loads(r->out, 0, &je);
	cr_assert_not_null(v, "stdout is not JSON (%s): %s\nstderr: %s", je.text, r->out, r->err);
	return v;
}

void tr_make_model(const char *dir, const char *name, const char *size_opts, char *path,
                   size_t pathlen)
{
	const char *mk = getenv("INFERD_MKMODEL");
	char cmd[1024];

	cr_assert_not_null(mk, "INFERD_MKMODEL is not set");
	snprintf(path, pathlen, "%s/%s.gguf", dir, name);
	snprintf(cmd, sizeof(cmd), "'%s' llm --out '%s' %s --seed 7 >/dev/null", mk, path,
	         size_opts);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

uint64_t tr_tokens_generated(const struct test_daemon *d)
{
	struct inferd_client *c = td_client(d, false, NULL);
	Inferd__V1__StatsRequest req = INFERD__V1__STATS_REQUEST__INIT;
	Inferd__V1__StatsReply *rep = NULL;
	char msg[256];
	int st = inferd_client_unary(c, INFERD__V1__METHOD__METHOD_STATS, &req.base,
	                             &inferd__v1__stats_reply__descriptor,
	                             (ProtobufCMessage **)&rep, NULL, msg, sizeof(msg));
	uint64_t n;

	cr_assert_eq(st, INFERD__V1__STATUS_CODE__STATUS_OK, "Stats: %s", msg);
	n = rep->tokens_generated;
	inferd__v1__stats_reply__free_unpacked(rep, NULL);
	inferd_client_free(c);
	return n;
}

static char model_dir[128];
static char http_url[64];

const char *tr_http_url(void)
{
	return http_url;
}

void tr_start_daemon(struct test_daemon *d, bool big, const char *api_key)
{
	char tiny[256], bigp[256], extra[1024], http[256];
	int port = td_free_port();

	snprintf(model_dir, sizeof(model_dir), "/tmp/inferd-test-cli-models-XXXXXX");
	cr_assert_not_null(mkdtemp(model_dir));
	tr_make_model(model_dir, "tiny", "--dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 "
	              "--vocab 512 --context 256", tiny, sizeof(tiny));
	if (big) {
		/* Slow enough per token that a generation is still running when Ctrl-C comes. */
		tr_make_model(model_dir, "big", "--dim 256 --layers 4 --heads 4 --kv-heads 4 "
		              "--ffn 768 --vocab 512 --context 2048", bigp, sizeof(bigp));
		snprintf(extra, sizeof(extra), "[model.tiny]\npath = %s\n[model.big]\npath = %s\n",
		         tiny, bigp);
	} else {
		snprintf(extra, sizeof(extra), "[model.tiny]\npath = %s\n", tiny);
	}
	/* The HTTP API on a port of its own, so that daemons of parallel tests do not collide. */
	snprintf(http, sizeof(http), "[http]\nlisten = 127.0.0.1:%d\n%s%s%s", port,
	         api_key ? "[auth]\napi_key = " : "", api_key ? api_key : "", api_key ? "\n" : "");
	snprintf(http_url, sizeof(http_url), "http://127.0.0.1:%d", port);
	cr_assert_lt(strlen(extra) + strlen(http), sizeof(extra));
	strcat(extra, http);
	td_start(d, extra, api_key);
}

void tr_stop_daemon(struct test_daemon *d)
{
	char cmd[300];

	td_cleanup(d);
	if (strncmp(model_dir, "/tmp/inferd-test-cli-models-", 28) == 0 &&
	    !strstr(model_dir, "XXXXXX")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", model_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", model_dir);
	}
}
