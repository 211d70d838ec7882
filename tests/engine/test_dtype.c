/* Tests of engine/dtype: the type table, f16/bf16 conversion edge cases, Q8_0,
 * Q4_0, Q4_K and Q6_K round trips, and known-answer dequantization of
 * hand-packed Q4_K and Q6_K blocks. The packers below are written from the format description in
 * the opposite direction of the code under test (value -> bits), so a shared
 * misreading of the layout would have to be made twice to go unnoticed. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dtype.h"

static uint32_t bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* ---- the table ---------------------------------------------------------------------- */

Test(dtype, table_matches_the_ggml_ids)
{
	cr_assert_str_eq(dtype_name(0), "F32");
	cr_assert_str_eq(dtype_name(1), "F16");
	cr_assert_str_eq(dtype_name(2), "Q4_0");
	cr_assert_str_eq(dtype_name(8), "Q8_0");
	cr_assert_str_eq(dtype_name(12), "Q4_K");
	cr_assert_str_eq(dtype_name(14), "Q6_K");
	cr_assert_str_eq(dtype_name(30), "BF16");
	cr_assert_null(dtype_name(4), "retired id 4 is not a type");
	cr_assert_null(dtype_name(5));
	cr_assert_null(dtype_name(31));
	cr_assert_null(dtype_name(1000));
	cr_assert_eq(dtype_block_elems(DTYPE_Q4_K), 256);
	cr_assert_eq(dtype_block_bytes(DTYPE_Q4_K), 144);
	cr_assert_eq(dtype_block_bytes(DTYPE_Q6_K), 210);
	cr_assert_eq(dtype_block_bytes(DTYPE_Q8_0), 34);
	cr_assert_eq(dtype_block_bytes(DTYPE_Q4_0), 18);
	cr_assert_eq(dtype_block_bytes(DTYPE_BF16), 2);
	enum dtype t;
	cr_assert_eq(dtype_from_name("q8_0", &t), 0);
	cr_assert_eq(t, DTYPE_Q8_0);
	cr_assert_eq(dtype_from_name("nope", &t), -EINVAL);
}

Test(dtype, row_size_checks_blocks_and_overflow)
{
	uint64_t n;
	cr_assert_eq(dtype_row_size(DTYPE_Q4_0, 64, &n), 0);
	cr_assert_eq(n, 36);
	cr_assert_eq(dtype_row_size(DTYPE_Q4_K, 512, &n), 0);
	cr_assert_eq(n, 288);
	cr_assert_eq(dtype_row_size(DTYPE_F32, 3, &n), 0);
	cr_assert_eq(n, 12);
	cr_assert_eq(dtype_row_size(DTYPE_Q4_0, 33, &n), -EINVAL);
	cr_assert_eq(dtype_row_size(DTYPE_F32, -1, &n), -EINVAL);
	cr_assert_eq(dtype_row_size(99, 32, &n), -EINVAL);
	cr_assert_eq(dtype_row_size(DTYPE_F64, INT64_MAX, &n), -EOVERFLOW);
}

/* ---- half precision ------------------------------------------------------------------- */

struct f16_case {
	uint32_t f32;
	uint16_t f16;
};

