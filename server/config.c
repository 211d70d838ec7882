/* The daemon's configuration: defaults, INI file (inih), flags. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int strlist_add(struct strlist *list, const char *s)
{
	char *copy = strdup(s);
	char **items;

	if (!copy)
		return -ENOMEM;
	items = realloc(list->items, (list->n + 1) * sizeof(*items));
	if (!items) {
		free(copy);
		return -ENOMEM;
	}
	items[list->n++] = copy;
	list->items = items;
	return 0;
}

void strlist_clear(struct strlist *list)
{
	for (size_t i = 0; i < list->n; i++)
		free(list->items[i]);
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

void config_init(struct inferd_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->max_frame_bytes = 16u << 20;
	cfg->max_calls = 4096;
	cfg->default_deadline_ms = 0;
	cfg->drain_timeout_s = 30.0;
	cfg->drain_linger_ms = 200;
	cfg->http.enabled = true;
	cfg->http.max_body_bytes = 8u << 20;
	cfg->http.max_header_bytes = 16384;
	cfg->http.max_connections = 1024;
	cfg->http.timeout_s = 60.0;
	cfg->http.open_metrics_on_loopback = true;
}

void config_fini(struct inferd_config *cfg)
{
	for (size_t i = 0; i < cfg->n_models; i++) {
		free(cfg->models[i].name);
		free(cfg->models[i].path);
		free(cfg->models[i].tune_file);
		free(cfg->models[i].chat_template);
	}
	free(cfg->http.listen);
	free(cfg->http.metrics_key);
	free(cfg->path);
	strlist_clear(&cfg->listen);
	strlist_clear(&cfg->api_keys);
	free(cfg->api_key_file);
	memset(cfg, 0, sizeof(*cfg));
}

void config_default_ipc(char *out, size_t outlen)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");

	if (rt && rt[0] == '/')
		snprintf(out, outlen, "ipc://%s/inferd.sock", rt);
	else
		snprintf(out, outlen, "ipc:///tmp/inferd-%u.sock", (unsigned)getuid());
}

/* ---- value parsers ----------------------------------------------------------------------- */

static int parse_u64(const char *v, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long x;

	if (!*v || *v == '-')
		return -1;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || *end || x > max)
		return -1;
	*out = x;
	return 0;
}

static int parse_double(const char *v, double min, double max, double *out)
{
	char *end;
	double x;

	errno = 0;
	x = strtod(v, &end);
	if (errno || end == v || *end || !(x >= min && x <= max))
		return -1;
	*out = x;
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int check_url(const char *url, char *err, size_t errlen)
{
	if (strncmp(url, "tcp://", 6) != 0 && strncmp(url, "ipc://", 6) != 0) {
		snprintf(err, errlen, "listen address '%s' must start with tcp:// or ipc://", url);
		return -EINVAL;
	}
	if (strlen(url) <= 6) {
		snprintf(err, errlen, "listen address '%s' names no host or path", url);
		return -EINVAL;
	}
	return 0;
}

/* ---- models ------------------------------------------------------------------------------ */

const char *model_policy_name(enum model_policy p)
{
	switch (p) {
	case MODEL_POLICY_PRIORITY: return "priority";
	case MODEL_POLICY_FAIR: return "fair";
	case MODEL_POLICY_FCFS:
	default: return "fcfs";
	}
}

static int valid_model_name(const char *name)
{
	if (!*name || strlen(name) > 64)
		return 0;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '_' || *p == '.'))
			return 0;
	return 1;
}

/* Finds or creates the model called name. */
static struct model_config *model_slot(struct inferd_config *cfg, const char *name, char *err,
                                       size_t errlen)
{
	for (size_t i = 0; i < cfg->n_models; i++)
		if (strcmp(cfg->models[i].name, name) == 0)
			return &cfg->models[i];
	if (!valid_model_name(name)) {
		snprintf(err, errlen, "bad model name '%s' (letters, digits, '-', '_', '.'; at most 64)",
		         name);
		return NULL;
	}
	if (cfg->n_models >= CONFIG_MAX_MODELS) {
		snprintf(err, errlen, "more than %d models", CONFIG_MAX_MODELS);
		return NULL;
	}
	struct model_config *m = &cfg->models[cfg->n_models];
	memset(m, 0, sizeof(*m));
	m->name = strdup(name);
	if (!m->name) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->kv_block_size = 16;
	m->max_batched_tokens = 512;
	m->max_sequences = 64;
	m->max_queued = 1024;
	m->max_batch = 8;
	m->policy = MODEL_POLICY_FCFS;
	cfg->n_models++;
	return m;
}

