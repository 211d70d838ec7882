/* The VAE (vae.h) against tests/reference/vae_ref.py (numpy, float64, written from the
 * architecture) on inferd-mkmodel pipelines (tiny, small, f16) and on variant folders written
 * by the reference (no quant convs, no mid attention, shift factor, old attention names as
 * 1x1 convs, BF16, one block, four blocks); batch 2 and non-square sizes; bad input.
 *
 * Tolerance: max |inferd - reference| / max |reference| below VAE_TOL per output (f32
 * activations against float64: measured 1.8e-7 to 1.7e-6, logged with cr_log_info). */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "vae_util.h"

#define VAE_TOL 2e-5

struct model {
	char dir[600];
	struct diff_vae_config cfg;
	struct st_file *f;
	struct vae *v;
};

static void model_open(struct model *m, const char *dir, bool with_encoder)
{
	char err[512] = "";
	snprintf(m->dir, sizeof m->dir, "%s", dir);
	cr_assert_eq(vae_open_folder(dir, &m->cfg, &m->f, err, sizeof err), 0, "%s", err);
	cr_assert_eq(vae_new(&m->cfg, m->f, with_encoder, &m->v, err, sizeof err), 0, "%s", err);
	cr_assert_eq(vae_has_encoder(m->v), with_encoder);
}

static void model_close(struct model *m)
{
	vae_free(m->v);
	st_free(m->f);
	memset(m, 0, sizeof *m);
}

static void mkmodel_open(struct model *m, const char *size, const char *dtype)
{
	char name[64], dir[600];
	snprintf(name, sizeof name, "sd-%s-%s", size, dtype);
	int rc = vae_mkmodel(name, size, dtype, dir, sizeof dir);
	if (rc == -ENOENT)
		cr_skip_test("INFERD_MKMODEL not set");
	cr_assert_eq(rc, 0, "inferd-mkmodel failed");
	model_open(m, dir, true);
}

static void variant_open(struct model *m, const char *name, const char *args)
{
	char dir[600];
	int rc = vae_make_variant(name, args, dir, sizeof dir);
	if (rc == -ENOENT)
		cr_skip_test("no python3 with numpy: reference not run");
	cr_assert_eq(rc, 0, "vae_ref.py make failed");
	model_open(m, dir, true);
}

/* Decodes seeded latents (batch, lat, h, w) with inferd and the reference.
 * @return the relative error. */
static double check_decode(struct model *m, int64_t batch, int64_t h, int64_t w,
                           const char *what)
{
	const int f = vae_downscale(m->v), lat = m->cfg.latent_channels;
	const size_t nz = (size_t)(batch * lat * h * w);
	const size_t ni = (size_t)(batch * m->cfg.out_channels * h * f * w * f);
	float *z = malloc(nz * sizeof *z), *img = malloc(ni * sizeof *img);
	char zp[700], op[700], args[2400];
	cr_assert(z != NULL && img != NULL);
	vae_fill(z, nz, 11 + (uint64_t)(batch * 31 + h * 7 + w), true);
	cr_assert_eq(vae_decode(m->v, z, batch, h, w, img, 0), 0);
	if (!vae_have_python()) {
		free(z);
		free(img);
		cr_skip_test("no python3 with numpy: reference not run");
	}
	snprintf(zp, sizeof zp, "%s/z.f32", vae_tmpdir());
	snprintf(op, sizeof op, "%s/img.f64", vae_tmpdir());
	cr_assert_eq(vae_write_f32(zp, z, nz), 0);
	snprintf(args, sizeof args, "decode '%s' '%s' '%s' --batch %lld --h %lld --w %lld", m->dir,
	         zp, op, (long long)batch, (long long)h, (long long)w);
	cr_assert_eq(vae_run_ref(args), 0, "vae_ref.py decode failed");
	double *ref = vae_read_f64(op, ni);
	cr_assert_not_null(ref, "reference output has the wrong size");
	double e = vae_rel_err(img, ref, ni);
	cr_log_info("%s: decode B=%lld %lldx%lld -> %lldx%lld: rel err %.3g", what,
	            (long long)batch, (long long)h, (long long)w, (long long)(h * f),
	            (long long)(w * f), e);
	cr_assert_lt(e, VAE_TOL, "%s: decode rel err %.3g", what, e);
	free(ref);
	free(z);
	free(img);
	return e;
}

