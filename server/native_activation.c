/* Socket activation of the nanomsg endpoint: a private nanomsg path and a relay to it. */
#include "native_activation.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "activation.h"
#include "config.h"
#include "log.h"
#include "relay.h"

#define PRIVATE_NAME "native-relay.sock"

struct native_activation {
	int fd;                    /* the passed socket until the relay takes it; -1 after */
	char passed[256];          /* "unix:/run/inferd.sock", for logs */
	char dir[PATH_MAX];        /* where the private socket lives */
	int own_dir;               /* dir was made by mkdtemp: remove it at the end */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct relay *relay;
};

/* The first entry of RUNTIME_DIRECTORY (systemd sets a colon-separated list), else a fresh
 * private directory. */
static int pick_dir(struct native_activation *na, char *err, size_t errlen)
{
	const char *rd = getenv("RUNTIME_DIRECTORY");
	const char *tmp = getenv("TMPDIR");

	if (rd && rd[0] == '/') {
		size_t n = strcspn(rd, ":");
		if (n >= sizeof(na->dir))
			n = sizeof(na->dir) - 1;
		memcpy(na->dir, rd, n);
		na->dir[n] = '\0';
		return 0;
	}
	snprintf(na->dir, sizeof(na->dir), "%s/inferd-relay-XXXXXX",
	         tmp && tmp[0] == '/' ? tmp : "/tmp");
	if (!mkdtemp(na->dir)) {
		int e = errno;
		snprintf(err, errlen, "socket activation: cannot make a private directory %s: %s",
		         na->dir, strerror(e));
		return -e;
	}
	na->own_dir = 1;
	return 0;
}

/* Drops the listen address that names the passed socket's path. */
static void drop_passed_path(struct inferd_config *cfg, const char *path)
{
	for (size_t i = 0; i < cfg->listen.n; i++) {
		const char *url = cfg->listen.items[i];
		if (strncmp(url, "ipc://", 6) != 0 || strcmp(url + 6, path) != 0)
			continue;
		log_info("socket activation: %s is the passed 'native' socket: served by the relay",
		         url);
		free(cfg->listen.items[i]);
		memmove(&cfg->listen.items[i], &cfg->listen.items[i + 1],
		        (cfg->listen.n - i - 1) * sizeof(cfg->listen.items[0]));
		cfg->listen.n--;
		i--;
	}
}

int native_activation_prepare(struct inferd_config *cfg, struct native_activation **out,
                              char *err, size_t errlen)
{
	struct native_activation *na;
	char passed_path[PATH_MAX], url[sizeof(na->path) + 8];
	int fd, rc;

	*out = NULL;
	fd = activation_take("native", ACTIVATION_UNIX_STREAM, err, errlen);
	if (fd == -ENOENT)
		return 0;
	if (fd < 0) {
		log_error("%s: ignored", err);
		return 0;
	}
	na = calloc(1, sizeof(*na));
	if (!na) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	na->fd = fd;
	activation_describe(fd, na->passed, sizeof(na->passed), passed_path, sizeof(passed_path));
	rc = pick_dir(na, err, errlen);
	if (rc < 0)
		goto fail;
	if ((size_t)snprintf(na->path, sizeof(na->path), "%s/%s", na->dir, PRIVATE_NAME) >=
	    sizeof(na->path)) {
		snprintf(err, errlen, "socket activation: private socket path %s/%s is too long",
		         na->dir, PRIVATE_NAME);
		rc = -ENAMETOOLONG;
		goto fail;
	}
	if (passed_path[0])
		drop_passed_path(cfg, passed_path);
	snprintf(url, sizeof(url), "ipc://%s", na->path);
	if (strlist_add(&cfg->listen, url) < 0) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	*out = na;
	return 0;
fail:
	native_activation_free(na);
	return rc;
}

int native_activation_start(struct native_activation *na, struct event_base *base, char *err,
                            size_t errlen)
{
	int fd = na->fd;
	int rc;

	na->fd = -1; /* relay_new() owns it, whatever happens */
	rc = relay_new(base, fd, na->path, &na->relay, err, errlen);
	if (rc < 0)
		return rc;
	log_info("socket activation: adopted 'native' (%s), relayed to ipc://%s", na->passed,
	         na->path);
	return 0;
}

void native_activation_free(struct native_activation *na)
{
	struct relay_stats st;

	if (!na)
		return;
	if (na->relay) {
		relay_get_stats(na->relay, &st);
		log_info("socket activation: relayed %llu connections (%llu refused), %llu bytes in, "
		         "%llu bytes out", (unsigned long long)st.accepted,
		         (unsigned long long)st.failed, (unsigned long long)st.bytes_up,
		         (unsigned long long)st.bytes_down);
	}
	relay_free(na->relay);
	if (na->fd >= 0)
		close(na->fd);
	if (na->path[0])
		unlink(na->path);
	if (na->own_dir)
		rmdir(na->dir);
	free(na);
}