const struct model_config *config_find_model(const struct inferd_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_models; i++)
		if (strcmp(cfg->models[i].name, name) == 0)
			return &cfg->models[i];
	return NULL;
}

int config_add_model_flag(struct inferd_config *cfg, const char *arg, char *err, size_t errlen)
{
	const char *eq = strchr(arg, '=');
	char name[128];

	if (eq) {
		size_t n = (size_t)(eq - arg);
		if (n >= sizeof(name))
			n = sizeof(name) - 1;
		memcpy(name, arg, n);
		name[n] = '\0';
		arg = eq + 1;
	} else {
		const char *base = strrchr(arg, '/');
		base = base ? base + 1 : arg;
		snprintf(name, sizeof(name), "%s", base);
		char *dot = strrchr(name, '.');
		if (dot && dot != name)
			*dot = '\0';
	}
	if (!*arg) {
		snprintf(err, errlen, "--model %s: no path", name);
		return -EINVAL;
	}
	char section[160];
	snprintf(section, sizeof(section), "model.%s", name);
	return config_set(cfg, section, "path", arg, err, errlen);
}

static int set_model_key(struct inferd_config *cfg, const char *name, const char *key,
                         const char *value, char *err, size_t errlen)
{
	struct model_config *m = model_slot(cfg, name, err, errlen);
	uint64_t u;

	if (!m)
		return -EINVAL;
	if (strcmp(key, "path") == 0) {
		free(m->path);
		m->path = strdup(value);
		return m->path ? 0 : -ENOMEM;
	}
	if (strcmp(key, "tune_file") == 0) {
		free(m->tune_file);
		m->tune_file = strdup(value);
		return m->tune_file ? 0 : -ENOMEM;
	}
	if (strcmp(key, "nano_batching") == 0) {
		if (strcasecmp(value, "auto") == 0)
			m->nano = NANO_MODE_AUTO;
		else if (strcasecmp(value, "on") == 0 || strcasecmp(value, "true") == 0)
			m->nano = NANO_MODE_ON;
		else if (strcasecmp(value, "off") == 0 || strcasecmp(value, "false") == 0)
			m->nano = NANO_MODE_OFF;
		else
			goto bad_value;
		return 0;
	}
	if (strcmp(key, "weight_dtype") == 0) {
		enum dtype t;
		if (strcasecmp(value, "auto") == 0 || strcasecmp(value, "stored") == 0) {
			m->convert_weights = false;
			return 0;
		}
		if (dtype_from_name(value, &t) < 0 || !dtype_can_quant(t)) {
			snprintf(err, errlen, "bad value '%s' for model.%s.weight_dtype (stored, f32, "
			         "f16, bf16, q8_0, q4_0, q4_k, q6_k)", value, name);
			return -EINVAL;
		}
		m->convert_weights = true;
		m->weight_type = t;
		return 0;
	}
	if (strcmp(key, "kv_cache_dtype") == 0) {
		if (strcasecmp(value, "f32") == 0)
			m->kv_type = DTYPE_F32;
		else if (strcasecmp(value, "f16") == 0)
			m->kv_type = DTYPE_F16;
		else
			goto bad_value;
		return 0;
	}
	if (strcmp(key, "img2img") == 0) {
		bool on;
		if (parse_bool(value, &on) < 0)
			goto bad_value;
		m->no_img2img = !on;
		return 0;
	}
	if (strcmp(key, "policy") == 0) {
		if (strcasecmp(value, "fcfs") == 0)
			m->policy = MODEL_POLICY_FCFS;
		else if (strcasecmp(value, "priority") == 0)
			m->policy = MODEL_POLICY_PRIORITY;
		else if (strcasecmp(value, "fair") == 0)
			m->policy = MODEL_POLICY_FAIR;
		else
			goto bad_value;
		return 0;
	}
	if (strcmp(key, "chat_template") == 0) {
		static const char *const families[] = { "chatml", "llama2", "llama3",
		                                        "mistral", "gemma", "zephyr" };
		for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
			if (strcasecmp(value, families[i]) == 0) {
				free(m->chat_template);
				m->chat_template = strdup(families[i]);
				return m->chat_template ? 0 : -ENOMEM;
			}
		}
		goto bad_value;
	}
	static const struct { const char *key; size_t off; uint64_t min, max; } ukeys[] = {
		{ "max_context", offsetof(struct model_config, max_context), 0, 1u << 20 },
		{ "kv_blocks", offsetof(struct model_config, kv_blocks), 0, 1u << 24 },
		{ "kv_block_size", offsetof(struct model_config, kv_block_size), 1, 1024 },
		{ "max_batched_tokens", offsetof(struct model_config, max_batched_tokens), 1, 1u << 16 },
		{ "max_sequences", offsetof(struct model_config, max_sequences), 1, 4096 },
		{ "max_queued", offsetof(struct model_config, max_queued), 1, 1u << 20 },
		{ "threads", offsetof(struct model_config, threads), 0, 1024 },
		{ "tune_batch", offsetof(struct model_config, tune_batch), 0, 4096 },
		{ "tune_context", offsetof(struct model_config, tune_context), 0, 1u << 20 },
		{ "max_batch", offsetof(struct model_config, max_batch), 1, 256 },
	};
	for (size_t i = 0; i < sizeof(ukeys) / sizeof(ukeys[0]); i++) {
		if (strcmp(key, ukeys[i].key) != 0)
			continue;
		if (parse_u64(value, ukeys[i].max, &u) < 0 || u < ukeys[i].min)
			goto bad_value;
		*(unsigned *)((char *)m + ukeys[i].off) = (unsigned)u;
		return 0;
	}
	if (strcmp(key, "max_queued_tokens") == 0) {
		if (parse_u64(value, UINT64_C(1) << 40, &u) < 0)
			goto bad_value;
		m->max_queued_tokens = u;
		return 0;
	}
	snprintf(err, errlen, "unknown key '%s' in section [model.%s]", key, name);
	return -EINVAL;
