/* Tests of the safetensors reader and writer: a write/read round trip, lenient
 * cases real files need (other dtypes, gaps, scalars, padding), and every
 * malformed header failing with a message that says what is wrong. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"

static char tmpdir[] = "/tmp/inferd-st-test-XXXXXX";

static void setup(void)
{
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", tmpdir);
}

TestSuite(safetensors, .init = setup, .fini = teardown, .timeout = 60);

/* header length + header + data_len bytes of data (value i & 0xff at byte i) */
static uint8_t *build(const char *json, size_t data_len, size_t *len)
{
	size_t n = strlen(json);
	uint8_t *p = malloc(8 + n + data_len + 1);
	cr_assert_not_null(p);
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)((uint64_t)n >> (8 * i));
	memcpy(p + 8, json, n);
	for (size_t i = 0; i < data_len; i++)
		p[8 + n + i] = (uint8_t)i;
	*len = 8 + n + data_len;
	return p;
}

static int open_json(const char *json, size_t data_len, char *err, size_t errlen)
{
	size_t len;
	uint8_t *p = build(json, data_len, &len);
	struct st_file *f = NULL;
	int rc = st_open_memory(p, len, "case.safetensors", &f, err, errlen);
	st_free(f);
	free(p);
	return rc;
}

/* ---- round trip ------------------------------------------------------------------- */

static int fill_values(size_t idx, void *buf, size_t nbytes, void *arg)
{
	(void)arg;
	uint8_t *b = buf;
	if (idx == 0) { /* F32 [2, 3]: 0.5 * i */
		for (int i = 0; i < 6; i++) {
			float v = 0.5f * (float)i;
			memcpy(b + 4 * i, &v, 4);
		}
	} else if (idx == 1) { /* F16 [4]: -1, 0, 1, 2 */
		for (int i = 0; i < 4; i++) {
			uint16_t h = dtype_f32_to_f16((float)(i - 1));
			b[2 * i] = (uint8_t)h;
			b[2 * i + 1] = (uint8_t)(h >> 8);
		}
	} else if (idx == 2) { /* BF16 [1, 2]: 3, -4 */
		uint16_t h0 = dtype_f32_to_bf16(3.0f), h1 = dtype_f32_to_bf16(-4.0f);
		b[0] = (uint8_t)h0, b[1] = (uint8_t)(h0 >> 8), b[2] = (uint8_t)h1, b[3] = (uint8_t)(h1 >> 8);
	} else {
		memset(buf, 7, nbytes);
	}
	return 0;
}

static void write_sample(const char *path)
{
	struct st_writer *w = st_writer_new();
	char err[256];
	cr_assert_not_null(w);
	cr_assert_eq(st_writer_add_tensor(w, "weight", "F32", 2, (int64_t[]){ 2, 3 }), 0);
	cr_assert_eq(st_writer_add_tensor(w, "half", "F16", 1, (int64_t[]){ 4 }), 0);
	cr_assert_eq(st_writer_add_tensor(w, "brain", "BF16", 2, (int64_t[]){ 1, 2 }), 0);
	cr_assert_eq(st_writer_add_tensor(w, "ids", "I64", 2, (int64_t[]){ 1, 3 }), 0);
	cr_assert_eq(st_writer_add_tensor(w, "empty", "F32", 2, (int64_t[]){ 0, 5 }), 0);
	cr_assert_eq(st_writer_add_tensor(w, "scalar", "U8", 0, NULL), 0);
	cr_assert_eq(st_writer_add_meta(w, "format", "pt"), 0);
	cr_assert_eq(st_writer_add_meta(w, "format", "again"), -EINVAL);
	cr_assert_eq(st_writer_add_tensor(w, "weight", "F32", 1, (int64_t[]){ 1 }), -EINVAL);
	cr_assert_eq(st_writer_add_tensor(w, "x", "Q4", 1, (int64_t[]){ 1 }), -EINVAL);
	cr_assert_eq(st_writer_add_tensor(w, "x", "F32", 1, (int64_t[]){ -1 }), -EINVAL);
	cr_assert_eq(st_writer_write(w, path, fill_values, NULL, err, sizeof err), 0, "%s", err);
	st_writer_free(w);
}

