/* inferd: the inference server daemon. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "config.h"
#include "cuda_probe.h"
#include "inferd-config.h"
#include "log.h"
#include "models.h"
#include "native_activation.h"
#include "server-internal.h"
#include "server.h"

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: inferd [OPTION]...\n"
	        "Serves LLMs and image models over nanomsg (protobuf frames).\n"
	        "\n"
	        "  -c, --config FILE      read settings from an INI file (see the README and\n"
	        "                         /etc/inferd/inferd.conf)\n"
	        "  -l, --listen URL       listen on a nanomsg address, tcp://HOST:PORT or ipc://PATH;\n"
	        "                         repeatable; replaces the file's and the default addresses\n"
	        "                         (default: %s and ipc://$XDG_RUNTIME_DIR/inferd.sock)\n"
	        "  -m, --model [NAME=]PATH serve the model at PATH as NAME: a GGUF file (LLM) or a\n"
	        "                         diffusers folder (image model); NAME defaults to the file or\n"
	        "                         folder name without extension; repeatable\n"
	        "      --http HOST:PORT   serve the HTTP API (OpenAI-compatible) there (default: %s)\n"
	        "      --no-http          do not serve the HTTP API\n"
	        "      --log-level LEVEL  error, warn, info or debug (default: info)\n"
	        "      --check-config     check the configuration, print it and exit\n"
	        "      --tune NAME        measure nano-batching for model NAME on this machine, write\n"
	        "                         its profile (PATH.tune) and exit\n"
	        "  -V, --version          print the version and exit\n"
	        "  -h, --help             print this help and exit\n"
	        "\n"
	        "Signals: SIGTERM/SIGINT drain calls in flight and exit; SIGHUP re-reads the file's log\n"
	        "level and [server] limits (max_frame_bytes, max_calls, default_deadline_ms,\n"
	        "drain_timeout).\n"
	        "Socket activation (LISTEN_FDS): a unix stream socket named 'native' is relayed to\n"
	        "the nanomsg endpoint; a stream socket named 'http' serves the HTTP API.\n",
	        CONFIG_DEFAULT_TCP, CONFIG_DEFAULT_HTTP);
}

static void print_config(const struct inferd_config *cfg)
{
	printf("config file: %s\n", cfg->path ? cfg->path : "(none)");
	for (size_t i = 0; i < cfg->listen.n; i++)
		printf("listen: %s\n", cfg->listen.items[i]);
	printf("log level: %s\n", log_level_name(cfg->log_level));
	printf("max_frame_bytes: %zu\nmax_calls: %u\ndefault_deadline_ms: %llu\n"
	       "drain_timeout: %.1f s\n", cfg->max_frame_bytes, cfg->max_calls,
	       (unsigned long long)cfg->default_deadline_ms, cfg->drain_timeout_s);
	printf("http: %s\n", cfg->http.enabled ? cfg->http.listen : "off");
	printf("api keys: %zu in the file%s\n", cfg->api_keys.n,
	       cfg->api_key_file ? ", plus a key file" : "");
	for (size_t i = 0; i < cfg->n_models; i++) {
		const struct model_config *m = &cfg->models[i];
		printf("model %s: %s (policy %s, max_batched_tokens %u, max_sequences %u, kv_blocks "
		       "%u x %u)\n", m->name, m->path, model_policy_name(m->policy),
		       m->max_batched_tokens, m->max_sequences, m->kv_blocks, m->kv_block_size);
	}
}

int main(int argc, char **argv)
{
	enum { OPT_TUNE = 300, OPT_LOG_LEVEL = 256, OPT_CHECK, OPT_HTTP, OPT_NO_HTTP };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "model", required_argument, NULL, 'm' },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "tune", required_argument, NULL, OPT_TUNE },
		{ "http", required_argument, NULL, OPT_HTTP },
		{ "no-http", no_argument, NULL, OPT_NO_HTTP },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct inferd_config cfg;
	struct strlist flag_listen = { 0 }, flag_models = { 0 };
	const char *config_path = NULL, *flag_level = NULL, *flag_http = NULL;
	int no_http = 0;
	struct inferd_server *srv = NULL;
	struct native_activation *native = NULL;
	char err[512];
	const char *tune = NULL;
	int check = 0, c, rc = 1;

	config_init(&cfg);
	while ((c = getopt_long(argc, argv, "c:l:m:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'l':
			if (strlist_add(&flag_listen, optarg) < 0)
				goto out;
			break;
		case 'm':
			if (strlist_add(&flag_models, optarg) < 0)
				goto out;
			break;
		case OPT_LOG_LEVEL:
			flag_level = optarg;
			break;
		case OPT_CHECK:
			check = 1;
			break;
		case OPT_TUNE:
			tune = optarg;
			break;
		case OPT_HTTP:
			flag_http = optarg;
			break;
		case OPT_NO_HTTP:
			no_http = 1;
			break;
		case 'V':
			printf("inferd %s (backends: cpu%s)\n", INFERD_VERSION,
			       cuda_built() ? ", cuda" : "");
			rc = 0;
			goto out;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		default:
			usage(stderr);
			rc = 2;
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "inferd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		rc = 2;
		goto out;
	}

	/* Defaults, then the file, then flags. */
	if (config_path && config_load_file(&cfg, config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "inferd: %s\n", err);
		goto out;
	}
	if (flag_listen.n) {
		strlist_clear(&cfg.listen);
		for (size_t i = 0; i < flag_listen.n; i++) {
			if (config_set(&cfg, "server", "listen", flag_listen.items[i], err,
			               sizeof(err)) < 0) {
				fprintf(stderr, "inferd: --listen: %s\n", err);
				rc = 2;
				goto out;
			}
		}
	}
	for (size_t i = 0; i < flag_models.n; i++) {
		if (config_add_model_flag(&cfg, flag_models.items[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "inferd: --model: %s\n", err);
			rc = 2;
			goto out;
		}
	}
	if (flag_level && config_set(&cfg, "log", "level", flag_level, err, sizeof(err)) < 0) {
		fprintf(stderr, "inferd: --log-level: %s\n", err);
		rc = 2;
		goto out;
	}
	if ((flag_http && (config_set(&cfg, "http", "listen", flag_http, err, sizeof(err)) < 0 ||
	                   config_set(&cfg, "http", "enabled", "true", err, sizeof(err)) < 0)) ||
	    (no_http && config_set(&cfg, "http", "enabled", "false", err, sizeof(err)) < 0)) {
		fprintf(stderr, "inferd: --http: %s\n", err);
		rc = 2;
		goto out;
	}
	if (config_finish(&cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "inferd: %s\n", err);
		goto out;
	}
	if (check) {
		print_config(&cfg);
		rc = 0;
		goto out;
	}
	if (tune) {
		log_init(cfg.log_level);
		if (models_tune(&cfg, tune, err, sizeof(err)) < 0) {
			fprintf(stderr, "inferd: %s\n", err);
			goto out;
		}
		rc = 0;
		goto out;
	}

	log_init(cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	log_info("inferd %s starting", INFERD_VERSION);
	/* Sockets passed by systemd: 'native' adds a private nanomsg address before the
	 * listeners open; 'http' is taken by the HTTP server as it starts. */
	if (activation_init(err, sizeof(err)) < 0 ||
	    native_activation_prepare(&cfg, &native, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	if (inferd_server_new(&cfg, &srv, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	if (native && native_activation_start(native, srv->base, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	activation_close_unused();
	rc = inferd_server_run(srv);
out:
	native_activation_free(native); /* before the loop it runs on */
	inferd_server_free(srv);
	strlist_clear(&flag_listen);
	strlist_clear(&flag_models);
	config_fini(&cfg);
	return rc;
}
