/* Helpers of the VAE tests and benchmark: a temporary folder per process, model folders from
 * inferd-mkmodel (INFERD_MKMODEL) or tests/reference/vae_ref.py make (INFERD_PYTHON,
 * INFERD_REF_DIR), opening a vae folder, raw files and seeded random data.
 * Test code: callers turn failures into criterion asserts or skips. */
#ifndef INFERD_TEST_VAE_UTIL_H
#define INFERD_TEST_VAE_UTIL_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline.h"
#include "safetensors.h"
#include "vae.h"

static inline const char *vae_tmpdir(void)
{
	static char dir[256];
	if (dir[0] == 0) {
		const char *t = getenv("TMPDIR");
		snprintf(dir, sizeof dir, "%s/inferd-vae-test-XXXXXX", t ? t : "/tmp");
		if (mkdtemp(dir) == NULL) {
			dir[0] = 0;
			return NULL;
		}
	}
	return dir;
}

static inline void vae_tmpdir_remove(void)
{
	const char *d = vae_tmpdir();
	char cmd[400];
	if (d != NULL) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", d);
	}
}

static inline bool vae_have_python(void)
{
	const char *py = getenv("INFERD_PYTHON"), *dir = getenv("INFERD_REF_DIR");
	char cmd[1024];
	if (py == NULL || dir == NULL || access(py, X_OK) != 0)
		return false;
	snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy' 2>/dev/null", py);
	return system(cmd) == 0;
}

/* Runs INFERD_PYTHON INFERD_REF_DIR/vae_ref.py args. @return 0, -ENOENT (no python with
 * numpy), -EIO. */
static inline int vae_run_ref(const char *args)
{
	const char *py = getenv("INFERD_PYTHON"), *dir = getenv("INFERD_REF_DIR");
	char cmd[4096];
	if (!vae_have_python())
		return -ENOENT;
	snprintf(cmd, sizeof cmd, "'%s' '%s/vae_ref.py' %s", py, dir, args);
	return system(cmd) == 0 ? 0 : -EIO;
}

/* inferd-mkmodel diffusion --size size --dtype dtype into tmpdir/name (a pipeline folder);
 * out gets the folder. @return 0, -ENOENT (no INFERD_MKMODEL), -EIO. */
static inline int vae_mkmodel(const char *name, const char *size, const char *dtype, char *out,
                              size_t outlen)
{
	const char *mk = getenv("INFERD_MKMODEL"), *d = vae_tmpdir();
	char cmd[1400];
	if (mk == NULL || d == NULL)
		return -ENOENT;
	snprintf(out, outlen, "%s/%s", d, name);
	if (access(out, F_OK) == 0)
		return 0;
	snprintf(cmd, sizeof cmd, "'%s' diffusion --out '%s' --size %s --dtype %s --seed 5 "
	         ">/dev/null", mk, out, size, dtype);
	return system(cmd) == 0 ? 0 : -EIO;
}

/* vae_ref.py make tmpdir/name args (a vae folder). @return as vae_run_ref. */
static inline int vae_make_variant(const char *name, const char *args, char *out, size_t outlen)
{
	const char *d = vae_tmpdir();
	char a[2048];
	if (d == NULL)
		return -ENOENT;
	snprintf(out, outlen, "%s/%s", d, name);
	snprintf(a, sizeof a, "make '%s' %s", out, args);
	return vae_run_ref(a);
}

/* The vae folder of dir: dir/vae when it exists. */
static inline void vae_folder(const char *dir, char *out, size_t outlen)
{
	if (snprintf(out, outlen, "%s/vae", dir) >= (int)outlen || access(out, F_OK) != 0)
		snprintf(out, outlen, "%s", dir);
}

/* Opens config.json and the weights of a vae folder (or a pipeline's vae/). */
static inline int vae_open_folder(const char *dir, struct diff_vae_config *cfg,
                                  struct st_file **f, char *err, size_t errlen)
{
	char vd[1024], path[1100];
	vae_folder(dir, vd, sizeof vd);
	if (snprintf(path, sizeof path, "%s/config.json", vd) >= (int)sizeof path)
		return -ENAMETOOLONG;
	int rc = diff_vae_config_load(path, cfg, err, errlen);
	if (rc != 0)
		return rc;
	if (snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", vd) >=
	    (int)sizeof path)
		return -ENAMETOOLONG;
	return st_open(path, f, err, errlen);
}

static inline int vae_write_f32(const char *path, const float *x, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -errno;
	size_t w = fwrite(x, sizeof *x, n, f);
	return fclose(f) == 0 && w == n ? 0 : -EIO;
}

/* Reads exactly n doubles; free() the result. NULL on a short or missing file. */
static inline double *vae_read_f64(const char *path, size_t n)
{
	FILE *f = fopen(path, "rb");
	double *x = malloc(n * sizeof *x + 1);
	size_t got = 0;
	char extra;
	if (f != NULL && x != NULL)
		got = fread(x, sizeof *x, n, f);
	bool ok = f != NULL && got == n && fread(&extra, 1, 1, f) == 0;
	if (f != NULL)
		fclose(f);
	if (!ok) {
		free(x);
		return NULL;
	}
	return x;
}

/* Seeded values: uniform in [-1, 1] (images) or standard normal (latents). */
static inline uint64_t vae_rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline void vae_fill(float *x, size_t n, uint64_t seed, bool normal)
{
	for (size_t i = 0; i < n; i++) {
		double u1 = ((double)(vae_rng_next(&seed) >> 11) + 1.0) / 9007199254740992.0;
		if (!normal) {
			x[i] = (float)(2.0 * u1 - 1.0);
			continue;
		}
		double u2 = ((double)(vae_rng_next(&seed) >> 11) + 1.0) / 9007199254740992.0;
		x[i] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
	}
}

/* max |a - b| / max |b| (b the reference). */
static inline double vae_rel_err(const float *a, const double *b, size_t n)
{
	double md = 0, mb = 0;
	for (size_t i = 0; i < n; i++) {
		md = fmax(md, fabs(a[i] - b[i]));
		mb = fmax(mb, fabs(b[i]));
	}
	return mb > 0 ? md / mb : md;
}

#endif