bad_value:
	snprintf(err, errlen, "bad value '%s' for model.%s.%s", value, name, key);
	return -EINVAL;
}

/* ---- http -------------------------------------------------------------------------------- */

/* HOST:PORT with a port in 1..65535 (an IPv6 host in brackets). */
static int check_host_port(const char *v)
{
	const char *colon = strrchr(v, ':');
	uint64_t port;

	if (!colon || colon == v || (v[0] == '[' && colon[-1] != ']'))
		return -1;
	if (parse_u64(colon + 1, 65535, &port) < 0 || port == 0)
		return -1;
	return 0;
}

static int set_http_key(struct inferd_config *cfg, const char *key, const char *value, char *err,
                        size_t errlen)
{
	struct http_config *h = &cfg->http;
	uint64_t u;
	double d;

	if (strcmp(key, "enabled") == 0) {
		if (parse_bool(value, &h->enabled) < 0)
			goto bad_value;
		return 0;
	}
	if (strcmp(key, "listen") == 0) {
		if (check_host_port(value) < 0) {
			snprintf(err, errlen, "http listen address '%s' must be HOST:PORT", value);
			return -EINVAL;
		}
		free(h->listen);
		h->listen = strdup(value);
		return h->listen ? 0 : -ENOMEM;
	}
	if (strcmp(key, "max_body_bytes") == 0) {
		if (parse_u64(value, 1u << 30, &u) < 0 || u < 1024)
			goto bad_value;
		h->max_body_bytes = (size_t)u;
		return 0;
	}
	if (strcmp(key, "max_header_bytes") == 0) {
		if (parse_u64(value, 1u << 20, &u) < 0 || u < 1024)
			goto bad_value;
		h->max_header_bytes = (size_t)u;
		return 0;
	}
	if (strcmp(key, "max_connections") == 0) {
		if (parse_u64(value, 1u << 20, &u) < 0 || u == 0)
			goto bad_value;
		h->max_connections = (unsigned)u;
		return 0;
	}
	if (strcmp(key, "timeout") == 0) {
		if (parse_double(value, 0.001, 86400.0, &d) < 0)
			goto bad_value;
		h->timeout_s = d;
		return 0;
	}
	if (strcmp(key, "metrics_key") == 0) {
		if (strlen(value) < 8) {
			snprintf(err, errlen, "metrics_key must be at least 8 characters long");
			return -EINVAL;
		}
		free(h->metrics_key);
		h->metrics_key = strdup(value);
		return h->metrics_key ? 0 : -ENOMEM;
	}
	if (strcmp(key, "open_metrics_on_loopback") == 0) {
		if (parse_bool(value, &h->open_metrics_on_loopback) < 0)
			goto bad_value;
		return 0;
	}
	snprintf(err, errlen, "unknown key '%s' in section [http]", key);
	return -EINVAL;
bad_value:
	snprintf(err, errlen, "bad value '%s' for http.%s", value, key);
	return -EINVAL;
}

