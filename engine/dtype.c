/* Tensor type table and scalar reference conversions. The block layouts follow
 * the GGML quantization formats as documented for GGUF; every format here is
 * little-endian and packed (no padding inside a block). */
#include "dtype.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <strings.h>

/* ---- the type table ----------------------------------------------------- */

struct dtype_info {
	const char *name; /* NULL: id not in use */
	int64_t blck;     /* elements per block */
	size_t bytes;     /* bytes per block */
};

static const struct dtype_info dtype_table[DTYPE_COUNT] = {
	[DTYPE_F32] = { "F32", 1, 4 },
	[DTYPE_F16] = { "F16", 1, 2 },
	[DTYPE_Q4_0] = { "Q4_0", 32, 18 },
	[DTYPE_Q4_1] = { "Q4_1", 32, 20 },
	[DTYPE_Q5_0] = { "Q5_0", 32, 22 },
	[DTYPE_Q5_1] = { "Q5_1", 32, 24 },
	[DTYPE_Q8_0] = { "Q8_0", 32, 34 },
	[DTYPE_Q8_1] = { "Q8_1", 32, 36 },
	[DTYPE_Q2_K] = { "Q2_K", 256, 84 },
	[DTYPE_Q3_K] = { "Q3_K", 256, 110 },
	[DTYPE_Q4_K] = { "Q4_K", 256, 144 },
	[DTYPE_Q5_K] = { "Q5_K", 256, 176 },
	[DTYPE_Q6_K] = { "Q6_K", 256, 210 },
	[DTYPE_Q8_K] = { "Q8_K", 256, 292 },
	[DTYPE_IQ2_XXS] = { "IQ2_XXS", 256, 66 },
	[DTYPE_IQ2_XS] = { "IQ2_XS", 256, 74 },
	[DTYPE_IQ3_XXS] = { "IQ3_XXS", 256, 98 },
	[DTYPE_IQ1_S] = { "IQ1_S", 256, 50 },
	[DTYPE_IQ4_NL] = { "IQ4_NL", 32, 18 },
	[DTYPE_IQ3_S] = { "IQ3_S", 256, 110 },
	[DTYPE_IQ2_S] = { "IQ2_S", 256, 82 },
	[DTYPE_IQ4_XS] = { "IQ4_XS", 256, 136 },
	[DTYPE_I8] = { "I8", 1, 1 },
	[DTYPE_I16] = { "I16", 1, 2 },
	[DTYPE_I32] = { "I32", 1, 4 },
	[DTYPE_I64] = { "I64", 1, 8 },
	[DTYPE_F64] = { "F64", 1, 8 },
	[DTYPE_IQ1_M] = { "IQ1_M", 256, 56 },
	[DTYPE_BF16] = { "BF16", 1, 2 },
	[DTYPE_TQ1_0] = { "TQ1_0", 256, 54 },
	[DTYPE_TQ2_0] = { "TQ2_0", 256, 66 },
	[DTYPE_MXFP4] = { "MXFP4", 32, 17 },
};

bool dtype_valid(uint32_t id)
{
	return id < DTYPE_COUNT && dtype_table[id].name != NULL;
}

const char *dtype_name(uint32_t id)
{
	return dtype_valid(id) ? dtype_table[id].name : NULL;
}

int dtype_from_name(const char *name, enum dtype *out)
{
	if (name == NULL)
		return -EINVAL;
	for (uint32_t i = 0; i < DTYPE_COUNT; i++) {
		if (dtype_table[i].name && strcasecmp(dtype_table[i].name, name) == 0) {
			*out = (enum dtype)i;
			return 0;
		}
	}
	return -EINVAL;
}

int64_t dtype_block_elems(uint32_t id)
{
	return dtype_valid(id) ? dtype_table[id].blck : 0;
}

size_t dtype_block_bytes(uint32_t id)
{
	return dtype_valid(id) ? dtype_table[id].bytes : 0;
}