/* Encodes a seeded image (batch, in, H, W) with inferd and the reference. */
static void check_encode(struct model *m, int64_t batch, int64_t H, int64_t W, const char *what)
{
	const int f = vae_downscale(m->v), lat = m->cfg.latent_channels;
	const size_t ni = (size_t)(batch * m->cfg.in_channels * H * W);
	const size_t nz = (size_t)(batch * lat * (H / f) * (W / f));
	float *img = malloc(ni * sizeof *img), *mean = malloc(nz * sizeof *mean);
	float *std = malloc(nz * sizeof *std);
	char ip[700], mp[700], sp[700], args[3200];
	cr_assert(img != NULL && mean != NULL && std != NULL);
	vae_fill(img, ni, 5 + (uint64_t)(batch * 13 + H * 3 + W), false);
	cr_assert_eq(vae_encode(m->v, img, batch, H, W, mean, std, 0), 0);
	for (size_t i = 0; i < nz; i++)
		cr_assert(std[i] > 0 && isfinite(mean[i]), "std %g mean %g", std[i], mean[i]);
	if (!vae_have_python()) {
		free(img);
		free(mean);
		free(std);
		cr_skip_test("no python3 with numpy: reference not run");
	}
	snprintf(ip, sizeof ip, "%s/img.f32", vae_tmpdir());
	snprintf(mp, sizeof mp, "%s/mean.f64", vae_tmpdir());
	snprintf(sp, sizeof sp, "%s/std.f64", vae_tmpdir());
	cr_assert_eq(vae_write_f32(ip, img, ni), 0);
	snprintf(args, sizeof args, "encode '%s' '%s' '%s' '%s' --batch %lld --h %lld --w %lld",
	         m->dir, ip, mp, sp, (long long)batch, (long long)H, (long long)W);
	cr_assert_eq(vae_run_ref(args), 0, "vae_ref.py encode failed");
	double *rm = vae_read_f64(mp, nz), *rs = vae_read_f64(sp, nz);
	cr_assert(rm != NULL && rs != NULL, "reference output has the wrong size");
	double em = vae_rel_err(mean, rm, nz), es = vae_rel_err(std, rs, nz);
	cr_log_info("%s: encode B=%lld %lldx%lld: rel err mean %.3g, std %.3g", what,
	            (long long)batch, (long long)H, (long long)W, em, es);
	cr_assert_lt(em, VAE_TOL, "%s: mean rel err %.3g", what, em);
	cr_assert_lt(es, VAE_TOL, "%s: std rel err %.3g", what, es);
	free(rm);
	free(rs);
	free(img);
	free(mean);
	free(std);
}

TestSuite(vae, .fini = vae_tmpdir_remove, .timeout = 120);

/* ---- against the reference ------------------------------------------------------------- */

Test(vae, tiny_pipeline_through_the_loader_matches_reference)
{
	char dir[600], err[512] = "";
	struct diff_pipeline *pl = NULL;
	int rc = vae_mkmodel("sd-tiny-f32", "tiny", "f32", dir, sizeof dir);
	if (rc == -ENOENT)
		cr_skip_test("INFERD_MKMODEL not set");
	cr_assert_eq(rc, 0);
	cr_assert_eq(diff_pipeline_open(dir, &pl, err, sizeof err), 0, "%s", err);
	struct model m = { 0 };
	snprintf(m.dir, sizeof m.dir, "%s", dir);
	m.cfg = *diff_pipeline_vae(pl);
	cr_assert_eq(vae_new(&m.cfg, diff_pipeline_vae_weights(pl), true, &m.v, err, sizeof err), 0,
	             "%s", err);
	cr_assert_eq(vae_downscale(m.v), 2);
	cr_assert_eq(vae_get_config(m.v)->latent_channels, 4);
	check_decode(&m, 2, 6, 5, "tiny (pipeline)");
	check_encode(&m, 2, 12, 20, "tiny (pipeline)");
	vae_free(m.v);
	diff_pipeline_free(pl);
}

