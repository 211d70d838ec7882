/* Sockets passed by the service manager (socket activation). */
#include "activation.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "inferd-config.h"
#include "log.h"

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define ACTIVATION_MAX 16

struct passed_socket {
	int fd;          /* -1 once taken or closed */
	char name[64];
};

static struct passed_socket passed[ACTIVATION_MAX];
static size_t n_passed;

#if HAVE_SYSTEMD
int activation_init(char *err, size_t errlen)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);

	if (n < 0) {
		snprintf(err, errlen, "socket activation: cannot read LISTEN_FDS: %s", strerror(-n));
		return n;
	}
	n_passed = 0;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "unknown";
		if (n_passed == ACTIVATION_MAX) {
			log_error("socket activation: more than %d sockets passed; closing fd %d (%s)",
			          ACTIVATION_MAX, fd, name);
			close(fd);
			continue;
		}
		passed[n_passed].fd = fd;
		snprintf(passed[n_passed].name, sizeof(passed[n_passed].name), "%s", name);
		n_passed++;
	}
	if (names) {
		for (int i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	return (int)n_passed;
}

static int socket_is(int fd, enum activation_kind kind)
{
	if (kind == ACTIVATION_UNIX_STREAM)
		return sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0;
	return sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) > 0;
}
#else
int activation_init(char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	if (getenv("LISTEN_FDS"))
		log_warn("socket activation: LISTEN_FDS is set, but this inferd was built without "
		         "libsystemd: the passed sockets are not used");
	n_passed = 0;
	return 0;
}

static int socket_is(int fd, enum activation_kind kind)
{
	(void)fd;
	(void)kind;
	return 0;
}
#endif

int activation_take(const char *name, enum activation_kind kind, char *err, size_t errlen)
{
	for (size_t i = 0; i < n_passed; i++) {
		int fd = passed[i].fd;
		if (fd < 0 || strcmp(passed[i].name, name) != 0)
			continue;
		passed[i].fd = -1;
		if (!socket_is(fd, kind)) {
			snprintf(err, errlen, "socket activation: the socket named '%s' (fd %d) is not "
			         "a listening %s stream socket", name, fd,
			         kind == ACTIVATION_UNIX_STREAM ? "AF_UNIX" : "");
			close(fd);
			return -EPROTOTYPE;
		}
		return fd;
	}
	return -ENOENT;
}

void activation_close_unused(void)
{
	for (size_t i = 0; i < n_passed; i++) {
		if (passed[i].fd < 0)
			continue;
		log_error("socket activation: socket '%s' (fd %d) not used: the daemon serves "
		          "'native' (AF_UNIX stream) and 'http' (stream, with [http] enabled)",
		          passed[i].name, passed[i].fd);
		close(passed[i].fd);
		passed[i].fd = -1;
	}
}

void activation_describe(int fd, char *out, size_t outlen, char *path, size_t pathlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN];

	if (path && pathlen)
		path[0] = '\0';
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		snprintf(out, outlen, "fd %d", fd);
		return;
	}
	if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *su = (const struct sockaddr_un *)&ss;
		size_t plen = len > offsetof(struct sockaddr_un, sun_path)
		              ? len - offsetof(struct sockaddr_un, sun_path) : 0;
		if (plen == 0 || su->sun_path[0] == '\0') {
			snprintf(out, outlen, "unix (abstract or unnamed)");
			return;
		}
		snprintf(out, outlen, "unix:%.*s", (int)strnlen(su->sun_path, plen), su->sun_path);
		if (path && pathlen)
			snprintf(path, pathlen, "%.*s", (int)strnlen(su->sun_path, plen), su->sun_path);
	} else if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *si = (const struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &si->sin_addr, host, sizeof(host));
		snprintf(out, outlen, "%s:%u", host, ntohs(si->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *si = (const struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &si->sin6_addr, host, sizeof(host));
		snprintf(out, outlen, "[%s]:%u", host, ntohs(si->sin6_port));
	} else {
		snprintf(out, outlen, "fd %d (family %d)", fd, (int)ss.ss_family);
	}
}

int activation_is_remote_inet(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *si = (const struct sockaddr_in *)&ss;
		return (ntohl(si->sin_addr.s_addr) >> 24) != 127;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *si = (const struct sockaddr_in6 *)&ss;
		return !IN6_IS_ADDR_LOOPBACK(&si->sin6_addr);
	}
	return 0;
}
