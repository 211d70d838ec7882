/* Tests of engine/gguf: a hand-built file with every metadata type parses to
 * the right values; truncated and corrupted files fail with a message naming
 * the file and the culprit (never a crash); the getters' type rules; and the
 * real stories260K model when ../shared/models is present. inferd-mkmodel's
 * output is covered in test_mkmodel.c. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "test_util.h"

/* ---- a hand-built file ------------------------------------------------------------------- */

/* Offsets of fields in the sample file, for the corruption tests. */
struct sample {
	struct tbuf b;
	size_t off_version, off_n_tensors, off_n_kv;
	size_t off_key0_len;          /* length prefix of the first key */
	size_t off_str_len;           /* length prefix of a string value */
	size_t off_type_of_u8;        /* value type of "t.u8" */
	size_t off_strarr_count;      /* count of the string array */
	size_t off_strarr_elem1_len;  /* length of its second element */
	size_t off_bool;              /* the bool value byte */
	size_t off_align_value;       /* general.alignment value */
	size_t off_t0_name_len, off_t0_ndims, off_t0_ne0, off_t0_ne1, off_t0_type, off_t0_offset;
	size_t off_t1_offset;
	size_t off_data;
};

static void build_sample(struct sample *s)
{
	struct tbuf *b = &s->b;
	memset(s, 0, sizeof *s);
	tb_raw(b, "GGUF", 4);
	s->off_version = b->len;
	tb_u32(b, 3);
	s->off_n_tensors = b->len;
	tb_u64(b, 2);
	s->off_n_kv = b->len;
	tb_u64(b, 17);

	s->off_key0_len = b->len;
	tb_key(b, "t.u8", GGUF_VTYPE_UINT8);
	s->off_type_of_u8 = b->len - 4;
	tb_u8(b, 200);
	tb_key(b, "t.i8", GGUF_VTYPE_INT8); tb_u8(b, (uint8_t)-100);
	tb_key(b, "t.u16", GGUF_VTYPE_UINT16); tb_u16(b, 60000);
	tb_key(b, "t.i16", GGUF_VTYPE_INT16); tb_u16(b, (uint16_t)-30000);
	tb_key(b, "t.u32", GGUF_VTYPE_UINT32); tb_u32(b, 4000000000u);
	tb_key(b, "t.i32", GGUF_VTYPE_INT32); tb_u32(b, (uint32_t)-2000000000);
	tb_key(b, "t.f32", GGUF_VTYPE_FLOAT32); tb_f32(b, 0.25f);
	tb_key(b, "t.bool", GGUF_VTYPE_BOOL);
	s->off_bool = b->len;
	tb_u8(b, 1);
	tb_key(b, "t.str", GGUF_VTYPE_STRING);
	s->off_str_len = b->len;
	tb_str(b, "hello");
	tb_key(b, "t.u64", GGUF_VTYPE_UINT64); tb_u64(b, 0xfedcba9876543210ull);
	tb_key(b, "t.i64", GGUF_VTYPE_INT64); tb_u64(b, (uint64_t)-5);
	tb_key(b, "t.f64", GGUF_VTYPE_FLOAT64); tb_f64(b, -1.5);

	tb_key(b, "t.arr_str", GGUF_VTYPE_ARRAY);
	tb_u32(b, GGUF_VTYPE_STRING);
	s->off_strarr_count = b->len;
	tb_u64(b, 3);
	tb_str(b, "a");
	s->off_strarr_elem1_len = b->len;
	tb_str(b, "");
	tb_str(b, "\xe2\x96\x81the");
	tb_key(b, "t.arr_i16", GGUF_VTYPE_ARRAY);
	tb_u32(b, GGUF_VTYPE_INT16); tb_u64(b, 3);
	tb_u16(b, 1); tb_u16(b, (uint16_t)-2); tb_u16(b, 3);
	tb_key(b, "t.arr_f32", GGUF_VTYPE_ARRAY);
	tb_u32(b, GGUF_VTYPE_FLOAT32); tb_u64(b, 2);
	tb_f32(b, 1.5f); tb_f32(b, -2.0f);
	tb_key(b, "t.nested", GGUF_VTYPE_ARRAY); /* [[7, 8], ["x"]] */
	tb_u32(b, GGUF_VTYPE_ARRAY); tb_u64(b, 2);
	tb_u32(b, GGUF_VTYPE_UINT32); tb_u64(b, 2); tb_u32(b, 7); tb_u32(b, 8);
	tb_u32(b, GGUF_VTYPE_STRING); tb_u64(b, 1); tb_str(b, "x");
	tb_key(b, "general.alignment", GGUF_VTYPE_UINT32);
	s->off_align_value = b->len;
	tb_u32(b, 64);

	/* tensor 0: f32 [4, 2] at 0; tensor 1: q8_0 [32] at 64 */
	s->off_t0_name_len = b->len;
	tb_str(b, "w0");
	s->off_t0_ndims = b->len;
	tb_u32(b, 2);
	s->off_t0_ne0 = b->len;
	tb_u64(b, 4);
	s->off_t0_ne1 = b->len;
	tb_u64(b, 2);
	s->off_t0_type = b->len;
	tb_u32(b, DTYPE_F32);
	s->off_t0_offset = b->len;
	tb_u64(b, 0);
	tb_str(b, "w1");
	tb_u32(b, 1);
	tb_u64(b, 32);
	tb_u32(b, DTYPE_Q8_0);
	s->off_t1_offset = b->len;
	tb_u64(b, 64);

	while (b->len % 64)
		tb_u8(b, 0);
	s->off_data = b->len;
	for (int i = 0; i < 8; i++)
		tb_f32(b, (float)i);
	while (b->len % 64)
		tb_u8(b, 0);
	tb_u16(b, 0x3c00); /* d = 1 */
	for (int i = 0; i < 32; i++)
		tb_u8(b, (uint8_t)(i - 16));
	/* the file ends exactly at the end of the last tensor's data */
}