Test(vae, tiny_decode_and_encode_match_reference)
{
	struct model m = { 0 };
	mkmodel_open(&m, "tiny", "f32");
	check_decode(&m, 1, 8, 8, "tiny");
	check_decode(&m, 2, 3, 9, "tiny");
	check_encode(&m, 1, 16, 6, "tiny");
	/* more than one attention tile (256 keys, 64 queries) over the mid-block pixels */
	check_decode(&m, 1, 20, 18, "tiny, 360 tokens");
	check_encode(&m, 1, 48, 40, "tiny, 480 tokens");
	model_close(&m);
}

Test(vae, small_decode_and_encode_match_reference)
{
	struct model m = { 0 };
	mkmodel_open(&m, "small", "f32");
	cr_assert_eq(vae_downscale(m.v), 4);
	check_decode(&m, 2, 5, 7, "small");
	check_encode(&m, 2, 20, 12, "small");
	model_close(&m);
}

Test(vae, f16_weights_match_reference)
{
	struct model m = { 0 };
	mkmodel_open(&m, "tiny", "f16");
	check_decode(&m, 2, 4, 6, "tiny f16");
	check_encode(&m, 2, 8, 14, "tiny f16");
	model_close(&m);
}

/* no quant_conv / post_quant_conv, no mid attention, shift factor, 8 groups, 2 layers per
 * block, other channel counts */
Test(vae, plain_config_with_shift_matches_reference)
{
	struct model m = { 0 };
	variant_open(&m, "plain", "--channels 16,32 --groups 8 --layers 2 --latent 3 --in 4 "
	             "--out 2 --scaling 0.5 --shift 0.25 --no-quant-conv --no-post-quant-conv "
	             "--no-mid-attention --seed 3");
	check_decode(&m, 2, 5, 3, "plain");
	check_encode(&m, 2, 6, 10, "plain");
	model_close(&m);
}

/* query/key/value/proj_attn stored as [c, c, 1, 1], BF16, four blocks (f = 8) */
Test(vae, old_attention_names_bf16_four_blocks_match_reference)
{
	struct model m = { 0 };
	variant_open(&m, "old", "--channels 8,16,16,32 --groups 4 --layers 1 --old-attn-names "
	             "--attn-4d --dtype bf16 --seed 4");
	cr_assert_eq(vae_downscale(m.v), 8);
	check_decode(&m, 2, 3, 2, "old names bf16");
	check_encode(&m, 1, 16, 24, "old names bf16");
	model_close(&m);
}

/* one block: no resampling at all (f = 1), attention on, only quant_conv */
Test(vae, one_block_matches_reference)
{
	struct model m = { 0 };
	variant_open(&m, "one", "--channels 32 --groups 16 --layers 1 --no-post-quant-conv "
	             "--seed 6");
	cr_assert_eq(vae_downscale(m.v), 1);
	check_decode(&m, 2, 7, 5, "one block");
	check_encode(&m, 2, 5, 7, "one block");
	model_close(&m);
}

/* ---- consistency ------------------------------------------------------------------------ */

Test(vae, batch_items_equal_single_decodes_and_thread_counts_agree)
{
	struct model m = { 0 };
	mkmodel_open(&m, "tiny", "f32");
	const int64_t h = 4, w = 6, nz = 4 * h * w, ni = 3 * 4 * h * w;
	float z[2 * 4 * 4 * 6], all[2 * 3 * 8 * 12], one[3 * 8 * 12];
	vae_fill(z, (size_t)(2 * nz), 77, true);
	cr_assert_eq(vae_decode(m.v, z, 2, h, w, all, 0), 0);
	for (int b = 0; b < 2; b++) {
		cr_assert_eq(vae_decode(m.v, z + b * nz, 1, h, w, one, 1), 0);
		double md = 0, mx = 0;
		for (int64_t i = 0; i < ni; i++) {
			md = fmax(md, fabs(one[i] - all[b * ni + i]));
			mx = fmax(mx, fabs(all[b * ni + i]));
		}
		cr_assert_lt(md, 1e-5 * mx, "item %d: %g", b, md);
	}
	model_close(&m);
}

struct job {
	struct vae *v;
	const float *z;
	float *img;
	int rc;
};

static void *decode_job(void *arg)
{
	struct job *j = arg;
	j->rc = vae_decode(j->v, j->z, 1, 6, 4, j->img, 1);
	return NULL;
}