int dtype_row_size(uint32_t id, int64_t n, uint64_t *out)
{
	if (!dtype_valid(id) || n < 0 || n % dtype_table[id].blck != 0)
		return -EINVAL;
	uint64_t blocks = (uint64_t)(n / dtype_table[id].blck);
	uint64_t bytes = dtype_table[id].bytes;
	if (blocks != 0 && bytes > UINT64_MAX / blocks)
		return -EOVERFLOW;
	*out = blocks * bytes;
	return 0;
}

bool dtype_can_dequant(uint32_t id)
{
	switch (id) {
	case DTYPE_F32: case DTYPE_F16: case DTYPE_BF16: case DTYPE_Q8_0:
	case DTYPE_Q4_0: case DTYPE_Q4_K: case DTYPE_Q6_K:
		return true;
	default:
		return false;
	}
}

bool dtype_can_quant(uint32_t id)
{
	switch (id) {
	case DTYPE_F32: case DTYPE_F16: case DTYPE_BF16: case DTYPE_Q8_0: case DTYPE_Q4_0:
	case DTYPE_Q4_K: case DTYPE_Q6_K:
		return true;
	default:
		return false;
	}
}

/* ---- half and bfloat16 --------------------------------------------------- */

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

float dtype_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t mant = h & 0x3ffu;

	if (exp == 0) {
		if (mant == 0)
			return bits_f32(sign);
		/* subnormal half: mant * 2^-24; normalise into an f32 normal */
		uint32_t e = 113;
		while (!(mant & 0x400u)) {
			mant <<= 1;
			e--;
		}
		mant &= 0x3ffu;
		return bits_f32(sign | (e << 23) | (mant << 13));
	}
	if (exp == 31) /* inf, or NaN with its payload */
		return bits_f32(sign | 0x7f800000u | (mant << 13));
	return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t dtype_f32_to_f16(float f)
{
	uint32_t x = f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
	uint32_t ax = x & 0x7fffffffu;

	if (ax >= 0x7f800000u) { /* inf or NaN: keep the top payload bits, force quiet */
		if (ax == 0x7f800000u)
			return sign | 0x7c00u;
		return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
	}
	if (ax >= 0x477ff000u) /* >= 65520 rounds to infinity */
		return sign | 0x7c00u;
	if (ax < 0x38800000u) { /* below 2^-14: half subnormal (or zero) */
		if (ax <= 0x33000000u) /* <= 2^-25: rounds (ties to even) to zero */
			return sign;
		uint32_t e = ax >> 23;
		uint32_t m = (ax & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e; /* 14..24 */
		uint32_t r = m >> shift;
		uint32_t rem = m & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);
		if (rem > half || (rem == half && (r & 1u)))
			r++;
		return (uint16_t)(sign | r);
	}
	uint32_t r = ax - 0x38000000u; /* rebias the exponent from 127 to 15 */
	uint32_t h = r >> 13;
	uint32_t rem = r & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
		h++; /* a carry into the exponent is the correct rounding */
	return (uint16_t)(sign | h);
}

float dtype_bf16_to_f32(uint16_t h)
{
	return bits_f32((uint32_t)h << 16);
}

uint16_t dtype_f32_to_bf16(float f)
{
	uint32_t x = f32_bits(f);
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 0x40u);
	x += 0x7fffu + ((x >> 16) & 1u);
	return (uint16_t)(x >> 16);
}

/* ---- F16C fast path --------------------------------------------------------------
 * Converting whole f16 rows is the hot part of loading f16 weights; the
 * development CPUs have F16C (see DESIGN.md). Chosen at run time, so the build
 * needs no -mf16c and other x86-64 CPUs use the scalar code. The hardware
 * conversion is exact like the scalar one; it only differs for signalling
 * NaNs, which it quiets. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define DTYPE_HAVE_F16C_PATH 1

__attribute__((target("f16c,avx"))) static int64_t f16_row_f16c(const uint8_t *s, float *dst,
                                                                 int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m128i h = _mm_loadu_si128((const __m128i *)(const void *)(s + 2 * i));
		_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
	}
	return i;
}

/* CPUID leaf 1: OSXSAVE (ecx 27), AVX (28), F16C (29); XGETBV: the OS saves YMM state. */
static bool have_f16c(void)
{
	static int cached = -1; /* read and written atomically: loaders may run in parallel */
	int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	if (v < 0) {
		unsigned a, b, c, d;
		const unsigned need = (1u << 27) | (1u << 28) | (1u << 29);
		v = 0;
		if (__get_cpuid(1, &a, &b, &c, &d) && (c & need) == need) {
			uint32_t lo, hi;
			__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
			v = (lo & 6u) == 6u;
		}
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	}
	return v;
}
#endif