static int open_bytes(const struct tbuf *b, size_t len, struct gguf **g, char *err, size_t errlen)
{
	return gguf_open_memory(b->p, len, "sample.gguf", g, err, errlen);
}

Test(gguf, parses_every_metadata_type)
{
	struct sample s;
	struct gguf *g;
	char err[256];
	build_sample(&s);
	int rc = open_bytes(&s.b, s.b.len, &g, err, sizeof err);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(gguf_version(g), 3);
	cr_assert_eq(gguf_n_kv(g), 17);
	cr_assert_eq(gguf_alignment(g), 64);
	cr_assert_eq(gguf_data_offset(g), s.off_data);

	uint8_t u8; uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; float f; double d; bool bo;
	const char *str; size_t len;
	cr_assert_eq(gguf_get_u8(g, "t.u8", &u8), 0); cr_assert_eq(u8, 200);
	cr_assert_eq(gguf_get_int(g, "t.i8", &i64), 0); cr_assert_eq(i64, -100);
	cr_assert_eq(gguf_get_uint(g, "t.u16", &u64), 0); cr_assert_eq(u64, 60000);
	cr_assert_eq(gguf_get_int(g, "t.i16", &i64), 0); cr_assert_eq(i64, -30000);
	cr_assert_eq(gguf_get_u32(g, "t.u32", &u32), 0); cr_assert_eq(u32, 4000000000u);
	cr_assert_eq(gguf_get_i32(g, "t.i32", &i32), 0); cr_assert_eq(i32, -2000000000);
	cr_assert_eq(gguf_get_f32(g, "t.f32", &f), 0); cr_assert_eq(f, 0.25f);
	cr_assert_eq(gguf_get_bool(g, "t.bool", &bo), 0); cr_assert(bo);
	cr_assert_eq(gguf_get_str(g, "t.str", &str, &len), 0);
	cr_assert_str_eq(str, "hello"); cr_assert_eq(len, 5);
	cr_assert_eq(gguf_get_u64(g, "t.u64", &u64), 0); cr_assert_eq(u64, 0xfedcba9876543210ull);
	cr_assert_eq(gguf_get_int(g, "t.i64", &i64), 0); cr_assert_eq(i64, -5);
	cr_assert_eq(gguf_get_f64(g, "t.f64", &d), 0); cr_assert_eq(d, -1.5);
	cr_assert_eq(gguf_get_f32(g, "t.f64", &f), 0, "f32 getter accepts a float64");
	cr_assert_eq(f, -1.5f);

	const struct gguf_arr *a, *sub;
	cr_assert_eq(gguf_get_arr(g, "t.arr_str", &a), 0);
	cr_assert_eq(gguf_arr_type(a), GGUF_VTYPE_STRING);
	cr_assert_eq(gguf_arr_len(a), 3);
	cr_assert_eq(gguf_arr_get_str(a, 0, &str, &len), 0);
	cr_assert_eq(len, 1); cr_assert_eq(str[0], 'a');
	cr_assert_eq(gguf_arr_get_str(a, 1, &str, &len), 0); cr_assert_eq(len, 0);
	cr_assert_eq(gguf_arr_get_str(a, 2, &str, &len), 0);
	cr_assert_eq(len, 6); cr_assert_eq(memcmp(str, "\xe2\x96\x81the", 6), 0);
	cr_assert_eq(gguf_arr_get_str(a, 3, &str, &len), -ERANGE);
	cr_assert_null(gguf_arr_data(a));
	cr_assert_eq(gguf_get_arr(g, "t.arr_i16", &a), 0);
	cr_assert_eq(gguf_arr_get_int(a, 1, &i64), 0); cr_assert_eq(i64, -2);
	cr_assert_eq(gguf_arr_get_uint(a, 1, &u64), -ERANGE);
	cr_assert_eq(gguf_arr_get_uint(a, 2, &u64), 0); cr_assert_eq(u64, 3);
	cr_assert_eq(gguf_arr_get_f32(a, 0, &f), -EINVAL);
	cr_assert_eq(gguf_get_arr(g, "t.arr_f32", &a), 0);
	cr_assert_eq(gguf_arr_get_f32(a, 1, &f), 0); cr_assert_eq(f, -2.0f);
	cr_assert_not_null(gguf_arr_data(a));
	cr_assert_eq(gguf_get_arr(g, "t.nested", &a), 0);
	cr_assert_eq(gguf_arr_type(a), GGUF_VTYPE_ARRAY);
	cr_assert_eq(gguf_arr_sub(a, 0, &sub), 0);
	cr_assert_eq(gguf_arr_get_uint(sub, 1, &u64), 0); cr_assert_eq(u64, 8);
	cr_assert_eq(gguf_arr_sub(a, 1, &sub), 0);
	cr_assert_eq(gguf_arr_get_str(sub, 0, &str, &len), 0); cr_assert_eq(str[0], 'x');
	cr_assert_eq(gguf_arr_sub(a, 2, &sub), -ERANGE);

	cr_assert_eq(gguf_n_tensors(g), 2);
	const struct gguf_tensor_info *t = gguf_get_tensor(g, "w0");
	cr_assert_not_null(t);
	cr_assert_eq(t->type, DTYPE_F32);
	cr_assert_eq(t->n_dims, 2);
	cr_assert_eq(t->ne[0], 4); cr_assert_eq(t->ne[1], 2); cr_assert_eq(t->ne[2], 1);
	cr_assert_eq(t->nbytes, 32);
	cr_assert_eq(t->n_elements, 8);
	cr_assert_eq((const uint8_t *)t->data, s.b.p + s.off_data);
	float v7;
	memcpy(&v7, (const uint8_t *)t->data + 28, 4);
	cr_assert_eq(v7, 7.0f);
	t = gguf_tensor(g, gguf_find_tensor(g, "w1"));
	cr_assert_not_null(t);
	cr_assert_eq(t->nbytes, 34);
	cr_assert_eq((const uint8_t *)t->data + 34, s.b.p + s.b.len);
	cr_assert_null(gguf_get_tensor(g, "nope"));
	cr_assert_null(gguf_tensor(g, 2));
	gguf_free(g);
	tb_free(&s.b);
}