Test(vae, two_threads_decode_at_once)
{
	struct model m = { 0 };
	mkmodel_open(&m, "tiny", "f32");
	float z[4 * 6 * 4], a[3 * 12 * 8], b[3 * 12 * 8], ref[3 * 12 * 8];
	vae_fill(z, sizeof z / sizeof *z, 9, true);
	cr_assert_eq(vae_decode(m.v, z, 1, 6, 4, ref, 1), 0);
	struct job j1 = { m.v, z, a, -1 }, j2 = { m.v, z, b, -1 };
	pthread_t t1, t2;
	cr_assert_eq(pthread_create(&t1, NULL, decode_job, &j1), 0);
	cr_assert_eq(pthread_create(&t2, NULL, decode_job, &j2), 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	cr_assert_eq(j1.rc, 0);
	cr_assert_eq(j2.rc, 0);
	cr_assert_eq(memcmp(a, ref, sizeof a), 0);
	cr_assert_eq(memcmp(b, ref, sizeof b), 0);
	model_close(&m);
}

/* ---- bad input ------------------------------------------------------------------------- */

Test(vae, bad_sizes_and_arguments_are_refused)
{
	struct model m = { 0 };
	mkmodel_open(&m, "small", "f32");
	float z[4 * 4 * 4], img[3 * 16 * 16], mean[4 * 4 * 4], std[4 * 4 * 4];
	vae_fill(img, sizeof img / sizeof *img, 1, false);
	vae_fill(z, sizeof z / sizeof *z, 2, true);
	/* encode: H, W must be multiples of 4 */
	cr_assert_eq(vae_encode(m.v, img, 1, 16, 14, mean, std, 0), -EINVAL);
	cr_assert_eq(vae_encode(m.v, img, 1, 6, 16, mean, std, 0), -EINVAL);
	cr_assert_eq(vae_encode(m.v, img, 0, 16, 16, mean, std, 0), -EINVAL);
	cr_assert_eq(vae_encode(m.v, NULL, 1, 16, 16, mean, std, 0), -EINVAL);
	cr_assert_eq(vae_encode(m.v, img, 1, 16, 16, NULL, std, 0), -EINVAL);
	cr_assert_eq(vae_encode(m.v, img, 1, 16, 16, mean, std, -1), -EINVAL);
	cr_assert_eq(vae_encode(m.v, img, 1, 16, 16, mean, std, 0), 0);
	cr_assert_eq(vae_decode(m.v, z, 0, 4, 4, img, 0), -EINVAL);
	cr_assert_eq(vae_decode(m.v, z, 1, 0, 4, img, 0), -EINVAL);
	cr_assert_eq(vae_decode(m.v, z, 1, 4, -3, img, 0), -EINVAL);
	cr_assert_eq(vae_decode(m.v, NULL, 1, 4, 4, img, 0), -EINVAL);
	cr_assert_eq(vae_decode(m.v, z, 1, 4, 4, NULL, 0), -EINVAL);
	cr_assert_eq(vae_decode(NULL, z, 1, 4, 4, img, 0), -EINVAL);
	/* absurd sizes are refused, not attempted */
	cr_assert_eq(vae_decode(m.v, z, 1, (int64_t)1 << 40, 4, img, 0), -EINVAL);
	cr_assert_neq(vae_decode(m.v, z, (int64_t)1 << 40, 1 << 17, 1 << 17, img, 0), 0);
	cr_assert_eq(vae_decode(m.v, z, 1, 4, 4, img, 0), 0);
	model_close(&m);

	vae_free(NULL);
	cr_assert_null(vae_get_config(NULL));
	cr_assert_not(vae_has_encoder(NULL));
}

Test(vae, encode_without_encoder_is_refused)
{
	char dir[600];
	int rc = vae_mkmodel("sd-tiny-f32", "tiny", "f32", dir, sizeof dir);
	if (rc == -ENOENT)
		cr_skip_test("INFERD_MKMODEL not set");
	cr_assert_eq(rc, 0);
	struct model m = { 0 };
	model_open(&m, dir, false);
	float img[3 * 8 * 8], mean[4 * 4 * 4], std[4 * 4 * 4], z[4 * 4 * 4];
	vae_fill(img, sizeof img / sizeof *img, 3, false);
	vae_fill(z, sizeof z / sizeof *z, 3, true);
	cr_assert_eq(vae_encode(m.v, img, 1, 8, 8, mean, std, 0), -EINVAL);
	cr_assert_eq(vae_decode(m.v, z, 1, 4, 4, img, 0), 0);
	model_close(&m);
}

Test(vae, missing_tensor_is_named)
{
	struct model m = { 0 };
	char dir[600], err[512] = "";
	const char *k = "decoder.mid_block.attentions.0.to_k.weight";
	char args[300];
	snprintf(args, sizeof args, "--channels 32,32 --drop %s --seed 7", k);
	int rc = vae_make_variant("drop-dec", args, dir, sizeof dir);
	if (rc == -ENOENT)
		cr_skip_test("no python3 with numpy: reference not run");
	cr_assert_eq(rc, 0);
	cr_assert_eq(vae_open_folder(dir, &m.cfg, &m.f, err, sizeof err), 0, "%s", err);
	cr_assert_eq(vae_new(&m.cfg, m.f, false, &m.v, err, sizeof err), -EBADMSG);
	cr_assert_null(m.v);
	cr_assert_not_null(strstr(err, k), "%s", err);
	cr_assert_not_null(strstr(err, "key.weight"), "%s", err); /* the older name too */
	st_free(m.f);

	/* an encoder tensor: only a model with the encoder needs it */
	k = "encoder.down_blocks.1.resnets.0.norm2.bias";
	snprintf(args, sizeof args, "--channels 32,32 --drop %s --seed 7", k);
	cr_assert_eq(vae_make_variant("drop-enc", args, dir, sizeof dir), 0);
	cr_assert_eq(vae_open_folder(dir, &m.cfg, &m.f, err, sizeof err), 0, "%s", err);
	cr_assert_eq(vae_new(&m.cfg, m.f, false, &m.v, err, sizeof err), 0, "%s", err);
	vae_free(m.v);
	m.v = NULL;
	cr_assert_eq(vae_new(&m.cfg, m.f, true, &m.v, err, sizeof err), -EBADMSG);
	cr_assert_not_null(strstr(err, k), "%s", err);
	st_free(m.f);
}

Test(vae, config_not_matching_the_weights_is_refused)
{
	char dir[600], err[512] = "";
	int rc = vae_mkmodel("sd-tiny-f32", "tiny", "f32", dir, sizeof dir);
	if (rc == -ENOENT)
		cr_skip_test("INFERD_MKMODEL not set");
	cr_assert_eq(rc, 0);
	struct model m = { 0 };
	cr_assert_eq(vae_open_folder(dir, &m.cfg, &m.f, err, sizeof err), 0, "%s", err);
	struct diff_vae_config c = m.cfg;
	struct vae *v = NULL;
	c.latent_channels = 8;
	cr_assert_eq(vae_new(&c, m.f, false, &v, err, sizeof err), -EBADMSG);
	cr_assert_not_null(strstr(err, "post_quant_conv.weight"), "%s", err);
	cr_assert_not_null(strstr(err, "[8, 8, 1, 1]"), "%s", err);
	c = m.cfg;
	c.layers_per_block = 3;
	cr_assert_eq(vae_new(&c, m.f, false, &v, err, sizeof err), -EBADMSG);
	cr_assert_not_null(strstr(err, "is missing"), "%s", err);
	c = m.cfg;
	c.norm_num_groups = 5;
	cr_assert_eq(vae_new(&c, m.f, false, &v, err, sizeof err), -EINVAL);
	cr_assert_not_null(strstr(err, "bad config"), "%s", err);
	c = m.cfg;
	c.n_blocks = 0;
	cr_assert_eq(vae_new(&c, m.f, false, &v, err, sizeof err), -EINVAL);
	c = m.cfg;
	c.scaling_factor = 0;
	cr_assert_eq(vae_new(&c, m.f, false, &v, err, sizeof err), -EINVAL);
	cr_assert_eq(vae_new(NULL, m.f, false, &v, err, sizeof err), -EINVAL);
	cr_assert_eq(vae_new(&m.cfg, NULL, false, &v, err, sizeof err), -EINVAL);
	cr_assert_null(v);
	st_free(m.f);
}
