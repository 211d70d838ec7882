/* Helpers of the UNet tests: a temporary folder per test process, the numpy reference
 * (INFERD_PYTHON, INFERD_REF_DIR from meson), generated models (INFERD_MKMODEL or
 * unet_ref.py make-config), raw float files. Test code: callers turn failures into criterion
 * asserts or skips. */
#ifndef INFERD_TEST_UNET_UTIL_H
#define INFERD_TEST_UNET_UTIL_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline const char *unet_tmpdir(void)
{
	static char dir[256];
	if (dir[0] == 0) {
		const char *t = getenv("TMPDIR");
		snprintf(dir, sizeof dir, "%s/inferd-unet-test-XXXXXX", t ? t : "/tmp");
		if (mkdtemp(dir) == NULL) {
			dir[0] = 0;
			return NULL;
		}
	}
	return dir;
}

static inline void unet_tmpdir_remove(void)
{
	const char *d = unet_tmpdir();
	char cmd[400];
	if (d != NULL) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", d);
	}
}

/* 0 when INFERD_PYTHON runs and imports numpy, else -ENOENT (skip the reference cases). */
static inline int unet_have_numpy(void)
{
	const char *py = getenv("INFERD_PYTHON"), *dir = getenv("INFERD_REF_DIR");
	char cmd[1024];
	if (py == NULL || dir == NULL || access(py, X_OK) != 0)
		return -ENOENT;
	snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy' 2>/dev/null", py);
	return system(cmd) == 0 ? 0 : -ENOENT;
}

/* Runs INFERD_PYTHON INFERD_REF_DIR/unet_ref.py args. @return 0, -ENOENT, -EIO. */
static inline int unet_run_ref(const char *args)
{
	const char *py = getenv("INFERD_PYTHON"), *dir = getenv("INFERD_REF_DIR");
	char cmd[8192];
	if (unet_have_numpy() != 0)
		return -ENOENT;
	snprintf(cmd, sizeof cmd, "'%s' '%s/unet_ref.py' %s", py, dir, args);
	return system(cmd) == 0 ? 0 : -EIO;
}

static inline int unet_write_f32(const char *path, const float *v, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -errno;
	size_t w = fwrite(v, sizeof *v, n, f);
	return fclose(f) == 0 && w == n ? 0 : -EIO;
}

/* Reads exactly n doubles; free() the result. */
static inline double *unet_read_f64(const char *path, size_t n)
{
	FILE *f = fopen(path, "rb");
	double *buf = f ? malloc(n * sizeof *buf + 1) : NULL;
	if (buf != NULL && (fread(buf, sizeof *buf, n, f) != n || fgetc(f) != EOF)) {
		free(buf);
		buf = NULL;
	}
	if (f != NULL)
		fclose(f);
	return buf;
}

/* Deterministic normal-ish values (splitmix64 + Box-Muller) times scale. */
static inline void unet_fill(float *v, size_t n, uint64_t seed, float scale)
{
	for (size_t i = 0; i < n; i += 2) {
		uint64_t z[2];
		for (int k = 0; k < 2; k++) {
			seed += 0x9e3779b97f4a7c15ull;
			uint64_t s = seed;
			s = (s ^ (s >> 30)) * 0xbf58476d1ce4e5b9ull;
			s = (s ^ (s >> 27)) * 0x94d049bb133111ebull;
			z[k] = s ^ (s >> 31);
		}
		double u1 = ((double)(z[0] >> 11) + 1.0) / 9007199254740993.0;
		double u2 = (double)(z[1] >> 11) / 9007199254740992.0;
		double r = sqrt(-2.0 * log(u1));
		v[i] = scale * (float)(r * cos(6.283185307179586 * u2));
		if (i + 1 < n)
			v[i + 1] = scale * (float)(r * sin(6.283185307179586 * u2));
	}
}

#endif
