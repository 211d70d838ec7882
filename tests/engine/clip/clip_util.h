/* Helpers of the CLIP and noise-scheduler tests: a temporary folder per test process and the
 * Python references under tests/reference/ (INFERD_PYTHON, INFERD_REF_DIR from meson).
 * Test code: callers turn failures into criterion asserts or skips. */
#ifndef INFERD_TEST_CLIP_UTIL_H
#define INFERD_TEST_CLIP_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline const char *clip_tmpdir(void)
{
	static char dir[256];
	if (dir[0] == 0) {
		const char *t = getenv("TMPDIR");
		snprintf(dir, sizeof dir, "%s/inferd-clip-test-XXXXXX", t ? t : "/tmp");
		if (mkdtemp(dir) == NULL) {
			dir[0] = 0;
			return NULL;
		}
	}
	return dir;
}

static inline void clip_tmpdir_remove(void)
{
	const char *d = clip_tmpdir();
	char cmd[400];
	if (d != NULL) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", d);
	}
}

/* Runs INFERD_PYTHON INFERD_REF_DIR/script args. @return 0, -ENOENT (no python: skip), -EIO. */
static inline int clip_run_ref(const char *script, const char *args)
{
	const char *py = getenv("INFERD_PYTHON"), *dir = getenv("INFERD_REF_DIR");
	char cmd[4096];
	if (py == NULL || dir == NULL || access(py, X_OK) != 0)
		return -ENOENT;
	snprintf(cmd, sizeof cmd, "'%s' '%s/%s' %s", py, dir, script, args);
	return system(cmd) == 0 ? 0 : -EIO;
}

/* Reads a whole file; free() the result. */
static inline char *clip_read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		if (buf != NULL) {
			buf[n] = 0;
			*len = (size_t)n;
		}
	}
	fclose(f);
	return buf;
}

#endif