ParameterizedTestParameters(dtype, f32_to_f16_rounds_to_nearest_even)
{
	static struct f16_case cases[] = {
		{ 0x00000000u, 0x0000 },   /* +0 */
		{ 0x80000000u, 0x8000 },   /* -0 */
		{ 0x3f800000u, 0x3c00 },   /* 1 */
		{ 0xc0000000u, 0xc000 },   /* -2 */
		{ 0x477fe000u, 0x7bff },   /* 65504, the largest half */
		{ 0x477fefffu, 0x7bff },   /* just below 65520 */
		{ 0x477ff000u, 0x7c00 },   /* 65520 rounds to inf */
		{ 0x7f7fffffu, 0x7c00 },   /* FLT_MAX */
		{ 0x7f800000u, 0x7c00 },   /* +inf */
		{ 0xff800000u, 0xfc00 },   /* -inf */
		{ 0x38800000u, 0x0400 },   /* 2^-14, smallest normal */
		{ 0x33800000u, 0x0001 },   /* 2^-24, smallest subnormal */
		{ 0x33000000u, 0x0000 },   /* 2^-25: tie, rounds to even zero */
		{ 0x33000001u, 0x0001 },   /* just above 2^-25 */
		{ 0x33c00000u, 0x0002 },   /* 3 * 2^-25 = 1.5 ulp: tie to even 2 */
		{ 0x34200000u, 0x0002 },   /* 5 * 2^-25 = 2.5 ulp: tie to even 2 */
		{ 0x34400000u, 0x0003 },   /* 3 * 2^-24, exact */
		{ 0x387fc000u, 0x03ff },   /* 1023 * 2^-24, largest subnormal */
		{ 0x3f801000u, 0x3c00 },   /* 1 + 2^-11: tie, stays at even 1 */
		{ 0x3f803000u, 0x3c02 },   /* 1 + 3 * 2^-11: tie, up to even */
		{ 0x3f801001u, 0x3c01 },   /* above the tie */
		{ 0x00000001u, 0x0000 },   /* f32 subnormal underflows */
		{ 0xb3800000u, 0x8001 },   /* -2^-24 */
	};
	return cr_make_param_array(struct f16_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct f16_case *c, dtype, f32_to_f16_rounds_to_nearest_even)
{
	uint16_t h = dtype_f32_to_f16(from_bits(c->f32));
	cr_assert_eq(h, c->f16, "f32 0x%08x -> 0x%04x, expected 0x%04x", c->f32, h, c->f16);
}

Test(dtype, f16_to_f32_is_exact_for_every_half)
{
	for (uint32_t h = 0; h < 65536; h++) {
		float f = dtype_f16_to_f32((uint16_t)h);
		uint32_t e = (h >> 10) & 31, m = h & 1023;
		double want;
		if (e == 31) {
			cr_assert(m ? isnan(f) : isinf(f), "0x%04x", h);
			cr_assert_eq(signbit(f) != 0, (h & 0x8000) != 0);
			continue;
		}
		want = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, (int)e - 25);
		if (h & 0x8000)
			want = -want;
		cr_assert_eq((double)f, want, "0x%04x -> %g, expected %g", h, f, want);
		cr_assert_eq(signbit(f) != 0, (h & 0x8000) != 0, "sign of 0x%04x", h);
		cr_assert_eq(dtype_f32_to_f16(f), h, "round trip of 0x%04x", h);
	}
}

Test(dtype, f16_row_conversion_matches_the_scalar_one)
{
	/* the row path may use F16C: it must agree with the scalar conversion on
	 * every half (NaNs only need to stay NaNs), at every offset and tail length */
	static uint8_t raw[2 * 65536 + 2];
	static float row[65536];
	for (uint32_t h = 0; h < 65536; h++) {
		raw[1 + 2 * h] = (uint8_t)h; /* odd offset: unaligned source */
		raw[2 + 2 * h] = (uint8_t)(h >> 8);
	}
	cr_assert_eq(dtype_dequant_row(DTYPE_F16, raw + 1, row, 65536 - 3), 0);
	for (uint32_t h = 0; h < 65536 - 3; h++) {
		float want = dtype_f16_to_f32((uint16_t)h);
		if (isnan(want))
			cr_assert(isnan(row[h]), "0x%04x", h);
		else
			cr_assert_eq(bits(row[h]), bits(want), "0x%04x", h);
	}
}

Test(dtype, f16_nan_stays_nan)
{
	cr_assert(isnan(dtype_f16_to_f32(dtype_f32_to_f16(NAN))));
	cr_assert(isnan(dtype_f16_to_f32(dtype_f32_to_f16(from_bits(0x7f800001u)))),
	          "a NaN whose payload is only in the low bits must not become inf");
	cr_assert(isnan(dtype_f16_to_f32(dtype_f32_to_f16(from_bits(0xffc00000u)))));
}