Test(gguf, getters_check_types_and_ranges)
{
	struct sample s;
	struct gguf *g;
	char err[256];
	build_sample(&s);
	cr_assert_eq(open_bytes(&s.b, s.b.len, &g, err, sizeof err), 0, "%s", err);
	uint32_t u32; uint64_t u64; int64_t i64; float f; const char *str; bool bo;
	const struct gguf_arr *a;
	cr_assert_eq(gguf_get_u32(g, "missing", &u32), -ENOENT);
	cr_assert_eq(gguf_get_u32(g, "t.i32", &u32), -EINVAL, "exact getter refuses int32");
	cr_assert_eq(gguf_get_uint32(g, "t.u8", &u32), 0, "any-int getter takes uint8");
	cr_assert_eq(u32, 200);
	cr_assert_eq(gguf_get_uint32(g, "t.u16", &u32), 0);
	cr_assert_eq(gguf_get_uint32(g, "t.i32", &u32), -ERANGE, "negative");
	cr_assert_eq(gguf_get_uint32(g, "t.u64", &u32), -ERANGE, "too big");
	cr_assert_eq(gguf_get_uint(g, "t.u64", &u64), 0);
	cr_assert_eq(gguf_get_int(g, "t.u64", &i64), -ERANGE);
	cr_assert_eq(gguf_get_uint(g, "t.str", &u64), -EINVAL);
	cr_assert_eq(gguf_get_uint(g, "t.bool", &u64), -EINVAL);
	cr_assert_eq(gguf_get_f32(g, "t.u32", &f), -EINVAL);
	cr_assert_eq(gguf_get_str(g, "t.u32", &str, NULL), -EINVAL);
	cr_assert_eq(gguf_get_bool(g, "t.u8", &bo), -EINVAL);
	cr_assert_eq(gguf_get_arr(g, "t.str", &a), -EINVAL);
	cr_assert_eq(gguf_find_key(g, "t.f64"), 11);
	cr_assert_str_eq(gguf_kv_key(g, 11), "t.f64");
	cr_assert_eq(gguf_kv_type(g, 11), GGUF_VTYPE_FLOAT64);
	cr_assert_null(gguf_kv_key(g, 17));
	cr_assert_eq(gguf_kv_type(g, -1), GGUF_VTYPE_COUNT);
	gguf_free(g);
	tb_free(&s.b);
}

