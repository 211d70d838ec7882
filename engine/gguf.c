/* GGUF reader: parsing and validation. Layout of a file (all little-endian):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 type, value },
 *   n_tensors x { string name, u32 n_dims, i64 ne[n_dims], u32 type, u64 offset },
 *   padding to the alignment, tensor data (offsets relative to its start).
 * A string is u64 length + bytes (no NUL); an array is u32 element type, u64 count,
 * elements. Every read below is bounds-checked against the file size before it
 * happens, and no allocation is larger than a fixed multiple of the bytes it
 * describes. */
#include "gguf-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAX_NESTING 4  /* arrays of arrays of ...: real files use none */

/* Smallest encodings, used to bound counts by the bytes left before allocating. */
#define MIN_KV_BYTES 13     /* key length, type, a one-byte value */
#define MIN_TINFO_BYTES 24  /* name length, n_dims, type, offset */
#define MIN_ARR_BYTES 12    /* element type, count */

struct pctx {
	struct gguf *g;
	const char *name;       /* file name for messages */
	char *err;
	size_t errlen;
	size_t pos;             /* read cursor */
};

static int perr(struct pctx *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int perr(struct pctx *c, int code, const char *fmt, ...)
{
	if (c->err == NULL || c->errlen == 0)
		return code;
	int n = snprintf(c->err, c->errlen, "%s: ", c->name);
	if (n < 0 || (size_t)n >= c->errlen)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

/* ---- bounded little-endian reads ------------------------------------------------ */

static size_t left(const struct pctx *c)
{
	return c->g->size - c->pos;
}

static uint64_t le(const uint8_t *p, int nbytes)
{
	uint64_t v = 0;
	for (int i = nbytes - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static int rd_u32(struct pctx *c, uint32_t *v, const char *what)
{
	if (left(c) < 4)
		return perr(c, -EBADMSG, "truncated file: %s at byte %zu runs past the end (%zu bytes)",
		            what, c->pos, c->g->size);
	*v = (uint32_t)le(c->g->base + c->pos, 4);
	c->pos += 4;
	return 0;
}

static int rd_u64(struct pctx *c, uint64_t *v, const char *what)
{
	if (left(c) < 8)
		return perr(c, -EBADMSG, "truncated file: %s at byte %zu runs past the end (%zu bytes)",
		            what, c->pos, c->g->size);
	*v = le(c->g->base + c->pos, 8);
	c->pos += 8;
	return 0;
}

/* String in place: *p, *len. what/who name it in messages. */
static int rd_str(struct pctx *c, const uint8_t **p, uint64_t *len, const char *what,
                  const char *who)
{
	size_t at = c->pos;
	if (left(c) < 8)
		return perr(c, -EBADMSG, "truncated file: length of %s%s at byte %zu runs past the end",
		            what, who, at);
	uint64_t n = le(c->g->base + c->pos, 8);
	c->pos += 8;
	if (n > left(c))
		return perr(c, -EBADMSG, "%s%s at byte %zu: length %llu runs past the end of the file "
		            "(%zu bytes left)", what, who, at, (unsigned long long)n, left(c));
	*p = c->g->base + c->pos;
	*len = n;
	c->pos += (size_t)n;
	return 0;
}

static char *dup_bytes(const uint8_t *p, uint64_t len)
{
	char *s = malloc((size_t)len + 1);
	if (s == NULL)
		return NULL;
	if (len)
		memcpy(s, p, (size_t)len);
	s[len] = '\0';
	return s;
}

size_t gguf_vtype_size(uint32_t t)
{
	switch (t) {
	case GGUF_VTYPE_UINT8: case GGUF_VTYPE_INT8: case GGUF_VTYPE_BOOL: return 1;
	case GGUF_VTYPE_UINT16: case GGUF_VTYPE_INT16: return 2;
	case GGUF_VTYPE_UINT32: case GGUF_VTYPE_INT32: case GGUF_VTYPE_FLOAT32: return 4;
	case GGUF_VTYPE_UINT64: case GGUF_VTYPE_INT64: case GGUF_VTYPE_FLOAT64: return 8;
	default: return 0;
	}
}

static const char *kv_name(const struct gguf *g, int64_t i, size_t *len)
{
	*len = g->kv[i].key_len;
	return g->kv[i].key;
}

static const char *tensor_name(const struct gguf *g, int64_t i, size_t *len)
{
	*len = strlen(g->tensors[i].name);
	return g->tensors[i].name;
}

/* ---- metadata values ------------------------------------------------------------ */

static void arr_fini(struct gguf_arr *a)
{
	if (a->sub) {
		for (uint64_t i = 0; i < a->n; i++)
			arr_fini(&a->sub[i]);
	}
	free(a->sub);
	free(a->str_off);
	a->sub = NULL;
	a->str_off = NULL;
}

static int parse_arr(struct pctx *c, struct gguf_arr *a, const char *key, int depth)
{
	size_t at = c->pos;
	int rc;
	if ((rc = rd_u32(c, &a->type, "array element type")) < 0)
		return rc;
	if ((rc = rd_u64(c, &a->n, "array length")) < 0)
		return rc;
	a->data = c->g->base + c->pos;
	if (a->type >= GGUF_VTYPE_COUNT)
		return perr(c, -EBADMSG, "metadata key '%s': array at byte %zu has unknown element "
		            "type %u", key, at, a->type);

	size_t esz = gguf_vtype_size(a->type);
	if (esz) {
		if (a->n > left(c) / esz)
			return perr(c, -EBADMSG, "metadata key '%s': array of %llu %s elements runs past "
			            "the end of the file", key, (unsigned long long)a->n,
			            gguf_vtype_name(a->type));
		if (a->type == GGUF_VTYPE_BOOL) {
			for (uint64_t i = 0; i < a->n; i++)
				if (a->data[i] > 1)
					return perr(c, -EBADMSG, "metadata key '%s': bool array element %llu "
					            "has value %u (not 0 or 1)", key,
					            (unsigned long long)i, a->data[i]);
		}
		c->pos += (size_t)(a->n * esz);
		return 0;
	}
	if (a->type == GGUF_VTYPE_STRING) {
		if (a->n > left(c) / 8)
			return perr(c, -EBADMSG, "metadata key '%s': array of %llu strings runs past the "
			            "end of the file", key, (unsigned long long)a->n);
		a->str_off = malloc((size_t)(a->n ? a->n : 1) * sizeof *a->str_off);
		if (a->str_off == NULL)
			return perr(c, -ENOMEM, "metadata key '%s': out of memory", key);
		for (uint64_t i = 0; i < a->n; i++) {
			const uint8_t *p;
			uint64_t len;
			a->str_off[i] = (uint64_t)(c->g->base + c->pos - a->data);
			if ((rc = rd_str(c, &p, &len, "string array element", "")) < 0)
				return perr(c, rc, "metadata key '%s': string element %llu of %llu runs past "
				            "the end of the file", key, (unsigned long long)i,
				            (unsigned long long)a->n);
		}
		return 0;
	}
	/* nested array */
	if (depth >= GGUF_MAX_NESTING)
		return perr(c, -EBADMSG, "metadata key '%s': arrays nested deeper than %d levels",
		            key, GGUF_MAX_NESTING);
	if (a->n > left(c) / MIN_ARR_BYTES)
		return perr(c, -EBADMSG, "metadata key '%s': array of %llu arrays runs past the end "
		            "of the file", key, (unsigned long long)a->n);
	a->sub = calloc((size_t)(a->n ? a->n : 1), sizeof *a->sub);
	if (a->sub == NULL)
		return perr(c, -ENOMEM, "metadata key '%s': out of memory", key);
	for (uint64_t i = 0; i < a->n; i++) {
		if ((rc = parse_arr(c, &a->sub[i], key, depth + 1)) < 0)
			return rc;
	}
	return 0;
}

static int parse_kv(struct pctx *c, struct gguf_kv *kv, int64_t i)
{
	const uint8_t *p;
	uint64_t len;
	int rc;
	char who[48];
	snprintf(who, sizeof who, " %lld", (long long)i);
	if ((rc = rd_str(c, &p, &len, "metadata key", who)) < 0)
		return rc;
	kv->key = dup_bytes(p, len);
	if (kv->key == NULL)
		return perr(c, -ENOMEM, "out of memory");
	kv->key_len = (size_t)len;

	size_t at = c->pos;
	if ((rc = rd_u32(c, &kv->type, "metadata value type")) < 0)
		return perr(c, rc, "metadata key '%s': value type runs past the end of the file",
		            kv->key);
	if (kv->type >= GGUF_VTYPE_COUNT)
		return perr(c, -EBADMSG, "metadata key '%s': unknown value type %u at byte %zu",
		            kv->key, kv->type, at);

	if (kv->type == GGUF_VTYPE_STRING) {
		if ((rc = rd_str(c, &kv->val, &kv->len, "string value of key ", kv->key)) < 0)
			return rc;
		kv->str = dup_bytes(kv->val, kv->len);
		if (kv->str == NULL)
			return perr(c, -ENOMEM, "metadata key '%s': out of memory", kv->key);
		return 0;
	}
	if (kv->type == GGUF_VTYPE_ARRAY)
		return parse_arr(c, &kv->arr, kv->key, 0);

	size_t sz = gguf_vtype_size(kv->type);
	if (left(c) < sz)
		return perr(c, -EBADMSG, "metadata key '%s': %s value runs past the end of the file",
		            kv->key, gguf_vtype_name(kv->type));
	kv->val = c->g->base + c->pos;
	if (kv->type == GGUF_VTYPE_BOOL && kv->val[0] > 1)
		return perr(c, -EBADMSG, "metadata key '%s': bool has value %u (not 0 or 1)", kv->key,
		            kv->val[0]);
	c->pos += sz;
	return 0;
}

/* ---- tensor infos --------------------------------------------------------------- */

static int parse_tinfo(struct pctx *c, struct gguf_tensor_info *t, int64_t i)
{
	const uint8_t *p;
	uint64_t len;
	int rc;
	char who[48];
	snprintf(who, sizeof who, " of tensor %lld", (long long)i);
	if ((rc = rd_str(c, &p, &len, "name", who)) < 0)
		return rc;
	char *name = dup_bytes(p, len);
	if (name == NULL)
		return perr(c, -ENOMEM, "out of memory");
	t->name = name;
	if (memchr(p, '\0', (size_t)len) != NULL)
		return perr(c, -EBADMSG, "tensor %lld: name contains a NUL byte", (long long)i);

	if ((rc = rd_u32(c, &t->n_dims, "tensor n_dims")) < 0)
		return perr(c, rc, "tensor '%s': n_dims runs past the end of the file", name);
	if (t->n_dims > GGUF_MAX_DIMS)
		return perr(c, -EBADMSG, "tensor '%s': %u dimensions (at most %d)", name, t->n_dims,
		            GGUF_MAX_DIMS);
	for (int d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = 1;
	for (uint32_t d = 0; d < t->n_dims; d++) {
		uint64_t v = 0;
		if ((rc = rd_u64(c, &v, "tensor dimension")) < 0)
			return perr(c, rc, "tensor '%s': shape runs past the end of the file", name);
		if (v > (uint64_t)INT64_MAX)
			return perr(c, -EBADMSG, "tensor '%s': dimension %u is negative (%lld)", name, d,
			            (long long)(int64_t)v);
		t->ne[d] = (int64_t)v;
	}
	uint32_t type = 0;
	if ((rc = rd_u32(c, &type, "tensor type")) < 0)
		return perr(c, rc, "tensor '%s': type runs past the end of the file", name);
	if (!dtype_valid(type))
		return perr(c, -EBADMSG, "tensor '%s': unknown tensor type %u", name, type);
	t->type = (enum dtype)type;
	if ((rc = rd_u64(c, &t->offset, "tensor offset")) < 0)
		return perr(c, rc, "tensor '%s': data offset runs past the end of the file", name);

	/* element count and byte size, overflow-checked */
	uint64_t nel = 1;
	for (int d = 0; d < GGUF_MAX_DIMS; d++) {
		uint64_t ne = (uint64_t)t->ne[d];
		if (ne != 0 && nel > (uint64_t)INT64_MAX / ne)
			return perr(c, -EBADMSG, "tensor '%s': element count overflows", name);
		nel *= ne;
	}
	t->n_elements = nel;
	int64_t blck = dtype_block_elems(type);
	if (t->ne[0] % blck != 0)
		return perr(c, -EBADMSG, "tensor '%s': row of %lld elements is not a multiple of the "
		            "%s block size %lld", name, (long long)t->ne[0], dtype_name(type),
		            (long long)blck);
	uint64_t row;
	if (dtype_row_size(type, t->ne[0], &row) < 0)
		return perr(c, -EBADMSG, "tensor '%s': row size overflows", name);
	uint64_t nrows = nel / (t->ne[0] ? (uint64_t)t->ne[0] : 1);
	if (t->ne[0] == 0)
		nrows = 0;
	if (nrows != 0 && row > UINT64_MAX / nrows)
		return perr(c, -EBADMSG, "tensor '%s': byte size overflows", name);
	t->nbytes = row * nrows;
	return 0;
}

/* ---- the file ------------------------------------------------------------------- */

static int parse(struct pctx *c)
{
	struct gguf *g = c->g;
	int rc;
	uint64_t n_tensors = 0, n_kv = 0;

	if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0)
		return perr(c, -EBADMSG, "not a GGUF file (bad magic)");
	c->pos = 4;
	if ((rc = rd_u32(c, &g->version, "version")) < 0)
		return rc;
	if (g->version == 1)
		return perr(c, -ENOTSUP, "GGUF version 1 is not supported (obsolete; re-convert the "
		            "model)");
	if ((g->version & 0xffff) == 0 && g->version != 0)
		return perr(c, -ENOTSUP, "big-endian GGUF files are not supported");
	if (g->version != 2 && g->version != 3)
		return perr(c, -ENOTSUP, "unsupported GGUF version %u (supported: 2, 3)", g->version);
	if ((rc = rd_u64(c, &n_tensors, "tensor count")) < 0)
		return rc;
	if ((rc = rd_u64(c, &n_kv, "metadata count")) < 0)
		return rc;
	if (n_kv > left(c) / MIN_KV_BYTES)
		return perr(c, -EBADMSG, "metadata count %llu is impossible for a file of %zu bytes",
		            (unsigned long long)n_kv, g->size);
	if (n_tensors > left(c) / MIN_TINFO_BYTES)
		return perr(c, -EBADMSG, "tensor count %llu is impossible for a file of %zu bytes",
		            (unsigned long long)n_tensors, g->size);

	g->kv = calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kv);
	if (g->kv == NULL || gguf_index_init(&g->kv_index, (int64_t)n_kv) < 0)
		return perr(c, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < n_kv; i++) {
		g->n_kv = (int64_t)i + 1; /* so that gguf_free() frees what was parsed */
		if ((rc = parse_kv(c, &g->kv[i], (int64_t)i)) < 0)
			return rc;
		if (gguf_index_add(&g->kv_index, g->kv[i].key, g->kv[i].key_len, (int64_t)i, kv_name, g) < 0)
			return perr(c, -EBADMSG, "duplicate metadata key '%s'", g->kv[i].key);
	}

	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (gguf_find_key(g, "general.alignment") >= 0) {
		uint64_t a;
		if (gguf_get_uint(g, "general.alignment", &a) < 0)
			return perr(c, -EBADMSG, "metadata key 'general.alignment' is not a non-negative "
			            "integer");
		if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 30))
			return perr(c, -EBADMSG, "metadata key 'general.alignment' = %llu is not a power of "
			            "two (up to 2^30)", (unsigned long long)a);
		g->alignment = (uint32_t)a;
	}

	g->tensors = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->tensors);
	if (g->tensors == NULL || gguf_index_init(&g->tensor_index, (int64_t)n_tensors) < 0)
		return perr(c, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < n_tensors; i++) {
		struct gguf_tensor_info *t = &g->tensors[i];
		g->n_tensors = (int64_t)i + 1;
		if ((rc = parse_tinfo(c, t, (int64_t)i)) < 0)
			return rc;
		if (gguf_index_add(&g->tensor_index, t->name, strlen(t->name), (int64_t)i, tensor_name, g) < 0)
			return perr(c, -EBADMSG, "duplicate tensor name '%s'", t->name);
		if (t->offset % g->alignment != 0)
			return perr(c, -EBADMSG, "tensor '%s': data offset %llu is not a multiple of the "
			            "alignment %u", t->name, (unsigned long long)t->offset, g->alignment);
	}

	uint64_t a = g->alignment;
	g->data_offset = ((uint64_t)c->pos + a - 1) / a * a;
	for (int64_t i = 0; i < g->n_tensors; i++) {
		struct gguf_tensor_info *t = &g->tensors[i];
		if (t->nbytes == 0)
			continue;
		uint64_t room = g->data_offset <= g->size ? g->size - g->data_offset : 0;
		if (t->offset > room || t->nbytes > room - t->offset)
			return perr(c, -EBADMSG, "tensor '%s': data (%llu bytes at file offset %llu) runs "
			            "past the end of the file (%zu bytes)", t->name,
			            (unsigned long long)t->nbytes,
			            (unsigned long long)(g->data_offset + t->offset), g->size);
		t->data = g->base + g->data_offset + t->offset;
	}
	return 0;
}