/* ---- keys -------------------------------------------------------------------------------- */

int config_set(struct inferd_config *cfg, const char *section, const char *key,
               const char *value, char *err, size_t errlen)
{
	uint64_t u;
	double d;

	if (strcmp(section, "server") == 0) {
		if (strcmp(key, "listen") == 0) {
			if (check_url(value, err, errlen) < 0)
				return -EINVAL;
			if (cfg->listen.n >= CONFIG_MAX_LISTEN) {
				snprintf(err, errlen, "more than %d listen addresses",
				         CONFIG_MAX_LISTEN);
				return -EINVAL;
			}
			return strlist_add(&cfg->listen, value);
		}
		if (strcmp(key, "max_frame_bytes") == 0) {
			if (parse_u64(value, 1u << 30, &u) < 0 || u < 1024)
				goto bad_value;
			cfg->max_frame_bytes = (size_t)u;
			return 0;
		}
		if (strcmp(key, "max_calls") == 0) {
			if (parse_u64(value, 1u << 20, &u) < 0 || u == 0)
				goto bad_value;
			cfg->max_calls = (unsigned)u;
			return 0;
		}
		if (strcmp(key, "default_deadline_ms") == 0) {
			if (parse_u64(value, UINT64_C(1) << 40, &u) < 0)
				goto bad_value;
			cfg->default_deadline_ms = u;
			return 0;
		}
		if (strcmp(key, "drain_timeout") == 0) {
			if (parse_double(value, 0.0, 86400.0, &d) < 0)
				goto bad_value;
			cfg->drain_timeout_s = d;
			return 0;
		}
		if (strcmp(key, "drain_linger_ms") == 0) {
			if (parse_u64(value, 60000, &u) < 0)
				goto bad_value;
			cfg->drain_linger_ms = (unsigned)u;
			return 0;
		}
		if (strcmp(key, "allow_insecure_remote") == 0) {
			if (parse_bool(value, &cfg->allow_insecure_remote) < 0)
				goto bad_value;
			return 0;
		}
	} else if (strcmp(section, "log") == 0) {
		if (strcmp(key, "level") == 0) {
			if (log_level_parse(value, &cfg->log_level) < 0)
				goto bad_value;
			return 0;
		}
	} else if (strcmp(section, "auth") == 0) {
		if (strcmp(key, "api_key") == 0) {
			if (strlen(value) < 8) {
				snprintf(err, errlen, "api_key must be at least 8 characters long");
				return -EINVAL;
			}
			return strlist_add(&cfg->api_keys, value);
		}
		if (strcmp(key, "api_key_file") == 0) {
			free(cfg->api_key_file);
			cfg->api_key_file = strdup(value);
			return cfg->api_key_file ? 0 : -ENOMEM;
		}
	} else if (strncmp(section, "model.", 6) == 0) {
		return set_model_key(cfg, section + 6, key, value, err, errlen);
	} else if (strcmp(section, "http") == 0) {
		return set_http_key(cfg, key, value, err, errlen);
	} else {
		snprintf(err, errlen, "unknown section [%s]", section);
		return -EINVAL;
	}
	snprintf(err, errlen, "unknown key '%s' in section [%s]", key, section);
	return -EINVAL;

bad_value:
	snprintf(err, errlen, "bad value '%s' for %s.%s", value, section, key);
	return -EINVAL;
}

/* ---- file -------------------------------------------------------------------------------- */

struct parse_ctx {
	struct inferd_config *cfg;
	char err[256];
	int replaced_listen;
	int replaced_keys;
};