Test(gguf, every_truncation_fails_cleanly)
{
	struct sample s;
	build_sample(&s);
	for (size_t len = 0; len < s.b.len; len++) {
		struct gguf *g = (struct gguf *)1;
		char err[256] = "";
		/* a fresh copy of exactly len bytes, so ASan sees any read past the end */
		uint8_t *copy = malloc(len ? len : 1);
		memcpy(copy, s.b.p, len);
		int rc = gguf_open_memory(copy, len, "sample.gguf", &g, err, sizeof err);
		cr_assert_lt(rc, 0, "truncated at %zu of %zu bytes but opened", len, s.b.len);
		cr_assert_null(g);
		cr_assert(strncmp(err, "sample.gguf: ", 13) == 0, "message names the file: '%s'", err);
		cr_assert_gt(strlen(err), 20, "message says why: '%s'", err);
		free(copy);
	}
	tb_free(&s.b);
}

/* One corruption of the sample: patch bytes at an offset, expect failure with
 * a message containing want. */
struct corruption {
	const char *what;
	size_t *off;
	int nbytes;
	uint64_t value;
	const char *want;
};

static void expect_fail(const struct sample *s0, const struct corruption *c)
{
	struct sample s = *s0;
	s.b.p = malloc(s0->b.len);
	memcpy(s.b.p, s0->b.p, s0->b.len);
	size_t off = *c->off; /* c->off points into the sample the cases were built from */
	for (int i = 0; i < c->nbytes; i++)
		s.b.p[off + (size_t)i] = (uint8_t)(c->value >> (8 * i));
	struct gguf *g = NULL;
	char err[256] = "";
	int rc = gguf_open_memory(s.b.p, s.b.len, "bad.gguf", &g, err, sizeof err);
	cr_expect_lt(rc, 0, "%s: opened", c->what);
	cr_expect_null(g);
	cr_expect_not_null(strstr(err, c->want), "%s: message '%s' lacks '%s'", c->what, err, c->want);
	cr_expect_not_null(strstr(err, "bad.gguf"), "%s: message '%s' lacks the file name", c->what, err);
	gguf_free(g);
	free(s.b.p);
}