Test(dtype, bf16_conversions)
{
	cr_assert_eq(dtype_f32_to_bf16(1.0f), 0x3f80);
	cr_assert_eq(dtype_f32_to_bf16(from_bits(0x3f808000u)), 0x3f80, "tie to even (down)");
	cr_assert_eq(dtype_f32_to_bf16(from_bits(0x3f818000u)), 0x3f82, "tie to even (up)");
	cr_assert_eq(dtype_f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
	cr_assert_eq(dtype_f32_to_bf16(INFINITY), 0x7f80);
	cr_assert_eq(dtype_f32_to_bf16(-INFINITY), 0xff80);
	cr_assert_eq(dtype_f32_to_bf16(from_bits(0x7f7fffffu)), 0x7f80, "FLT_MAX rounds to inf");
	cr_assert(isnan(dtype_bf16_to_f32(dtype_f32_to_bf16(from_bits(0x7f800001u)))));
	for (uint32_t h = 0; h < 65536; h++) {
		float f = dtype_bf16_to_f32((uint16_t)h);
		cr_assert_eq(bits(f), h << 16);
		if (!isnan(f))
			cr_assert_eq(dtype_f32_to_bf16(f), h, "round trip of 0x%04x", h);
	}
}

/* ---- Q8_0 / Q4_0 round trips ------------------------------------------------------------- */

static uint64_t rng = 88172645463325252ull;

static float rnd(void) /* uniform in [-1, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / 4503599627370496.0 - 1.0);
}

static void roundtrip(enum dtype t, float step_div, float tol_steps)
{
	enum { N = 32 * 64 };
	static float x[N], y[N];
	static uint8_t q[N * 2];
	/* blocks of scales 0.1 to 100, one all-zero; smaller scales put d in the f16
	 * subnormal range, where the format itself loses precision */
	for (int i = 0; i < N; i++)
		x[i] = i / 32 == 5 ? 0.0f : rnd() * 0.1f * powf(10.0f, (float)(i / 32 % 4));
	cr_assert_eq(dtype_quant_row(t, x, q, N), 0);
	cr_assert_eq(dtype_dequant_row(t, q, y, N), 0);
	for (int b = 0; b < N / 32; b++) {
		float amax = 0;
		for (int j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(x[b * 32 + j]));
		float tol = amax / step_div * tol_steps + 1e-30f;
		for (int j = 0; j < 32; j++) {
			int i = b * 32 + j;
			cr_assert(fabsf(x[i] - y[i]) <= tol, "%s block %d elem %d: %g -> %g (tol %g)",
			          dtype_name(t), b, j, x[i], y[i], tol);
		}
	}
}

Test(dtype, q8_0_round_trip_within_half_a_step)
{
	/* |error| <= d/2 plus the f16 rounding of d (127 * 2^-11 d) */
	roundtrip(DTYPE_Q8_0, 127.0f, 0.5f + 127.0f / 2048.0f);
}

Test(dtype, q4_0_round_trip_within_one_step)
{
	/* the extreme maps to -8 exactly; the clamp at +7 can cost one full step */
	roundtrip(DTYPE_Q4_0, 8.0f, 1.0f + 8.0f / 1024.0f);
}

Test(dtype, q4_0_extreme_is_exact_and_layout_is_split_halves)
{
	float x[32] = { 0 };
	uint8_t q[18];
	x[3] = -4.0f;  /* largest magnitude: d = 0.5, q = 0 */
	x[20] = 1.5f;  /* q = 3 + 8 = 11, high nibble of qs[4] */
	cr_assert_eq(dtype_quant_row(DTYPE_Q4_0, x, q, 32), 0);
	cr_assert_eq(q[0] | (q[1] << 8), 0x3800, "d = 0.5 as f16");
	cr_assert_eq(q[2 + 3] & 0x0f, 0);
	cr_assert_eq(q[2 + 4] >> 4, 11);
	cr_assert_eq(q[2 + 0], 0x88, "zeros are 8 in both nibbles");
}