static int open_common(struct gguf *g, const char *name, struct gguf **out, char *err,
                       size_t errlen)
{
	struct pctx c = { .g = g, .name = name ? name : "(memory)", .err = err, .errlen = errlen };
	int rc = parse(&c);
	if (rc < 0) {
		gguf_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

int gguf_open_memory(const void *data, size_t len, const char *name, struct gguf **out,
                     char *err, size_t errlen)
{
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	struct gguf *g = calloc(1, sizeof *g);
	if (g == NULL) {
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", name ? name : "(memory)");
		return -ENOMEM;
	}
	g->base = data;
	g->size = len;
	return open_common(g, name, out, err, errlen);
}

int gguf_open(const char *path, struct gguf **out, char *err, size_t errlen)
{
	struct pctx c = { .name = path, .err = err, .errlen = errlen };
	struct gguf *g = NULL;
	struct stat st;
	int rc, fd = -1;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		perr(&c, rc, "cannot open: %s", strerror(-rc));
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		perr(&c, rc, "cannot stat: %s", strerror(-rc));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = perr(&c, -EINVAL, "not a regular file");
		goto fail;
	}
	if (st.st_size == 0) {
		rc = perr(&c, -EBADMSG, "not a GGUF file (empty)");
		goto fail;
	}
	g = calloc(1, sizeof *g);
	if (g == NULL) {
		rc = perr(&c, -ENOMEM, "out of memory");
		goto fail;
	}
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		perr(&c, rc, "cannot map: %s", strerror(-rc));
		goto fail;
	}
	close(fd);
	fd = -1;
	g->base = map;
	g->size = (size_t)st.st_size;
	g->mapped = true;
	return open_common(g, path, out, err, errlen);

fail:
	free(g);
	if (fd >= 0)
		close(fd);
	return rc;
}

void gguf_free(struct gguf *g)
{
	if (g == NULL)
		return;
	for (int64_t i = 0; i < g->n_kv; i++) {
		free(g->kv[i].key);
		free(g->kv[i].str);
		arr_fini(&g->kv[i].arr);
	}
	free(g->kv);
	for (int64_t i = 0; i < g->n_tensors; i++)
		free((char *)g->tensors[i].name);
	free(g->tensors);
	free(g->kv_index.slots);
	free(g->tensor_index.slots);
	if (g->mapped)
		munmap((void *)g->base, g->size);
	free(g);
}