Test(gguf, corrupt_fields_fail_with_a_reason)
{
	static struct sample s;
	build_sample(&s);
	const struct corruption cases[] = {
		{ "version 1", &s.off_version, 4, 1, "version 1" },
		{ "version 4", &s.off_version, 4, 4, "unsupported GGUF version 4" },
		{ "big-endian", &s.off_version, 4, 0x03000000, "big-endian" },
		{ "huge n_kv", &s.off_n_kv, 8, UINT64_MAX, "metadata count" },
		{ "huge n_tensors", &s.off_n_tensors, 8, 1ull << 40, "tensor count" },
		{ "huge key length", &s.off_key0_len, 8, UINT64_MAX, "metadata key 0" },
		{ "bad value type", &s.off_type_of_u8, 4, 13, "unknown value type 13" },
		{ "huge string", &s.off_str_len, 8, 1ull << 62, "t.str" },
		{ "huge string array", &s.off_strarr_count, 8, 1ull << 61, "t.arr_str" },
		{ "string element past end", &s.off_strarr_elem1_len, 8, 100000, "t.arr_str" },
		{ "bool 2", &s.off_bool, 1, 2, "t.bool" },
		{ "alignment 0", &s.off_align_value, 4, 0, "general.alignment" },
		{ "alignment 48", &s.off_align_value, 4, 48, "power of two" },
		{ "tensor name past end", &s.off_t0_name_len, 8, 1ull << 50, "name of tensor 0" },
		{ "5 dims", &s.off_t0_ndims, 4, 5, "'w0': 5 dimensions" },
		{ "negative ne", &s.off_t0_ne0, 8, (uint64_t)-4, "'w0': dimension 0 is negative" },
		{ "ne overflow", &s.off_t0_ne1, 8, 1ull << 62, "'w0'" },
		{ "type 4", &s.off_t0_type, 4, 4, "'w0': unknown tensor type 4" },
		{ "type 1000", &s.off_t0_type, 4, 1000, "unknown tensor type 1000" },
		{ "block size", &s.off_t0_type, 4, DTYPE_Q4_0, "block size" },
		{ "misaligned", &s.off_t0_offset, 8, 32, "'w0': data offset 32 is not a multiple" },
		{ "data past end", &s.off_t1_offset, 8, 128, "'w1': data" },
		{ "offset overflow", &s.off_t1_offset, 8, UINT64_MAX - 63, "past the end" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		expect_fail(&s, &cases[i]);

	/* bad magic, duplicate key, duplicate tensor name: patch text */
	struct tbuf *b = &s.b;
	uint8_t save[4];
	char err[256];
	struct gguf *g;
	memcpy(save, b->p, 4);
	memcpy(b->p, "GGUG", 4);
	cr_expect_eq(open_bytes(b, b->len, &g, err, sizeof err), -EBADMSG);
	cr_expect_not_null(strstr(err, "bad magic"), "%s", err);
	memcpy(b->p, save, 4);
	b->p[s.off_key0_len + 8 + 3] = '6'; /* "t.u8" -> "t.u6"; then make it "t.i8" */
	b->p[s.off_key0_len + 8 + 2] = 'i';
	b->p[s.off_key0_len + 8 + 3] = '8';
	cr_expect_lt(open_bytes(b, b->len, &g, err, sizeof err), 0);
	cr_expect_not_null(strstr(err, "duplicate metadata key 't.i8'"), "%s", err);
	b->p[s.off_key0_len + 8 + 2] = 'u';
	b->p[s.off_t0_name_len + 8 + 1] = '1'; /* "w0" -> "w1" */
	cr_expect_lt(open_bytes(b, b->len, &g, err, sizeof err), 0);
	cr_expect_not_null(strstr(err, "duplicate tensor name 'w1'"), "%s", err);
	b->p[s.off_t0_name_len + 8 + 1] = '0';
	cr_expect_eq(open_bytes(b, b->len, &g, err, sizeof err), 0, "restored: %s", err);
	gguf_free(g);
	tb_free(b);
}

Test(gguf, deep_nesting_and_huge_nested_counts_are_refused)
{
	struct tbuf b = { 0 };
	char err[256];
	struct gguf *g;
	tb_raw(&b, "GGUF", 4); tb_u32(&b, 3); tb_u64(&b, 0); tb_u64(&b, 1);
	tb_key(&b, "deep", GGUF_VTYPE_ARRAY);
	for (int i = 0; i < 6; i++) {
		tb_u32(&b, GGUF_VTYPE_ARRAY);
		tb_u64(&b, 1);
	}
	tb_u32(&b, GGUF_VTYPE_UINT8); tb_u64(&b, 1); tb_u8(&b, 1);
	cr_assert_lt(open_bytes(&b, b.len, &g, err, sizeof err), 0);
	cr_assert_not_null(strstr(err, "nested deeper"), "%s", err);
	tb_free(&b);

	memset(&b, 0, sizeof b);
	tb_raw(&b, "GGUF", 4); tb_u32(&b, 2); tb_u64(&b, 0); tb_u64(&b, 1);
	tb_key(&b, "wide", GGUF_VTYPE_ARRAY);
	tb_u32(&b, GGUF_VTYPE_ARRAY); tb_u64(&b, 1ull << 60);
	cr_assert_lt(open_bytes(&b, b.len, &g, err, sizeof err), 0);
	cr_assert_not_null(strstr(err, "wide"), "%s", err);
	tb_free(&b);
}

Test(gguf, version_2_and_vocab_only_files_open)
{
	struct tbuf b = { 0 };
	char err[256];
	struct gguf *g;
	tb_raw(&b, "GGUF", 4); tb_u32(&b, 2); tb_u64(&b, 0); tb_u64(&b, 1);
	tb_key(&b, "tokenizer.ggml.model", GGUF_VTYPE_STRING); tb_str(&b, "llama");
	/* no tensors, no padding to the alignment after the header */
	cr_assert_eq(open_bytes(&b, b.len, &g, err, sizeof err), 0, "%s", err);
	cr_assert_eq(gguf_version(g), 2);
	cr_assert_eq(gguf_alignment(g), GGUF_DEFAULT_ALIGNMENT);
	cr_assert_eq(gguf_n_tensors(g), 0);
	gguf_free(g);
	tb_free(&b);
}

Test(gguf, random_corruption_never_crashes)
{
	struct sample s;
	build_sample(&s);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	uint8_t *copy = malloc(s.b.len);
	int opened = 0;
	for (int iter = 0; iter < 20000; iter++) {
		memcpy(copy, s.b.p, s.b.len);
		int flips = 1 + iter % 4;
		for (int k = 0; k < flips; k++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			size_t at = (size_t)(x % s.off_data);
			copy[at] = (uint8_t)(x >> 32);
		}
		struct gguf *g = NULL;
		char err[256];
		if (gguf_open_memory(copy, s.b.len, "r.gguf", &g, err, sizeof err) == 0) {
			opened++;
			for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
				const struct gguf_tensor_info *t = gguf_tensor(g, i);
				if (t->nbytes)
					cr_assert((const uint8_t *)t->data + t->nbytes <= copy + s.b.len);
			}
			gguf_free(g);
		} else {
			cr_assert(err[0] != '\0');
		}
	}
	cr_log_info("random corruption: %d of 20000 still opened", opened);
	free(copy);
	tb_free(&s.b);
}

/* ---- files on disk ----------------------------------------------------------------------------- */

Test(gguf, open_reports_missing_empty_and_non_regular_files)
{
	struct gguf *g = (struct gguf *)1;
	char err[512], dir[] = "/tmp/inferd-gguf-XXXXXX", path[600];
	cr_assert_eq(gguf_open("/nonexistent/x.gguf", &g, err, sizeof err), -ENOENT);
	cr_assert_null(g);
	cr_assert_not_null(strstr(err, "/nonexistent/x.gguf"), "%s", err);
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_lt(gguf_open(dir, &g, err, sizeof err), 0);
	cr_assert_not_null(strstr(err, "not a regular file"), "%s", err);
	snprintf(path, sizeof path, "%s/empty.gguf", dir);
	close(open(path, O_CREAT | O_WRONLY, 0644));
	cr_assert_lt(gguf_open(path, &g, err, sizeof err), 0);
	cr_assert_not_null(strstr(err, "empty"), "%s", err);
	unlink(path);
	rmdir(dir);
	gguf_free(NULL);
}

Test(gguf, open_maps_a_file_and_aligns_tensor_data)
{
	struct sample s;
	char path[] = "/tmp/inferd-gguf-XXXXXX";
	char err[512];
	struct gguf *g;
	build_sample(&s);
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, s.b.p, s.b.len), (ssize_t)s.b.len);
	close(fd);
	cr_assert_eq(gguf_open(path, &g, err, sizeof err), 0, "%s", err);
	const struct gguf_tensor_info *t = gguf_get_tensor(g, "w1");
	cr_assert_eq((uintptr_t)t->data % 64, 0, "tensor data aligned in memory");
	cr_assert_eq(((const int8_t *)t->data)[2 + 31], 15);
	gguf_free(g);
	unlink(path);
	tb_free(&s.b);
}