Test(dtype, unsupported_conversions_say_so)
{
	float x[256] = { 0 };
	uint8_t q[512];
	cr_assert_eq(dtype_quant_row(DTYPE_Q5_K, x, q, 256), -ENOTSUP);
	cr_assert_eq(dtype_quant_row(DTYPE_Q4_K, x, q, 255), -EINVAL);
	cr_assert_eq(dtype_dequant_row(DTYPE_Q5_K, q, x, 256), -ENOTSUP);
	cr_assert_eq(dtype_dequant_row(DTYPE_Q8_0, q, x, 31), -EINVAL);
	cr_assert_eq(dtype_dequant_row(77, q, x, 32), -EINVAL);
}

/* ---- known answers for the K-quants --------------------------------------------------------- */

static void put_f16(uint8_t *p, float f)
{
	uint16_t h = dtype_f32_to_f16(f);
	p[0] = (uint8_t)h;
	p[1] = (uint8_t)(h >> 8);
}

/* Q4_K packer: 8 sub-blocks of 32 elements, 6-bit scale sc[j] and min m[j]. */
static void pack_q4_k(uint8_t *b, float d, float dmin, const int sc[8], const int m[8],
                      const uint8_t q[256])
{
	memset(b, 0, 144);
	put_f16(b, d);
	put_f16(b + 2, dmin);
	uint8_t *s = b + 4, *qs = b + 16;
	for (int j = 0; j < 8; j++) {
		if (j < 4) {
			s[j] |= (uint8_t)(sc[j] & 63);
			s[j + 4] |= (uint8_t)(m[j] & 63);
		} else {
			s[j + 4] |= (uint8_t)((sc[j] & 15) | ((m[j] & 15) << 4));
			s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
			s[j] |= (uint8_t)((m[j] >> 4) << 6);
		}
	}
	for (int e = 0; e < 256; e++) {
		int j = e / 32, byte = 32 * (j / 2) + e % 32;
		qs[byte] |= (uint8_t)(j % 2 ? q[e] << 4 : q[e]);
	}
}

Test(dtype, q4_k_known_answer)
{
	int sc[8], m[8];
	uint8_t q[256], blk[2][144];
	float want[512], got[512];
	for (int rep = 0; rep < 2; rep++) {
		float d = rep ? 0.25f : 0.0078125f, dmin = rep ? 0.5f : 0.001953125f;
		for (int j = 0; j < 8; j++) {
			sc[j] = (j * 23 + 5 + rep * 40) % 64; /* covers values >= 16 in both halves */
			m[j] = (j * 37 + 61 + rep) % 64;
		}
		for (int e = 0; e < 256; e++)
			q[e] = (uint8_t)((e * 7 + rep * 3) % 16);
		pack_q4_k(blk[rep], d, dmin, sc, m, q);
		for (int e = 0; e < 256; e++)
			want[rep * 256 + e] = d * (float)sc[e / 32] * (float)q[e] - dmin * (float)m[e / 32];
	}
	cr_assert_eq(dtype_dequant_row(DTYPE_Q4_K, blk, got, 512), 0);
	for (int e = 0; e < 512; e++)
		cr_assert_float_eq(got[e], want[e], 1e-6f * (1.0f + fabsf(want[e])),
		                   "elem %d: %g, expected %g", e, got[e], want[e]);
}