Test(safetensors, round_trip)
{
	char path[256], err[256];
	snprintf(path, sizeof path, "%s/a.safetensors", tmpdir);
	write_sample(path);
	struct st_file *f;
	cr_assert_eq(st_open(path, &f, err, sizeof err), 0, "%s", err);
	cr_assert_eq(st_n_tensors(f), 6);
	cr_assert_eq(st_data_offset(f) % 8, 0, "data area starts 8-aligned");
	cr_assert_str_eq(st_tensor(f, 0)->name, "brain"); /* listed by name */
	cr_assert_null(st_tensor(f, 6));
	cr_assert_eq(st_find(f, "nope"), -1);
	cr_assert_str_eq(st_meta_get(f, "format"), "pt");
	cr_assert_null(st_meta_get(f, "other"));
	cr_assert_eq(st_n_meta(f), 1);

	const struct st_tensor *t = st_get(f, "weight");
	float v[8];
	enum dtype dt;
	cr_assert_not_null(t);
	cr_assert_eq(st_tensor_dtype(t, &dt), 0);
	cr_assert_eq(dt, DTYPE_F32);
	cr_assert_eq(t->n_dims, 2);
	cr_assert_eq(t->shape[0], 2);
	cr_assert_eq(t->shape[1], 3);
	cr_assert_eq(t->nbytes, 24);
	cr_assert_eq((uintptr_t)t->data % 4, 0, "F32 data is aligned in place");
	cr_assert_eq(st_tensor_to_f32(t, v, 5), -ERANGE);
	cr_assert_eq(st_tensor_to_f32(t, v, 8), 0);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(v[i], 0.5f * (float)i);

	t = st_get(f, "half");
	cr_assert_eq(st_tensor_dtype(t, &dt), 0);
	cr_assert_eq(dt, DTYPE_F16);
	cr_assert_eq(st_tensor_to_f32(t, v, 4), 0);
	cr_assert(v[0] == -1.0f && v[1] == 0.0f && v[2] == 1.0f && v[3] == 2.0f);
	t = st_get(f, "brain");
	cr_assert_eq(st_tensor_dtype(t, &dt), 0);
	cr_assert_eq(dt, DTYPE_BF16);
	cr_assert_eq(st_tensor_to_f32(t, v, 2), 0);
	cr_assert(v[0] == 3.0f && v[1] == -4.0f);

	t = st_get(f, "ids"); /* present, but not a compute dtype */
	cr_assert_str_eq(t->dtype_name, "I64");
	cr_assert_eq(t->nbytes, 24);
	cr_assert_eq(st_tensor_dtype(t, &dt), -ENOTSUP);
	cr_assert_eq(st_tensor_to_f32(t, v, 8), -ENOTSUP);
	t = st_get(f, "empty");
	cr_assert_eq(t->nbytes, 0);
	cr_assert_null(t->data);
	cr_assert_eq(t->n_elements, 0);
	t = st_get(f, "scalar");
	cr_assert_eq(t->n_dims, 0);
	cr_assert_eq(t->n_elements, 1);
	cr_assert_eq(t->nbytes, 1);
	st_free(f);
	st_free(NULL);
	st_writer_free(NULL);
}

Test(safetensors, missing_and_not_a_file)
{
	char err[256];
	struct st_file *f;
	cr_assert_eq(st_open("/nonexistent/x.safetensors", &f, err, sizeof err), -ENOENT);
	cr_assert_not_null(strstr(err, "/nonexistent/x.safetensors: cannot open"), "%s", err);
	cr_assert_null(f);
	cr_assert_eq(st_open(tmpdir, &f, err, sizeof err), -EINVAL);
	cr_assert_not_null(strstr(err, "not a regular file"), "%s", err);
	char path[256];
	snprintf(path, sizeof path, "%s/short", tmpdir);
	FILE *fp = fopen(path, "w");
	fputs("abc", fp);
	fclose(fp);
	cr_assert_eq(st_open(path, &f, err, sizeof err), -EBADMSG);
	cr_assert_not_null(strstr(err, "shorter than the 8-byte header length"), "%s", err);
}