Test(gguf, real_stories260k_model)
{
	const char *path = getenv("INFERD_STORIES260K");
	if (path == NULL || access(path, R_OK) != 0)
		cr_skip_test("stories260K.gguf not found (%s): ../shared/models is absent in this "
		             "checkout", path ? path : "INFERD_STORIES260K unset");
	struct gguf *g;
	char err[512];
	cr_assert_eq(gguf_open(path, &g, err, sizeof err), 0, "%s", err);
	const char *arch;
	uint32_t v;
	float eps;
	cr_assert_eq(gguf_get_str(g, "general.architecture", &arch, NULL), 0);
	cr_assert_str_eq(arch, "llama");
	struct { const char *key; uint32_t want; } hp[] = {
		{ "llama.embedding_length", 64 }, { "llama.block_count", 5 },
		{ "llama.attention.head_count", 8 }, { "llama.attention.head_count_kv", 4 },
		{ "llama.context_length", 128 }, { "llama.feed_forward_length", 172 },
	};
	for (size_t i = 0; i < sizeof hp / sizeof hp[0]; i++) {
		cr_assert_eq(gguf_get_uint32(g, hp[i].key, &v), 0, "%s", hp[i].key);
		cr_assert_eq(v, hp[i].want, "%s = %u", hp[i].key, v);
	}
	cr_assert_eq(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps), 0);
	cr_assert_float_eq(eps, 1e-5f, 1e-9f);
	const struct gguf_arr *tok;
	cr_assert_eq(gguf_get_arr(g, "tokenizer.ggml.tokens", &tok), 0);
	cr_assert_eq(gguf_arr_len(tok), 512);
	const char *s;
	size_t len;
	cr_assert_eq(gguf_arr_get_str(tok, 1, &s, &len), 0);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(s, "<s>", 3), 0);

	const uint8_t *base = gguf_file_data(g), *end = base + gguf_file_size(g);
	cr_assert_eq(gguf_n_tensors(g), 48);
	for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
		const struct gguf_tensor_info *t = gguf_tensor(g, i);
		cr_assert_eq(t->type, DTYPE_F32, "%s", t->name);
		cr_assert((const uint8_t *)t->data >= base + gguf_data_offset(g), "%s", t->name);
		cr_assert((const uint8_t *)t->data + t->nbytes <= end, "%s", t->name);
		cr_assert_eq(t->nbytes, t->n_elements * 4, "%s", t->name);
	}
	const struct gguf_tensor_info *emb = gguf_get_tensor(g, "token_embd.weight");
	cr_assert_not_null(emb);
	cr_assert_eq(emb->ne[0], 64);
	cr_assert_eq(emb->ne[1], 512);
	const struct gguf_tensor_info *down = gguf_get_tensor(g, "blk.4.ffn_down.weight");
	cr_assert_not_null(down);
	cr_assert_eq(down->ne[0], 172);
	cr_assert_eq(down->ne[1], 64);

	/* every prefix of the header region fails cleanly */
	size_t hdr = (size_t)gguf_data_offset(g);
	for (size_t len2 = 0; len2 < hdr; len2++) {
		struct gguf *h;
		uint8_t *copy = malloc(len2 ? len2 : 1);
		memcpy(copy, base, len2);
		cr_assert_lt(gguf_open_memory(copy, len2, "stories", &h, err, sizeof err), 0, "%zu", len2);
		free(copy);
	}
	gguf_free(g);
}