/* Q6_K packer: 16 sub-blocks of 16 elements, signed 8-bit scales, 6-bit quants. */
static void pack_q6_k(uint8_t *b, float d, const int8_t sc[16], const uint8_t q[256])
{
	memset(b, 0, 210);
	uint8_t *ql = b, *qh = b + 128;
	for (int e = 0; e < 256; e++) {
		int h = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
		int lo = q[e] & 15, hi = q[e] >> 4;
		int qli = h * 64 + l + (quarter & 1) * 32;
		ql[qli] |= (uint8_t)(quarter < 2 ? lo : lo << 4);
		qh[h * 32 + l] |= (uint8_t)(hi << (2 * quarter));
	}
	memcpy(b + 192, sc, 16);
	put_f16(b + 208, d);
}

Test(dtype, q6_k_known_answer)
{
	int8_t sc[16];
	uint8_t q[256], blk[210];
	float got[256];
	float d = 0.03125f;
	for (int i = 0; i < 16; i++)
		sc[i] = (int8_t)(i * 17 - 128 + 3); /* negative and positive scales */
	for (int e = 0; e < 256; e++)
		q[e] = (uint8_t)((e * 13 + 1) % 64);
	pack_q6_k(blk, d, sc, q);
	cr_assert_eq(dtype_dequant_row(DTYPE_Q6_K, blk, got, 256), 0);
	for (int e = 0; e < 256; e++) {
		/* scale index: 16 consecutive elements share one scale */
		float want = d * (float)sc[e / 16] * (float)((int)q[e] - 32);
		cr_assert_float_eq(got[e], want, 1e-6f * (1.0f + fabsf(want)),
		                   "elem %d: %g, expected %g", e, got[e], want);
	}
}

/* ---- K-quant round trips ------------------------------------------------------------------ */

/* Rows of 16 super-blocks: super-block b has scale 10^(b%5 - 2) (0.01 to 100),
 * an offset (all-positive, all-negative or centred rows exercise Q4_K's min),
 * and one sub-block 1000x smaller than the rest (its scale quantizes to few
 * levels against d). Returns the max |error| over each super-block divided by
 * its range (max(x,0) - min(x,0)) and the RMS error over the row divided by the
 * RMS range, for the caller's bounds. */
static void kquant_roundtrip(enum dtype t, double *max_rel, double *rms_rel)
{
	enum { NB = 16, N = 256 * NB };
	static float x[N], y[N];
	static uint8_t q[NB * 210];
	for (int i = 0; i < N; i++) {
		int b = i / 256;
		float sc = powf(10.0f, (float)(b % 5 - 2));
		float off = b % 3 == 0 ? 1.0f : b % 3 == 1 ? -1.0f : 0.0f;
		x[i] = sc * (rnd() + off) * (i % 256 / 32 == 6 ? 1e-3f : 1.0f);
	}
	cr_assert_eq(dtype_quant_row(t, x, q, N), 0);
	cr_assert_eq(dtype_dequant_row(t, q, y, N), 0);
	double worst = 0.0, es = 0.0, rs = 0.0;
	for (int b = 0; b < NB; b++) {
		float lo = 0.0f, hi = 0.0f, emax = 0.0f;
		for (int j = 0; j < 256; j++) {
			lo = fminf(lo, x[b * 256 + j]);
			hi = fmaxf(hi, x[b * 256 + j]);
		}
		for (int j = 0; j < 256; j++) {
			float e = fabsf(x[b * 256 + j] - y[b * 256 + j]);
			emax = fmaxf(emax, e);
			es += (double)e * e / ((double)(hi - lo) * (hi - lo));
		}
		rs += 256.0;
		worst = fmax(worst, (double)emax / (hi - lo));
	}
	*max_rel = worst;
	*rms_rel = sqrt(es / rs);
	cr_log_info("%s: max |err| / range %.4f, rms %.4f", dtype_name(t), worst, *rms_rel);
}