/* Cutting a valid file anywhere before its end is always an error with a reason. */
Test(safetensors, truncated_at_every_offset)
{
	char path[256], err[256];
	snprintf(path, sizeof path, "%s/t.safetensors", tmpdir);
	write_sample(path);
	FILE *fp = fopen(path, "rb");
	uint8_t buf[4096];
	size_t len = fread(buf, 1, sizeof buf, fp);
	fclose(fp);
	cr_assert_gt(len, 100);
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *copy = malloc(cut + 1);
		memcpy(copy, buf, cut);
		struct st_file *f = NULL;
		err[0] = '\0';
		int rc = st_open_memory(copy, cut, "cut", &f, err, sizeof err);
		cr_expect_lt(rc, 0, "cut at %zu opened", cut);
		cr_expect_neq(err[0], '\0', "cut at %zu: no message", cut);
		cr_expect_null(f);
		free(copy);
	}
	/* and the whole file opens from memory too */
	struct st_file *f;
	cr_assert_eq(st_open_memory(buf, len, "whole", &f, err, sizeof err), 0, "%s", err);
	st_free(f);
}

struct bad_case {
	const char *json;
	size_t data_len;
	const char *expect; /* substring of the message */
};

static const struct bad_case bad_cases[] = {
	{ "{\"a\":", 0, "not valid JSON" },
	{ "[1, 2]", 0, "does not start with '{'" },
	{ "{\"a\": 1}", 0, "tensor 'a': header entry is not an object" },
	{ "{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "\"dtype\" is missing" },
	{ "{\"a\": {\"dtype\": 5, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "\"dtype\"" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": 1, \"data_offsets\": [0, 4]}}", 4, "\"shape\"" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
	  "shape[0] is not a non-negative integer" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
	  "shape[0] is not a non-negative integer" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4, "data_offsets" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, -4]}}", 4,
	  "not non-negative integers" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", 4,
	  "end before they begin" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4,
	  "run past the end of the data area (4 bytes)" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 4,
	  "4 bytes at data_offsets [0, 4] do not hold 2 elements of F32 (8 bytes)" },
	{ "{\"a\": {\"dtype\": \"F16\", \"shape\": [4294967296, 4294967296, 16], "
	  "\"data_offsets\": [0, 4]}}", 4, "element count overflows" },
	{ "{\"a\": {\"dtype\": \"F64\", \"shape\": [2147483648, 2147483648], "
	  "\"data_offsets\": [0, 4]}}", 4, "byte size of 4611686018427387904 elements of F64 overflows" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
	  "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12,
	  "data ranges overlap" },
	{ "{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}, "
	  "\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}", 2, "duplicate" },
	{ "{\"__metadata__\": [1]}", 0, "\"__metadata__\" is not an object" },
	{ "{\"__metadata__\": {\"k\": 1}}", 0, "\"__metadata__\" key 'k': value is not a string" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
	  4, "9 dimensions" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 99999999999999999999]}}",
	  4, "not valid JSON" },
	{ "{\"a\\u0000b\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
	  "not valid JSON" },
	{ "{\"a\": {\"dtype\": \"F4\", \"shape\": [3], \"data_offsets\": [0, 1]}}", 1, "do not hold" },
};

Test(safetensors, malformed_headers_fail_with_a_reason)
{
	char err[512];
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const struct bad_case *c = &bad_cases[i];
		err[0] = '\0';
		int rc = open_json(c->json, c->data_len, err, sizeof err);
		cr_expect_eq(rc, -EBADMSG, "case %zu (%s): rc %d", i, c->json, rc);
		cr_expect_not_null(strstr(err, c->expect), "case %zu: message '%s' lacks '%s'", i, err,
		                   c->expect);
		cr_expect_eq(strncmp(err, "case.safetensors: ", 18), 0, "case %zu: '%s'", i, err);
	}
}

