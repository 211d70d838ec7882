/* Configuration: INI parsing, errors with line numbers, precedence, checks; API keys. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"

static char tmpdir[] = "/tmp/inferd-test-config-XXXXXX";

static void setup(void)
{
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_expect_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const char *text, mode_t mode)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
	return path;
}

TestSuite(config, .init = setup, .fini = teardown);

Test(config, defaults_listen_on_loopback_and_ipc)
{
	struct inferd_config cfg;
	char err[512];

	config_init(&cfg);
	cr_assert_eq(config_finish(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.listen.n, 2);
	cr_expect_str_eq(cfg.listen.items[0], "tcp://127.0.0.1:7070");
	cr_expect(strncmp(cfg.listen.items[1], "ipc://", 6) == 0);
	cr_expect_eq(cfg.log_level, LOG_LEVEL_INFO);
	config_fini(&cfg);
}

Test(config, reads_every_key)
{
	struct inferd_config cfg;
	char err[512];
	const char *path = write_file("a.conf",
		"# comment\n"
		"[server]\n"
		"listen = tcp://127.0.0.1:9000\n"
		"listen = ipc:///tmp/x.sock\n"
		"max_frame_bytes = 65536\n"
		"max_calls = 10\n"
		"default_deadline_ms = 1500\n"
		"drain_timeout = 2.5\n"
		"drain_linger_ms = 50\n"
		"allow_insecure_remote = yes\n"
		"[log]\n"
		"level = debug\n"
		"[auth]\n"
		"api_key = 0123456789abcdef\n", 0600);

	config_init(&cfg);
	cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_finish(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.listen.n, 2);
	cr_expect_str_eq(cfg.listen.items[0], "tcp://127.0.0.1:9000");
	cr_expect_str_eq(cfg.listen.items[1], "ipc:///tmp/x.sock");
	cr_expect_eq(cfg.max_frame_bytes, 65536);
	cr_expect_eq(cfg.max_calls, 10);
	cr_expect_eq(cfg.default_deadline_ms, 1500);
	cr_expect_float_eq(cfg.drain_timeout_s, 2.5, 1e-9);
	cr_expect_eq(cfg.drain_linger_ms, 50);
	cr_expect(cfg.allow_insecure_remote);
	cr_expect_eq(cfg.log_level, LOG_LEVEL_DEBUG);
	cr_assert_eq(cfg.api_keys.n, 1);
	cr_expect_str_eq(cfg.path, path);
	config_fini(&cfg);
}

Test(config, reads_the_dtype_overrides)
{
	struct inferd_config cfg;
	char err[512];
	const char *path = write_file("d.conf",
		"[model.a]\npath = /a.gguf\nweight_dtype = Q8_0\nkv_cache_dtype = f16\n"
		"[model.b]\npath = /b.gguf\nweight_dtype = stored\n"
		"[model.c]\npath = /c.gguf\n", 0600);

	config_init(&cfg);
	cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), 0, "%s", err);
	const struct model_config *a = config_find_model(&cfg, "a");
	const struct model_config *b = config_find_model(&cfg, "b");
	const struct model_config *c = config_find_model(&cfg, "c");
	cr_assert(a && b && c);
	cr_expect(a->convert_weights);
	cr_expect_eq(a->weight_type, DTYPE_Q8_0);
	cr_expect_eq(a->kv_type, DTYPE_F16);
	cr_expect(!b->convert_weights);
	cr_expect(!c->convert_weights);
	cr_expect_eq(c->kv_type, DTYPE_F32);
	config_fini(&cfg);
}

/* Arrays, not pointers: criterion runs each case in a fresh process (other addresses). */
struct bad_case {
	char text[128];
	char expect[128]; /* substring of the message, with the line number */
};

static struct bad_case bad_cases[] = {
	{ "[server]\nlisten = tcp://127.0.0.1:1\nfoo = 1\n", ":3: unknown key 'foo' in section [server]" },
	{ "[server]\n\n[nope]\nkey = 1\n", ":4: unknown section [nope]" },
	{ "listen = tcp://127.0.0.1:1\n", ":1: key 'listen' outside of any section" },
	{ "[server]\nmax_calls = lots\n", ":2: bad value 'lots' for server.max_calls" },
	{ "[server]\nmax_calls = -1\n", ":2: bad value" },
	{ "[server]\nlisten = http://127.0.0.1:80\n", ":2: listen address 'http://127.0.0.1:80' must start with tcp:// or ipc://" },
	{ "[log]\nlevel = loud\n", ":2: bad value 'loud' for log.level" },
	{ "[server]\nthis line has no equals\n", ":2: syntax error" },
	{ "[auth]\napi_key = short\n", ":2: api_key must be at least 8 characters" },
	{ "[server]\ndrain_timeout = nan\n", ":2: bad value" },
	{ "[server]\nmax_frame_bytes = 99999999999999999999\n", ":2: bad value" },
	{ "[http]\nlisten = 8080\n", ":2: http listen address '8080' must be HOST:PORT" },
	{ "[http]\nlisten = 127.0.0.1:0\n", ":2: http listen address" },
	{ "[http]\nenabled = maybe\n", ":2: bad value 'maybe' for http.enabled" },
	{ "[http]\nmax_connections = 0\n", ":2: bad value" },
	{ "[http]\nmetrics_key = short\n", ":2: metrics_key must be at least 8 characters" },
	{ "[http]\nbogus = 1\n", ":2: unknown key 'bogus' in section [http]" },
	{ "[model.m]\npath = /x\nchat_template = jinja\n", ":3: bad value 'jinja' for model.m.chat_template" },
	{ "[model.m]\npath = /x\nweight_dtype = q5_k\n", ":3: bad value 'q5_k' for model.m.weight_dtype" },
	{ "[model.m]\npath = /x\nkv_cache_dtype = q8_0\n", ":3: bad value 'q8_0' for model.m.kv_cache_dtype" },
};