/* ---- block formats -------------------------------------------------------- */

static uint16_t ld16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static void st16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v & 0xff);
	p[1] = (uint8_t)(v >> 8);
}

/* Q8_0: x[i] = d * qs[i] */
static void dequant_q8_0(const uint8_t *b, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, b += DTYPE_Q8_0_BYTES, y += 32) {
		float d = dtype_f16_to_f32(ld16(b));
		for (int j = 0; j < 32; j++)
			y[j] = d * (float)(int8_t)b[2 + j];
	}
}

/* Q4_0: element j of the low half is the low nibble of qs[j], element j+16 the
 * high nibble; x = d * (q - 8). */
static void dequant_q4_0(const uint8_t *b, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, b += DTYPE_Q4_0_BYTES, y += 32) {
		float d = dtype_f16_to_f32(ld16(b));
		const uint8_t *qs = b + 2;
		for (int j = 0; j < 16; j++) {
			y[j] = d * (float)((int)(qs[j] & 0x0f) - 8);
			y[j + 16] = d * (float)((int)(qs[j] >> 4) - 8);
		}
	}
}

/* Q4_K: 8 sub-blocks of 32 with a 6-bit scale and a 6-bit min each, packed in
 * scales[12]: sub-block j < 4 keeps its scale in the low 6 bits of scales[j]
 * and its min in the low 6 bits of scales[j+4]; sub-block j >= 4 keeps the low
 * 4 bits of scale/min in the nibbles of scales[j+4] and the top 2 bits in the
 * top bits of scales[j-4] / scales[j]. x = d*sc*q - dmin*m. Sub-blocks 2k and
 * 2k+1 share qs[32k..32k+31]: low nibbles for 2k, high nibbles for 2k+1. */
static void q4_k_scale_min(int j, const uint8_t *s, int *sc, int *m)
{
	if (j < 4) {
		*sc = s[j] & 63;
		*m = s[j + 4] & 63;
	} else {
		*sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
		*m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
	}
}

static void dequant_q4_k(const uint8_t *b, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, b += DTYPE_Q4_K_BYTES) {
		float d = dtype_f16_to_f32(ld16(b));
		float dmin = dtype_f16_to_f32(ld16(b + 2));
		const uint8_t *scales = b + 4;
		const uint8_t *qs = b + 16;
		for (int k = 0; k < 4; k++, qs += 32) {
			int sc0, m0, sc1, m1;
			q4_k_scale_min(2 * k, scales, &sc0, &m0);
			q4_k_scale_min(2 * k + 1, scales, &sc1, &m1);
			float d0 = d * (float)sc0, mm0 = dmin * (float)m0;
			float d1 = d * (float)sc1, mm1 = dmin * (float)m1;
			for (int l = 0; l < 32; l++)
				*y++ = d0 * (float)(qs[l] & 0x0f) - mm0;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * (float)(qs[l] >> 4) - mm1;
		}
	}
}

/* Q6_K: 16 sub-blocks of 16 with signed 8-bit scales; each 6-bit quant has its
 * low 4 bits in ql and its high 2 bits in qh; x = d * sc * (q - 32). Each half
 * (128 elements) uses ql[64], qh[32], scales[8]: for l < 32, element l takes
 * the low nibble of ql[l] and bits 0-1 of qh[l]; l+32 the low nibble of
 * ql[l+32] and bits 2-3; l+64 the high nibble of ql[l] and bits 4-5; l+96 the
 * high nibble of ql[l+32] and bits 6-7. Scale index: l/16 + 2*quarter. */
