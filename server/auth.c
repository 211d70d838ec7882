/* API keys, compared in constant time. */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

struct auth {
	struct strlist keys;
};

int auth_ct_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	/* Walk b (the secret) whole; read a modulo its length so a short candidate costs the
	 * same; fold the length difference into the result. */
	unsigned char diff = (unsigned char)(alen != blen);
	for (size_t i = 0; i < blen; i++) {
		unsigned char ca = alen ? (unsigned char)a[i % alen] : 0;
		diff |= (unsigned char)(ca ^ (unsigned char)b[i]);
	}
	return diff == 0;
}

static int load_key_file(struct auth *auth, const char *path, char *err, size_t errlen)
{
	struct stat st;
	char line[1024];
	FILE *f = fopen(path, "r");
	int rc = 0, lineno = 0;

	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "api_key_file %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "api_key_file %s: not a regular file", path);
		rc = -EINVAL;
		goto out;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 077)) {
		snprintf(err, errlen,
		         "api_key_file %s: must be owned by the daemon's user and not accessible "
		         "to group or others (chmod 600)", path);
		rc = -EPERM;
		goto out;
	}
	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(line);
		lineno++;
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
		             line[n - 1] == '\t'))
			line[--n] = '\0';
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			continue;
		if (strlen(p) < 8) {
			snprintf(err, errlen, "%s:%d: key shorter than 8 characters", path, lineno);
			rc = -EINVAL;
			goto out;
		}
		if ((rc = strlist_add(&auth->keys, p)) < 0)
			goto out;
	}
	if (auth->keys.n == 0) {
		snprintf(err, errlen, "api_key_file %s holds no key", path);
		rc = -EINVAL;
	}
out:
	explicit_bzero(line, sizeof(line));
	fclose(f);
	return rc;
}

int auth_new(const char *const *keys, size_t n_keys, const char *key_file, struct auth **out,
             char *err, size_t errlen)
{
	struct auth *auth = calloc(1, sizeof(*auth));
	int rc;

	*out = NULL;
	if (!auth)
		return -ENOMEM;
	for (size_t i = 0; i < n_keys; i++)
		if ((rc = strlist_add(&auth->keys, keys[i])) < 0)
			goto fail;
	if (key_file && (rc = load_key_file(auth, key_file, err, errlen)) < 0)
		goto fail;
	*out = auth;
	return 0;
fail:
	auth_free(auth);
	return rc;
}

void auth_free(struct auth *auth)
{
	if (!auth)
		return;
	for (size_t i = 0; i < auth->keys.n; i++)
		explicit_bzero(auth->keys.items[i], strlen(auth->keys.items[i]));
	strlist_clear(&auth->keys);
	free(auth);
}

bool auth_is_open(const struct auth *auth)
{
	return auth->keys.n == 0;
}

bool auth_check(const struct auth *auth, const char *key)
{
	size_t klen = key ? strlen(key) : 0;
	int ok = 0;

	if (auth->keys.n == 0)
		return true;
	/* Compare against every key, never stopping early. */
	for (size_t i = 0; i < auth->keys.n; i++) {
		const char *k = auth->keys.items[i];
		ok |= auth_ct_equal(key ? key : "", klen, k, strlen(k));
	}
	return ok != 0;
}