ParameterizedTestParameters(config, rejects_bad_lines_with_line_numbers)
{
	return cr_make_param_array(struct bad_case, bad_cases, sizeof(bad_cases) / sizeof(bad_cases[0]));
}

ParameterizedTest(struct bad_case *bc, config, rejects_bad_lines_with_line_numbers)
{
	struct inferd_config cfg;
	char err[512] = "";
	const char *path = write_file("bad.conf", bc->text, 0600);

	config_init(&cfg);
	cr_expect_eq(config_load_file(&cfg, path, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, bc->expect) != NULL, "got '%s', want '%s'", err, bc->expect);
	cr_expect(strncmp(err, path, strlen(path)) == 0, "message names the file: %s", err);
	config_fini(&cfg);
}

Test(config, reads_the_http_section)
{
	struct inferd_config cfg;
	char err[512];
	const char *path = write_file("h.conf",
		"[http]\n"
		"enabled = true\n"
		"listen = 127.0.0.1:9090\n"
		"max_body_bytes = 4096\n"
		"max_header_bytes = 2048\n"
		"max_connections = 7\n"
		"timeout = 1.5\n"
		"metrics_key = metrics-key-1\n"
		"open_metrics_on_loopback = no\n"
		"[model.m]\n"
		"path = /tmp/m.gguf\n"
		"chat_template = ChatML\n", 0600);

	config_init(&cfg);
	cr_expect(cfg.http.enabled, "on by default");
	cr_expect(cfg.http.open_metrics_on_loopback);
	cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_finish(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(cfg.http.listen, "127.0.0.1:9090");
	cr_expect_eq(cfg.http.max_body_bytes, 4096);
	cr_expect_eq(cfg.http.max_header_bytes, 2048);
	cr_expect_eq(cfg.http.max_connections, 7);
	cr_expect_float_eq(cfg.http.timeout_s, 1.5, 1e-9);
	cr_expect_str_eq(cfg.http.metrics_key, "metrics-key-1");
	cr_expect(!cfg.http.open_metrics_on_loopback);
	cr_expect_str_eq(cfg.models[0].chat_template, "chatml");
	config_fini(&cfg);

	/* Defaults; a remote HTTP address needs keys, like a remote nanomsg one. */
	config_init(&cfg);
	cr_assert_eq(config_finish(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(cfg.http.listen, "127.0.0.1:8080");
	config_fini(&cfg);
	config_init(&cfg);
	cr_assert_eq(config_set(&cfg, "http", "listen", "0.0.0.0:8080", err, sizeof(err)), 0);
	cr_expect_eq(config_finish(&cfg, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "refusing to serve HTTP on 0.0.0.0:8080"), "%s", err);
	cr_assert_eq(config_set(&cfg, "http", "enabled", "off", err, sizeof(err)), 0);
	cr_expect_eq(config_finish(&cfg, err, sizeof(err)), 0, "%s", err);
	config_fini(&cfg);
}

Test(config, missing_file_is_an_error)
{
	struct inferd_config cfg;
	char err[512];
	config_init(&cfg);
	cr_expect_eq(config_load_file(&cfg, "/nonexistent/inferd.conf", err, sizeof(err)), -ENOENT);
	cr_expect(strstr(err, "/nonexistent/inferd.conf") != NULL);
	config_fini(&cfg);
}

Test(config, flags_override_the_file)
{
	/* main() applies flags through config_set after the file: the later value wins. */
	struct inferd_config cfg;
	char err[512];
	const char *path = write_file("b.conf", "[log]\nlevel = error\n", 0600);

	config_init(&cfg);
	cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), 0);
	cr_expect_eq(cfg.log_level, LOG_LEVEL_ERROR);
	cr_assert_eq(config_set(&cfg, "log", "level", "debug", err, sizeof(err)), 0);
	cr_expect_eq(cfg.log_level, LOG_LEVEL_DEBUG);
	config_fini(&cfg);
}

Test(config, refuses_remote_tcp_without_keys)
{
	struct inferd_config cfg;
	char err[512];

	config_init(&cfg);
	cr_assert_eq(config_set(&cfg, "server", "listen", "tcp://0.0.0.0:7070", err, sizeof(err)), 0);
	cr_expect_eq(config_finish(&cfg, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "not a loopback address") != NULL, "%s", err);
	cr_assert_eq(config_set(&cfg, "auth", "api_key", "a-long-secret", err, sizeof(err)), 0);
	cr_expect_eq(config_finish(&cfg, err, sizeof(err)), 0, "%s", err);
	config_fini(&cfg);

	config_init(&cfg);
	cr_assert_eq(config_set(&cfg, "server", "listen", "tcp://*:7070", err, sizeof(err)), 0);
	cr_assert_eq(config_set(&cfg, "server", "allow_insecure_remote", "true", err, sizeof(err)), 0);
	cr_expect_eq(config_finish(&cfg, err, sizeof(err)), 0, "%s", err);
	config_fini(&cfg);
}

Test(config, rejects_duplicate_listen_addresses)
{
	struct inferd_config cfg;
	char err[512];

	config_init(&cfg);
	config_set(&cfg, "server", "listen", "tcp://127.0.0.1:1", err, sizeof(err));
	config_set(&cfg, "server", "listen", "tcp://127.0.0.1:1", err, sizeof(err));
	cr_expect_eq(config_finish(&cfg, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "given twice") != NULL, "%s", err);
	config_fini(&cfg);
}

Test(config, tells_loopback_addresses)
{
	cr_expect_eq(config_url_is_loopback_tcp("tcp://127.0.0.1:7070"), 1);
	cr_expect_eq(config_url_is_loopback_tcp("tcp://127.1.2.3:1"), 1);
	cr_expect_eq(config_url_is_loopback_tcp("tcp://localhost:1"), 1);
	cr_expect_eq(config_url_is_loopback_tcp("tcp://[::1]:1"), 1);
	cr_expect_eq(config_url_is_loopback_tcp("tcp://0.0.0.0:1"), 0);
	cr_expect_eq(config_url_is_loopback_tcp("tcp://*:1"), 0);
	cr_expect_eq(config_url_is_loopback_tcp("tcp://eth0:1"), 0);
	cr_expect_eq(config_url_is_loopback_tcp("tcp://10.0.0.1:1"), 0);
	cr_expect_eq(config_url_is_loopback_tcp("tcp://127.0.0.1.evil:1"), 0);
	cr_expect_eq(config_url_is_loopback_tcp("tcp://[::]:1"), 0);
	cr_expect_eq(config_url_is_loopback_tcp("ipc:///tmp/x"), -1);
}

/* ---- API keys ---------------------------------------------------------------------------- */

Test(config, auth_accepts_only_configured_keys)
{
	const char *keys[] = { "first-secret-key", "second-secret" };
	struct auth *a;
	char err[256];

	cr_assert_eq(auth_new(keys, 2, NULL, &a, err, sizeof(err)), 0);
	cr_expect(!auth_is_open(a));
	cr_expect(auth_check(a, "first-secret-key"));
	cr_expect(auth_check(a, "second-secret"));
	cr_expect(!auth_check(a, "second-secreT"));
	cr_expect(!auth_check(a, "second-secret-and-more"));
	cr_expect(!auth_check(a, "first"));
	cr_expect(!auth_check(a, ""));
	cr_expect(!auth_check(a, NULL));
	auth_free(a);

	cr_assert_eq(auth_new(NULL, 0, NULL, &a, err, sizeof(err)), 0);
	cr_expect(auth_is_open(a));
	cr_expect(auth_check(a, NULL));
	auth_free(a);
	auth_free(NULL);
}

Test(config, constant_time_compare_is_exact)
{
	cr_expect(auth_ct_equal("abc", 3, "abc", 3));
	cr_expect(!auth_ct_equal("abd", 3, "abc", 3));
	cr_expect(!auth_ct_equal("ab", 2, "abc", 3));
	cr_expect(!auth_ct_equal("abcabc", 6, "abc", 3));
	cr_expect(!auth_ct_equal("", 0, "abc", 3));
}

Test(config, key_file_must_be_private)
{
	struct auth *a = NULL;
	char err[512];
	const char *path = write_file("keys", "# keys\n\nkey-from-the-file\n  other-key-here  \n", 0644);

	cr_expect_eq(auth_new(NULL, 0, path, &a, err, sizeof(err)), -EPERM);
	cr_expect(strstr(err, "chmod 600") != NULL, "%s", err);
	cr_expect_null(a);
	chmod(path, 0600);
	cr_assert_eq(auth_new(NULL, 0, path, &a, err, sizeof(err)), 0, "%s", err);
	cr_expect(auth_check(a, "key-from-the-file"));
	cr_expect(auth_check(a, "other-key-here"));
	cr_expect(!auth_check(a, "# keys"));
	auth_free(a);

	path = write_file("empty", "# nothing\n", 0600);
	cr_expect_eq(auth_new(NULL, 0, path, &a, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "holds no key") != NULL, "%s", err);
	cr_expect_eq(auth_new(NULL, 0, "/nonexistent/keys", &a, err, sizeof(err)), -ENOENT);
}