static void dequant_q6_k(const uint8_t *b, float *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, b += DTYPE_Q6_K_BYTES) {
		const uint8_t *ql = b;
		const uint8_t *qh = b + 128;
		const int8_t *sc = (const int8_t *)(b + 192);
		float d = dtype_f16_to_f32(ld16(b + 208));
		for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
			for (int l = 0; l < 32; l++) {
				int is = l / 16;
				int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
				int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
				y[l] = d * (float)sc[is] * (float)q1;
				y[l + 32] = d * (float)sc[is + 2] * (float)q2;
				y[l + 64] = d * (float)sc[is + 4] * (float)q3;
				y[l + 96] = d * (float)sc[is + 6] * (float)q4;
			}
		}
	}
}

/* Q8_0 quantization: d = max|x| / 127, q = round(x / d). */
static void quant_q8_0(const float *x, uint8_t *b, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += 32, b += DTYPE_Q8_0_BYTES) {
		float amax = 0.0f;
		for (int j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(x[j]));
		float d = amax / 127.0f;
		float id = d != 0.0f ? 1.0f / d : 0.0f;
		st16(b, dtype_f32_to_f16(d));
		for (int j = 0; j < 32; j++) {
			float v = roundf(x[j] * id);
			v = fminf(127.0f, fmaxf(-127.0f, v)); /* NaN input gives -127 */
			b[2 + j] = (uint8_t)(int8_t)v;
		}
	}
}

/* Q4_0 quantization: the element of largest magnitude m maps to -8 exactly
 * (d = m / -8); others to q = clamp(round(x/d) + 8, 0, 15). */
static void quant_q4_0(const float *x, uint8_t *b, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += 32, b += DTYPE_Q4_0_BYTES) {
		float amax = 0.0f, m = 0.0f;
		for (int j = 0; j < 32; j++) {
			if (fabsf(x[j]) > amax) {
				amax = fabsf(x[j]);
				m = x[j];
			}
		}
		float d = m / -8.0f;
		float id = d != 0.0f ? 1.0f / d : 0.0f;
		st16(b, dtype_f32_to_f16(d));
		for (int j = 0; j < 16; j++) {
			float v0 = fminf(15.0f, fmaxf(0.0f, x[j] * id + 8.5f));
			float v1 = fminf(15.0f, fmaxf(0.0f, x[j + 16] * id + 8.5f));
			b[2 + j] = (uint8_t)((uint8_t)v0 | ((uint8_t)v1 << 4));
		}
	}
}

/* ---- K-quant quantization --------------------------------------------------------
 * Written as the inverse of dequant_q4_k / dequant_q6_k above. Each sub-block
 * gets its own float scale first; the scales are then quantized against the
 * super-block's f16 d (and dmin), and the quants are chosen with the scales as
 * stored, so the rounding of the scales costs range, not an offset. */

/* Nearest integer of v clamped to [lo, hi]; a NaN gives lo (never a UB cast). */
static int qclamp(float v, float lo, float hi)
{
	return (int)fminf(hi, fmaxf(lo, roundf(v)));
}

/* Q4_K sub-block of 32: x ~ scale * q - m with q in 0..15, m >= 0 (the min is
 * min(0, min x), so zero stays representable). Starts from the full range and
 * tries a few nearby step counts, refitting scale and min by least squares to
 * the chosen q; keeps the fit of least squared error. */