static int on_ini_line(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *ctx = user;

	if (!name) /* a section header on its own: check the name */
		name = "";
	if (!*section) {
		snprintf(ctx->err, sizeof(ctx->err), "key '%s' outside of any section", name);
		return 0;
	}
	if (!*name) {
		if (strcmp(section, "server") && strcmp(section, "log") && strcmp(section, "auth") &&
		    strcmp(section, "http") && strncmp(section, "model.", 6)) {
			snprintf(ctx->err, sizeof(ctx->err), "unknown section [%s]", section);
			return 0;
		}
		return 1;
	}
	/* The file's listen and api_key lines replace earlier values, and add to each other. */
	if (strcmp(section, "server") == 0 && strcmp(name, "listen") == 0 && !ctx->replaced_listen) {
		strlist_clear(&ctx->cfg->listen);
		ctx->replaced_listen = 1;
	}
	if (strcmp(section, "auth") == 0 && strcmp(name, "api_key") == 0 && !ctx->replaced_keys) {
		strlist_clear(&ctx->cfg->api_keys);
		ctx->replaced_keys = 1;
	}
	return config_set(ctx->cfg, section, name, value, ctx->err, sizeof(ctx->err)) == 0;
}

int config_load_file(struct inferd_config *cfg, const char *path, char *err, size_t errlen)
{
	struct parse_ctx ctx = { .cfg = cfg };
	FILE *f = fopen(path, "r");
	int line;

	if (!f) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	line = ini_parse_file(f, on_ini_line, &ctx);
	fclose(f);
	if (line != 0) {
		snprintf(err, errlen, "%s:%d: %s", path, line,
		         ctx.err[0] ? ctx.err : "syntax error (expected [section] or key = value)");
		return -EINVAL;
	}
	free(cfg->path);
	cfg->path = strdup(path);
	return cfg->path ? 0 : -ENOMEM;
}

/* ---- checks ------------------------------------------------------------------------------ */

int config_url_is_loopback_tcp(const char *url)
{
	const char *host, *end;
	char buf[256];
	size_t n;

	if (strncmp(url, "tcp://", 6) != 0)
		return -1;
	host = url + 6;
	/* nanomsg allows "tcp://iface;host:port" for the local side: judge the bound interface. */
	end = strchr(host, ';');
	n = end ? (size_t)(end - host) : strlen(host);
	if (n >= sizeof(buf))
		return 0;
	memcpy(buf, host, n);
	buf[n] = '\0';
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');
		if (!close)
			return 0;
		*close = '\0';
		return strcmp(buf + 1, "::1") == 0;
	}
	char *colon = strrchr(buf, ':');
	if (colon)
		*colon = '\0';
	if (strcmp(buf, "localhost") == 0 || strcmp(buf, "::1") == 0)
		return 1;
	unsigned a, b, c, d;
	char tail;
	if (sscanf(buf, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 &&
	    c < 256 && d < 256)
		return 1;
	return 0;
}

int config_finish(struct inferd_config *cfg, char *err, size_t errlen)
{
	if (cfg->listen.n == 0) {
		char ipc[512];
		config_default_ipc(ipc, sizeof(ipc));
		if (strlist_add(&cfg->listen, CONFIG_DEFAULT_TCP) < 0 ||
		    strlist_add(&cfg->listen, ipc) < 0)
			return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_models; i++) {
		if (!cfg->models[i].path) {
			snprintf(err, errlen, "model %s has no path", cfg->models[i].name);
			return -EINVAL;
		}
	}
	int have_keys = cfg->api_keys.n > 0 || cfg->api_key_file;
	if (!cfg->http.listen) {
		if (!(cfg->http.listen = strdup(CONFIG_DEFAULT_HTTP)))
			return -ENOMEM;
	}
	if (cfg->http.enabled && !have_keys && !cfg->allow_insecure_remote) {
		char url[300];
		snprintf(url, sizeof(url), "tcp://%s", cfg->http.listen);
		if (config_url_is_loopback_tcp(url) == 0) {
			snprintf(err, errlen,
			         "refusing to serve HTTP on %s: it is not a loopback address and no API "
			         "keys are configured (set [auth] api_key or api_key_file, or "
			         "[server] allow_insecure_remote = true)", cfg->http.listen);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < cfg->listen.n; i++) {
		if (config_url_is_loopback_tcp(cfg->listen.items[i]) == 0 && !have_keys &&
		    !cfg->allow_insecure_remote) {
			snprintf(err, errlen,
			         "refusing to listen on %s: it is not a loopback address and no API "
			         "keys are configured (set [auth] api_key or api_key_file, or "
			         "[server] allow_insecure_remote = true)", cfg->listen.items[i]);
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(cfg->listen.items[i], cfg->listen.items[j]) == 0) {
				snprintf(err, errlen, "listen address %s given twice",
				         cfg->listen.items[i]);
				return -EINVAL;
			}
		}
	}
	return 0;
}