Test(dtype, q4_k_round_trip_error_bounded_by_the_range)
{
	double mx, rms;
	kquant_roundtrip(DTYPE_Q4_K, &mx, &rms);
	/* 15 steps per sub-block (step = range / 15). The least-squares fit may
	 * clip an outlier, but keeps a squared error of at most plain rounding's,
	 * 32 (step/2)^2: one element is off by at most 1.41 steps; the 6-bit scale
	 * (d = largest scale / 63) rounded down clamps the top quant by up to 7.5 d,
	 * dmin rounding adds half a step of dmin: at most ~0.11 of the range;
	 * measured 0.051 here, 0.069 on generated models (gguf_check.py). A uniform
	 * rounding error has rms step/sqrt(12) = 0.019 of the range; measured
	 * 0.0155 (the fit beats plain rounding). */
	cr_expect_lt(mx, 0.12, "max error %.4f of the range", mx);
	cr_expect_lt(rms, 0.02, "rms error %.4f of the range", rms);
}

Test(dtype, q6_k_round_trip_within_one_step)
{
	double mx, rms;
	kquant_roundtrip(DTYPE_Q6_K, &mx, &rms);
	/* The extreme of each sub-block maps to -32 exactly, the clamp at +31 can
	 * cost one step, the int8 scale (d = largest scale / 128) adds up to 16 d
	 * on the largest quant: at most ~1.13 steps of the largest sub-block's
	 * step (|x| max / 32), i.e. about 1.13/32 of a range that contains zero
	 * and the extreme. Measured 0.0156 (max) and 0.0068 (rms). */
	cr_expect_lt(mx, 1.15 / 32.0, "max error %.4f of the range", mx);
	cr_expect_lt(rms, 0.3 / 32.0, "rms error %.4f of the range", rms);
}

ParameterizedTestParameters(dtype, k_quants_keep_zero_and_constant_blocks)
{
	static enum dtype types[] = { DTYPE_Q4_K, DTYPE_Q6_K };
	return cr_make_param_array(enum dtype, types, 2);
}

ParameterizedTest(enum dtype *t, dtype, k_quants_keep_zero_and_constant_blocks)
{
	/* |c| >= 0.25 keeps d an f16 normal for both types (below, d is subnormal
	 * and the format itself loses precision) */
	static const float consts[] = { 0.0f, 0.7f, -0.7f, 0.25f, -250.0f };
	float x[256], y[256];
	uint8_t q[210];
	for (size_t k = 0; k < sizeof consts / sizeof consts[0]; k++) {
		float c = consts[k];
		for (int i = 0; i < 256; i++)
			x[i] = c;
		memset(q, 0xa5, sizeof q); /* stale bytes must be overwritten */
		cr_assert_eq(dtype_quant_row(*t, x, q, 256), 0);
		cr_assert_eq(dtype_dequant_row(*t, q, y, 256), 0);
		/* exact up to the f16 rounding of d (and of d x the integer scale) */
		for (int i = 0; i < 256; i++)
			cr_assert(fabsf(y[i] - c) <= fabsf(c) * 2e-3f,
			          "%s constant %g: elem %d is %g", dtype_name(*t), c, i, y[i]);
		if (c == 0.0f)
			for (int i = 0; i < 256; i++)
				cr_assert(y[i] == 0.0f, "%s zero block: elem %d is %g", dtype_name(*t), i, y[i]);
	}
}

/* A NaN or infinity in the input is a bad model file, not a crash: the row
 * converts (to whatever values) and the rest of the row is unaffected. */
Test(dtype, k_quants_survive_non_finite_input)
{
	enum dtype types[] = { DTYPE_Q4_K, DTYPE_Q6_K };
	float x[512], y[512];
	uint8_t q[420];
	for (int i = 0; i < 512; i++)
		x[i] = rnd();
	x[3] = NAN;
	x[100] = INFINITY;
	for (int k = 0; k < 2; k++) {
		cr_assert_eq(dtype_quant_row(types[k], x, q, 512), 0);
		cr_assert_eq(dtype_dequant_row(types[k], q, y, 512), 0);
		for (int i = 256; i < 512; i++)
			cr_assert(fabsf(x[i] - y[i]) < 0.1f, "%s elem %d", dtype_name(types[k]), i);
	}
}