static void q4_k_fit(const float *x, float *scale, float *m)
{
	float lo = 0.0f, hi = x[0];
	for (int i = 0; i < 32; i++) {
		lo = fminf(lo, x[i]);
		hi = fmaxf(hi, x[i]);
	}
	*scale = 0.0f;
	*m = -lo;
	if (!(hi > lo)) /* constant <= 0 (or NaN): the min alone is exact */
		return;
	float best_s = (hi - lo) / 15.0f, best_lo = lo, best_err = INFINITY;
	for (int is = -2; is <= 12; is++) {
		float iscale = (15.0f + 0.1f * (float)is) / (hi - lo);
		float s = best_s, mn = best_lo;
		if (is > -2) { /* is == -2: the plain full-range choice as computed */
			double sl = 0, sl2 = 0, sxl = 0, sx = 0;
			for (int i = 0; i < 32; i++) {
				int q = qclamp(iscale * (x[i] - lo), 0.0f, 15.0f);
				sl += q;
				sl2 += (double)q * q;
				sxl += (double)x[i] * q;
				sx += x[i];
			}
			double det = 32.0 * sl2 - sl * sl;
			if (det <= 0.0)
				continue;
			s = (float)((32.0 * sxl - sx * sl) / det);
			mn = (float)((sl2 * sx - sl * sxl) / det);
			if (mn > 0.0f) { /* the min must stay <= 0: refit the scale alone */
				mn = 0.0f;
				s = sl2 > 0.0 ? (float)(sxl / sl2) : 0.0f;
			}
			if (!(s > 0.0f))
				continue;
		}
		float err = 0.0f;
		for (int i = 0; i < 32; i++) {
			float y = s * (float)qclamp((x[i] - mn) / s, 0.0f, 15.0f) + mn;
			err += (x[i] - y) * (x[i] - y);
		}
		if (err < best_err) {
			best_err = err;
			best_s = s;
			best_lo = mn;
		}
	}
	*scale = best_s;
	*m = -best_lo;
}

static void quant_q4_k(const float *x, uint8_t *b, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += 256, b += DTYPE_Q4_K_BYTES) {
		float scale[8], mins[8], smax = 0.0f, mmax = 0.0f;
		for (int j = 0; j < 8; j++) {
			q4_k_fit(x + 32 * j, &scale[j], &mins[j]);
			smax = fmaxf(smax, scale[j]);
			mmax = fmaxf(mmax, mins[j]);
		}
		uint16_t dh = dtype_f32_to_f16(smax / 63.0f), mh = dtype_f32_to_f16(mmax / 63.0f);
		float d = dtype_f16_to_f32(dh), dmin = dtype_f16_to_f32(mh);
		float id = d > 0.0f ? 1.0f / d : 0.0f, idmin = dmin > 0.0f ? 1.0f / dmin : 0.0f;
		int sc[8], m[8];
		for (int j = 0; j < 8; j++) {
			sc[j] = qclamp(scale[j] * id, 0.0f, 63.0f);
			m[j] = qclamp(mins[j] * idmin, 0.0f, 63.0f);
		}
		st16(b, dh);
		st16(b + 2, mh);
		uint8_t *s = b + 4, *qs = b + 16;
		for (int j = 0; j < 4; j++) {
			s[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
			s[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
			s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
		}
		memset(qs, 0, 128);
		for (int j = 0; j < 8; j++) {
			float ds = d * (float)sc[j], dm = dmin * (float)m[j];
			float ids = ds > 0.0f ? 1.0f / ds : 0.0f;
			uint8_t *q = qs + 32 * (j / 2);
			for (int l = 0; l < 32; l++) {
				int v = qclamp((x[32 * j + l] + dm) * ids, 0.0f, 15.0f);
				q[l] |= (uint8_t)(j % 2 ? v << 4 : v);
			}
		}
	}
}

/* Q6_K: each sub-block of 16 maps its element of largest magnitude v to -32
 * (scale v / -32), like Q4_0; the scales are then int8 against d = the scale
 * of largest magnitude / -128. */
static void quant_q6_k(const float *x, uint8_t *b, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += 256, b += DTYPE_Q6_K_BYTES) {
		float scale[16], smax = 0.0f;
		for (int j = 0; j < 16; j++) {
			float amax = 0.0f, v = 0.0f;
			for (int l = 0; l < 16; l++) {
				if (fabsf(x[16 * j + l]) > amax) {
					amax = fabsf(x[16 * j + l]);
					v = x[16 * j + l];
				}
			}
			scale[j] = v / -32.0f;
			if (fabsf(scale[j]) > fabsf(smax))
				smax = scale[j];
		}
		uint16_t dh = dtype_f32_to_f16(smax / -128.0f);
		float d = dtype_f16_to_f32(dh);
		float id = d != 0.0f ? 1.0f / d : 0.0f;
		uint8_t *ql = b, *qh = b + 128;
		int8_t *sc = (int8_t *)(b + 192);
		memset(b, 0, 192);
		for (int j = 0; j < 16; j++) {
			sc[j] = (int8_t)qclamp(scale[j] * id, -128.0f, 127.0f);
			float ds = d * (float)sc[j];
			float ids = ds != 0.0f ? 1.0f / ds : 0.0f;
			for (int l = 0; l < 16; l++) {
				int e = 16 * j + l; /* element e of the block */
				int q = qclamp(x[e] * ids, -32.0f, 31.0f) + 32;
				int h = e / 128, r = e % 128, quarter = r / 32, k = r % 32;
				int lo = q & 15, hi = q >> 4;
				uint8_t *p = ql + 64 * h + k + 32 * (quarter & 1);
				*p |= (uint8_t)(quarter < 2 ? lo : lo << 4);
				qh[32 * h + k] |= (uint8_t)(hi << (2 * quarter));
			}
		}
		st16(b + 208, dh);
	}
}