Test(safetensors, header_length_checks)
{
	char err[256];
	struct st_file *f;
	uint8_t b[16] = { 0 };
	b[5] = 1; /* 2^40 */
	cr_assert_eq(st_open_memory(b, sizeof b, "huge", &f, err, sizeof err), -EBADMSG);
	cr_assert_not_null(strstr(err, "larger than the limit"), "%s", err);
	memset(b, 0, sizeof b);
	b[0] = 100; /* fits the cap, not the file */
	cr_assert_eq(st_open_memory(b, sizeof b, "short", &f, err, sizeof err), -EBADMSG);
	cr_assert_not_null(strstr(err, "truncated file: header length 100"), "%s", err);
	cr_assert_eq(st_open_memory(b, 5, "tiny", &f, err, sizeof err), -EBADMSG);
	cr_assert_not_null(strstr(err, "shorter than the 8-byte header length"), "%s", err);
	cr_assert_eq(st_open_memory(b, 8, "zero", &f, err, sizeof err), -EBADMSG);
	/* deep nesting is refused by the JSON parser's depth limit, not the stack */
	size_t n = 20000;
	char *deep = malloc(2 * n + 16);
	strcpy(deep, "{\"a\":");
	memset(deep + 5, '[', n);
	memset(deep + 5 + n, ']', n);
	strcpy(deep + 5 + 2 * n, "}");
	cr_assert_eq(open_json(deep, 0, err, sizeof err), -EBADMSG);
	cr_assert_not_null(strstr(err, "not valid JSON"), "%s", err);
	free(deep);
}

Test(safetensors, lenient_where_real_files_may_differ)
{
	char err[256];
	/* empty header, padding spaces, gaps, trailing data, unknown dtype, zero sizes */
	cr_assert_eq(open_json("{}", 0, err, sizeof err), 0, "%s", err);
	cr_assert_eq(open_json("{}      ", 0, err, sizeof err), 0, "%s", err);
	cr_assert_eq(open_json("{\"a\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [4, 6]}, "
	                       "\"z\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [6, 6]}, "
	                       "\"y\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [5, 5]}}",
	                       10, err, sizeof err), 0, "%s", err);
	size_t len;
	uint8_t *p = build("{\"w\": {\"dtype\": \"F8_E4M3\", \"shape\": [2], \"data_offsets\": [0, 2]}, "
	                   "\"u\": {\"dtype\": \"NEWTYPE\", \"shape\": [7], \"data_offsets\": [2, 3]}, "
	                   "\"__metadata__\": {\"format\": \"pt\"}, \"x\": {\"dtype\": \"F32\", "
	                   "\"shape\": [], \"data_offsets\": [4, 8], \"extra\": true}}", 8, &len);
	struct st_file *f;
	cr_assert_eq(st_open_memory(p, len, "m", &f, err, sizeof err), 0, "%s", err);
	enum dtype dt;
	cr_assert_eq(st_tensor_dtype(st_get(f, "w"), &dt), -ENOTSUP);
	cr_assert_eq(st_get(f, "u")->elem_bits, 0);
	cr_assert_eq(st_tensor_dtype(st_get(f, "u"), &dt), -ENOTSUP);
	cr_assert_eq(st_get(f, "x")->n_elements, 1);
	float v;
	cr_assert_eq(st_tensor_to_f32(st_get(f, "x"), &v, 1), 0);
	cr_assert_str_eq(st_meta_key(f, 0), "format");
	cr_assert_str_eq(st_meta_value(f, 0), "pt");
	cr_assert_null(st_meta_key(f, 1));
	st_free(f);
	free(p);
}

Test(safetensors, writer_reports_unwritable_path)
{
	struct st_writer *w = st_writer_new();
	char err[256];
	cr_assert_eq(st_writer_add_tensor(w, "a", "F32", 1, (int64_t[]){ 2 }), 0);
	cr_assert_lt(st_writer_write(w, "/nonexistent/dir/a.safetensors", fill_values, NULL, err,
	                             sizeof err), 0);
	cr_assert_not_null(strstr(err, "/nonexistent/dir/a.safetensors"), "%s", err);
	st_writer_free(w);
}
