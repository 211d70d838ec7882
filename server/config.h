/* The daemon's configuration: built-in defaults, then the INI file, then command-line flags.
 *
 * File format (parsed with inih):
 *   [server]  listen = URL (repeatable), max_frame_bytes, max_calls, default_deadline_ms,
 *             drain_timeout, allow_insecure_remote
 *   [log]     level = error|warn|info|debug
 *   [auth]    api_key = KEY (repeatable), api_key_file = PATH
 *   [model.NAME] path, max_context, kv_blocks, kv_block_size, max_batched_tokens,
 *             max_sequences, max_queued, max_queued_tokens, policy, threads,
 *             nano_batching, tune_file, tune_batch, tune_context, chat_template;
 *             image models (path is a diffusers folder): max_batch, img2img, max_queued,
 *             threads
 *   [http]    enabled, listen = HOST:PORT, max_body_bytes, max_header_bytes, max_connections,
 *             timeout, metrics_key, open_metrics_on_loopback
 * Unknown sections and keys are errors that name the file and line.
 *
 * Errors: functions return 0 or a negative errno-style code and write a message into err.
 */
#ifndef INFERD_SERVER_CONFIG_H
#define INFERD_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "log.h"

#define CONFIG_DEFAULT_TCP "tcp://127.0.0.1:7070"
#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_MODELS 16

struct strlist {
	char **items;
	size_t n;
};

enum nano_mode {
	NANO_MODE_AUTO,      /* as the tuning profile says; off without one */
	NANO_MODE_ON,        /* the profile's split, or an even split without one */
	NANO_MODE_OFF,
};

enum model_policy {
	MODEL_POLICY_FCFS,
	MODEL_POLICY_PRIORITY,
	MODEL_POLICY_FAIR,
};

/* One served model: a section [model.NAME] or a --model [NAME=]PATH flag. */
struct model_config {
	char *name;
	char *path;                      /* GGUF file (LLM) or diffusers folder (image model) */
	unsigned max_context;            /* positions per sequence; 0 = the model's */
	unsigned kv_blocks;              /* KV pool in blocks; 0 = enough for max_sequences x 512 */
	unsigned kv_block_size;          /* positions per block */
	unsigned max_batched_tokens;     /* tokens per iteration */
	unsigned max_sequences;          /* running sequences */
	unsigned max_queued;             /* waiting requests before RESOURCE_EXHAUSTED */
	uint64_t max_queued_tokens;      /* waiting prompt tokens before RESOURCE_EXHAUSTED; 0 = no limit */
	enum model_policy policy;
	unsigned threads;                /* engine threads; 0 = all cores */
	bool convert_weights;            /* weight_dtype = ...: convert float matrices at load */
	enum dtype weight_type;          /* the weight_dtype, when convert_weights */
	enum dtype kv_type;              /* kv_cache_dtype = f32 (default) | f16 */
	char *chat_template;             /* chatml|llama2|llama3|mistral|gemma|zephyr; NULL: the GGUF's */
	enum nano_mode nano;             /* nano_batching = auto|on|off */
	char *tune_file;                 /* nano-batching profile; NULL = PATH.tune */
	unsigned tune_batch;             /* --tune: decode batch measured (0 = max_sequences, <= 32) */
	unsigned tune_context;           /* --tune: cached positions per sequence (0 = 512) */
	/* Image models (path is a diffusers folder): */
	unsigned max_batch;              /* UNet items per denoising step (stream batch), 8 */
	bool no_img2img;                 /* img2img = false: do not build the VAE encoder */
};

#define CONFIG_DEFAULT_HTTP "127.0.0.1:8080"

/* The HTTP API (OpenAI-compatible endpoints, /health, /ready, /metrics). */
struct http_config {
	bool enabled;
	char *listen;                    /* HOST:PORT ([V6]:PORT) */
	size_t max_body_bytes;           /* larger request bodies get 413 */
	size_t max_header_bytes;         /* larger request headers: evhttp answers 400 */
	unsigned max_connections;        /* connections with a request in flight, more get 503 */
	double timeout_s;                /* reading a request, idle keep-alive */
	char *metrics_key;               /* NULL: /metrics takes the API keys */
	bool open_metrics_on_loopback;   /* /metrics without a key from a loopback peer */
};

struct inferd_config {
	char *path;                      /* the config file, NULL when none */
	struct strlist listen;           /* nanomsg URLs */
	enum log_level log_level;
	size_t max_frame_bytes;          /* frames above get RESOURCE_EXHAUSTED */
	unsigned max_calls;              /* calls in flight, all clients together */
	uint64_t default_deadline_ms;    /* for calls that set none; 0 = no deadline */
	double drain_timeout_s;          /* SIGTERM: how long calls in flight may still run */
	unsigned drain_linger_ms;        /* after the last reply, before closing sockets */
	bool allow_insecure_remote;      /* non-loopback TCP without API keys */
	struct strlist api_keys;         /* from the file's api_key lines (not the key file) */
	char *api_key_file;
	struct model_config models[CONFIG_MAX_MODELS];
	size_t n_models;
	struct http_config http;
};

/* Adds a model from a --model [NAME=]PATH flag (NAME defaults to the file name without its
 * extension). @return 0 or -EINVAL with a message. */
int config_add_model_flag(struct inferd_config *cfg, const char *arg, char *err, size_t errlen);
/* @return the model named name, or NULL. */
const struct model_config *config_find_model(const struct inferd_config *cfg, const char *name);
const char *model_policy_name(enum model_policy p);

/* Fills cfg with built-in defaults (no listen address yet: see config_finish). */
void config_init(struct inferd_config *cfg);
void config_fini(struct inferd_config *cfg);

/* Parses an INI file into cfg. Listen addresses and keys from the file replace the defaults.
 * @return 0, -ENOENT/-EACCES when it cannot be read, -EINVAL on a bad line. */
int config_load_file(struct inferd_config *cfg, const char *path, char *err, size_t errlen);

/* Sets one key of one section as if read from a file (used by the file parser and by flags).
 * @return 0 or -EINVAL with a message. */
int config_set(struct inferd_config *cfg, const char *section, const char *key,
               const char *value, char *err, size_t errlen);

/* Fills in what is still unset (the default listen addresses) and checks the whole.
 * @return 0 or -EINVAL with a message. */
int config_finish(struct inferd_config *cfg, char *err, size_t errlen);

/* The default ipc path: $XDG_RUNTIME_DIR/inferd.sock, else /tmp/inferd-UID.sock. */
void config_default_ipc(char *out, size_t outlen);

int strlist_add(struct strlist *list, const char *s);
void strlist_clear(struct strlist *list);

/* @return 1 when a tcp:// URL's host is a loopback address (127.0.0.0/8, ::1, localhost), 0 for
 * any other tcp:// host, -1 when the URL is not tcp://. */
int config_url_is_loopback_tcp(const char *url);

#endif