int dtype_dequant_row(uint32_t id, const void *src, float *dst, int64_t n)
{
	if (!dtype_valid(id) || n < 0 || n % dtype_table[id].blck != 0)
		return -EINVAL;
	const uint8_t *s = src;
	int64_t nb = n / dtype_table[id].blck;
	switch (id) {
	case DTYPE_F32:
		memcpy(dst, s, (size_t)n * sizeof(float));
		return 0;
	case DTYPE_F16: {
		int64_t i = 0;
#ifdef DTYPE_HAVE_F16C_PATH
		if (have_f16c())
			i = f16_row_f16c(s, dst, n);
#endif
		for (; i < n; i++)
			dst[i] = dtype_f16_to_f32(ld16(s + 2 * i));
		return 0;
	}
	case DTYPE_BF16:
		for (int64_t i = 0; i < n; i++)
			dst[i] = dtype_bf16_to_f32(ld16(s + 2 * i));
		return 0;
	case DTYPE_Q8_0: dequant_q8_0(s, dst, nb); return 0;
	case DTYPE_Q4_0: dequant_q4_0(s, dst, nb); return 0;
	case DTYPE_Q4_K: dequant_q4_k(s, dst, nb); return 0;
	case DTYPE_Q6_K: dequant_q6_k(s, dst, nb); return 0;
	default:
		return -ENOTSUP;
	}
}

int dtype_quant_row(uint32_t id, const float *src, void *dst, int64_t n)
{
	if (!dtype_valid(id) || n < 0 || n % dtype_table[id].blck != 0)
		return -EINVAL;
	uint8_t *d = dst;
	int64_t nb = n / dtype_table[id].blck;
	switch (id) {
	case DTYPE_F32:
		memcpy(d, src, (size_t)n * sizeof(float));
		return 0;
	case DTYPE_F16:
		for (int64_t i = 0; i < n; i++)
			st16(d + 2 * i, dtype_f32_to_f16(src[i]));
		return 0;
	case DTYPE_BF16:
		for (int64_t i = 0; i < n; i++)
			st16(d + 2 * i, dtype_f32_to_bf16(src[i]));
		return 0;
	case DTYPE_Q8_0: quant_q8_0(src, d, nb); return 0;
	case DTYPE_Q4_0: quant_q4_0(src, d, nb); return 0;
	case DTYPE_Q4_K: quant_q4_k(src, d, nb); return 0;
	case DTYPE_Q6_K: quant_q6_k(src, d, nb); return 0;
	default:
		return -ENOTSUP;
	}
}
