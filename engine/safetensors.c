/* safetensors reader (parsing, validation, lookups) and writer; see safetensors.h.
 * The JSON header is parsed by jansson (duplicate keys rejected, depth bounded
 * by the library); everything else is checked here before any pointer into the
 * file is handed out. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_meta {
	char *key, *value;
};

struct st_file {
	const uint8_t *base;       /* the whole file */
	size_t size;
	bool mapped;
	char *name;
	uint64_t header_len;
	int64_t n_tensors;
	struct st_tensor *tensors; /* sorted by name; names and dtype names malloc'd */
	int64_t n_meta;
	struct st_meta *meta;
};

static int perr(char *err, size_t errlen, const char *name, int code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int perr(char *err, size_t errlen, const char *name, int code, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return code;
	int n = snprintf(err, errlen, "%s: ", name);
	if (n < 0 || (size_t)n >= errlen)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

#define FERR(code, ...) perr(err, errlen, f->name, code, __VA_ARGS__)

/* ---- dtypes ------------------------------------------------------------------------- */

static const struct { const char *name; uint32_t bits; } st_dtypes[] = {
	{ "BOOL", 8 }, { "U8", 8 }, { "I8", 8 }, { "F8_E5M2", 8 }, { "F8_E4M3", 8 },
	{ "F8_E8M0", 8 }, { "I16", 16 }, { "U16", 16 }, { "F16", 16 }, { "BF16", 16 },
	{ "I32", 32 }, { "U32", 32 }, { "F32", 32 }, { "C64", 64 }, { "F64", 64 },
	{ "I64", 64 }, { "U64", 64 }, { "F4", 4 }, { "F6_E2M3", 6 }, { "F6_E3M2", 6 },
};

uint32_t st_dtype_bits(const char *dtype_name)
{
	for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
		if (strcmp(st_dtypes[i].name, dtype_name) == 0)
			return st_dtypes[i].bits;
	return 0;
}

int st_tensor_dtype(const struct st_tensor *t, enum dtype *out)
{
	if (strcmp(t->dtype_name, "F32") == 0)
		*out = DTYPE_F32;
	else if (strcmp(t->dtype_name, "F16") == 0)
		*out = DTYPE_F16;
	else if (strcmp(t->dtype_name, "BF16") == 0)
		*out = DTYPE_BF16;
	else
		return -ENOTSUP;
	return 0;
}

int st_tensor_to_f32(const struct st_tensor *t, float *dst, uint64_t n)
{
	enum dtype dt;
	if (st_tensor_dtype(t, &dt) < 0)
		return -ENOTSUP;
	if (n < t->n_elements)
		return -ERANGE;
	const uint8_t *p = t->data;
	for (uint64_t i = 0; i < t->n_elements; i++) {
		if (dt == DTYPE_F32) {
			memcpy(&dst[i], p + 4 * i, 4);
		} else {
			uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
			dst[i] = dt == DTYPE_F16 ? dtype_f16_to_f32(h) : dtype_bf16_to_f32(h);
		}
	}
	return 0;
}

/* ---- parsing ------------------------------------------------------------------------ */

/* A non-negative JSON integer (jansson already refused values past INT64). */
static int get_uint(const json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int parse_tensor(struct st_file *f, struct st_tensor *t, const char *key,
                        const json_t *v, uint64_t data_len, char *err, size_t errlen)
{
	if (!json_is_object(v))
		return FERR(-EBADMSG, "tensor '%s': header entry is not an object", key);
	const json_t *jd = json_object_get(v, "dtype");
	const json_t *js = json_object_get(v, "shape");
	const json_t *jo = json_object_get(v, "data_offsets");
	if (!json_is_string(jd))
		return FERR(-EBADMSG, "tensor '%s': \"dtype\" is missing or not a string", key);
	if (!json_is_array(js))
		return FERR(-EBADMSG, "tensor '%s': \"shape\" is missing or not an array", key);
	if (!json_is_array(jo) || json_array_size(jo) != 2)
		return FERR(-EBADMSG, "tensor '%s': \"data_offsets\" is missing or not an array of "
		            "two integers", key);
	t->dtype_name = strdup(json_string_value(jd));
	if (t->dtype_name == NULL)
		return FERR(-ENOMEM, "out of memory");
	t->elem_bits = st_dtype_bits(t->dtype_name);

	size_t nd = json_array_size(js);
	if (nd > ST_MAX_DIMS)
		return FERR(-EBADMSG, "tensor '%s': %zu dimensions (at most %d)", key, nd, ST_MAX_DIMS);
	t->n_dims = (uint32_t)nd;
	uint64_t nel = 1;
	bool nel_overflow = false;
	for (size_t d = 0; d < nd; d++) {
		uint64_t e;
		if (get_uint(json_array_get(js, d), &e) < 0)
			return FERR(-EBADMSG, "tensor '%s': shape[%zu] is not a non-negative integer", key, d);
		t->shape[d] = (int64_t)e;
		if (e != 0 && nel > UINT64_MAX / e)
			nel_overflow = true; /* fine only if another dimension is 0 */
		else
			nel *= e;
	}
	for (size_t d = 0; d < nd; d++)
		if (t->shape[d] == 0)
			nel = 0, nel_overflow = false;
	if (nel_overflow)
		return FERR(-EBADMSG, "tensor '%s': element count overflows", key);
	t->n_elements = nel;

	uint64_t begin, end;
	if (get_uint(json_array_get(jo, 0), &begin) < 0 || get_uint(json_array_get(jo, 1), &end) < 0)
		return FERR(-EBADMSG, "tensor '%s': data_offsets are not non-negative integers", key);
	if (end < begin)
		return FERR(-EBADMSG, "tensor '%s': data_offsets [%llu, %llu] end before they begin",
		            key, (unsigned long long)begin, (unsigned long long)end);
	if (end > data_len)
		return FERR(-EBADMSG, "tensor '%s': data_offsets [%llu, %llu] run past the end of the "
		            "data area (%llu bytes)", key, (unsigned long long)begin,
		            (unsigned long long)end, (unsigned long long)data_len);
	t->nbytes = end - begin;
	if (t->elem_bits) {
		/* nbytes * 8 cannot overflow (nbytes <= file size); compare in bits. */
		if (nel > UINT64_MAX / t->elem_bits)
			return FERR(-EBADMSG, "tensor '%s': byte size of %llu elements of %s overflows",
			            key, (unsigned long long)nel, t->dtype_name);
		uint64_t bits = nel * t->elem_bits;
		if (bits != t->nbytes * 8)
			return FERR(-EBADMSG, "tensor '%s': %llu bytes at data_offsets [%llu, %llu] do not "
			            "hold %llu elements of %s (%llu %s)", key,
			            (unsigned long long)t->nbytes, (unsigned long long)begin,
			            (unsigned long long)end, (unsigned long long)nel, t->dtype_name,
			            (unsigned long long)(bits % 8 ? bits : bits / 8),
			            bits % 8 ? "bits" : "bytes");
	}
	t->offset = 8 + f->header_len + begin;
	t->data = t->nbytes ? f->base + t->offset : NULL;
	return 0;
}

static int parse_meta(struct st_file *f, const json_t *m, char *err, size_t errlen)
{
	if (json_is_null(m))
		return 0;
	if (!json_is_object(m))
		return FERR(-EBADMSG, "\"__metadata__\" is not an object");
	f->meta = calloc(json_object_size(m) + 1, sizeof *f->meta);
	if (f->meta == NULL)
		return FERR(-ENOMEM, "out of memory");
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)m, k, v) {
		if (!json_is_string(v))
			return FERR(-EBADMSG, "\"__metadata__\" key '%s': value is not a string", k);
		struct st_meta *e = &f->meta[f->n_meta++];
		e->key = strdup(k);
		e->value = strdup(json_string_value(v));
		if (e->key == NULL || e->value == NULL)
			return FERR(-ENOMEM, "out of memory");
	}
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct st_tensor *)a)->name, ((const struct st_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
	const struct st_tensor *x = *(const struct st_tensor *const *)a;
	const struct st_tensor *y = *(const struct st_tensor *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* No two non-empty ranges may share a byte. */
static int check_overlap(struct st_file *f, char *err, size_t errlen)
{
	const struct st_tensor **by = malloc((size_t)(f->n_tensors + 1) * sizeof *by);
	if (by == NULL)
		return FERR(-ENOMEM, "out of memory");
	int64_t n = 0;
	for (int64_t i = 0; i < f->n_tensors; i++)
		if (f->tensors[i].nbytes)
			by[n++] = &f->tensors[i];
	qsort(by, (size_t)n, sizeof *by, cmp_offset);
	int rc = 0;
	for (int64_t i = 1; i < n && rc == 0; i++) {
		const struct st_tensor *a = by[i - 1], *b = by[i];
		if (b->offset < a->offset + a->nbytes)
			rc = FERR(-EBADMSG, "tensors '%s' and '%s': data ranges overlap (bytes %llu..%llu "
			          "and %llu..%llu of the data area)", a->name, b->name,
			          (unsigned long long)(a->offset - st_data_offset(f)),
			          (unsigned long long)(a->offset - st_data_offset(f) + a->nbytes),
			          (unsigned long long)(b->offset - st_data_offset(f)),
			          (unsigned long long)(b->offset - st_data_offset(f) + b->nbytes));
	}
	free(by);
	return rc;
}

static int parse(struct st_file *f, char *err, size_t errlen)
{
	json_t *root = NULL;
	json_error_t jerr;
	int rc;

	if (f->size < 8)
		return FERR(-EBADMSG, "not a safetensors file: %zu bytes, shorter than the 8-byte "
		            "header length", f->size);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = (n << 8) | f->base[i];
	if (n > ST_MAX_HEADER)
		return FERR(-EBADMSG, "header length %llu is larger than the limit of %u bytes (not a "
		            "safetensors file?)", (unsigned long long)n, ST_MAX_HEADER);
	if (n > f->size - 8)
		return FERR(-EBADMSG, "truncated file: header length %llu runs past the end of the "
		            "file (%zu bytes)", (unsigned long long)n, f->size);
	if (n < 2 || f->base[8] != '{')
		return FERR(-EBADMSG, "not a safetensors file: the header does not start with '{'");
	f->header_len = n;
	uint64_t data_len = f->size - 8 - n;

	root = json_loadb((const char *)f->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		rc = FERR(-EBADMSG, "header is not valid JSON: %s (line %d, column %d)", jerr.text,
		          jerr.line, jerr.column);
		goto out;
	}
	if (!json_is_object(root)) {
		rc = FERR(-EBADMSG, "header is not a JSON object");
		goto out;
	}
	f->tensors = calloc(json_object_size(root) + 1, sizeof *f->tensors);
	if (f->tensors == NULL) {
		rc = FERR(-ENOMEM, "out of memory");
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		if (strcmp(key, "__metadata__") == 0) {
			if ((rc = parse_meta(f, v, err, errlen)) < 0)
				goto out;
			continue;
		}
		struct st_tensor *t = &f->tensors[f->n_tensors++];
		if ((t->name = strdup(key)) == NULL) {
			rc = FERR(-ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = parse_tensor(f, t, key, v, data_len, err, errlen)) < 0)
			goto out;
	}
	/* duplicates were refused by jansson; sort for st_find() */
	qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_name);
	rc = check_overlap(f, err, errlen);
out:
	json_decref(root);
	return rc;
}

static int open_common(struct st_file *f, struct st_file **out, char *err, size_t errlen)
{
	int rc = parse(f, err, errlen);
	if (rc < 0) {
		st_free(f);
		return rc;
	}
	*out = f;
	return 0;
}

int st_open_memory(const void *data, size_t len, const char *name, struct st_file **out,
                   char *err, size_t errlen)
{
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (name == NULL)
		name = "(memory)";
	struct st_file *f = calloc(1, sizeof *f);
	if (f == NULL || (f->name = strdup(name)) == NULL) {
		free(f);
		return perr(err, errlen, name, -ENOMEM, "out of memory");
	}
	f->base = data;
	f->size = len;
	return open_common(f, out, err, errlen);
}

int st_open(const char *path, struct st_file **out, char *err, size_t errlen)
{
	struct st_file *f = NULL;
	struct stat sb;
	int rc, fd;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		return perr(err, errlen, path, rc, "cannot open: %s", strerror(-rc));
	}
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		perr(err, errlen, path, rc, "cannot stat: %s", strerror(-rc));
		goto fail;
	}
	if (!S_ISREG(sb.st_mode)) {
		rc = perr(err, errlen, path, -EINVAL, "not a regular file");
		goto fail;
	}
	if (sb.st_size < 8) {
		rc = perr(err, errlen, path, -EBADMSG, "not a safetensors file: %lld bytes, shorter "
		          "than the 8-byte header length", (long long)sb.st_size);
		goto fail;
	}
	f = calloc(1, sizeof *f);
	if (f == NULL || (f->name = strdup(path)) == NULL) {
		rc = perr(err, errlen, path, -ENOMEM, "out of memory");
		goto fail;
	}
	void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		perr(err, errlen, path, rc, "cannot map: %s", strerror(-rc));
		goto fail;
	}
	close(fd);
	f->base = map;
	f->size = (size_t)sb.st_size;
	f->mapped = true;
	return open_common(f, out, err, errlen);

fail:
	if (f)
		free(f->name);
	free(f);
	close(fd);
	return rc;
}

void st_free(struct st_file *f)
{
	if (f == NULL)
		return;
	for (int64_t i = 0; i < f->n_tensors; i++) {
		free((char *)f->tensors[i].name);
		free((char *)f->tensors[i].dtype_name);
	}
	free(f->tensors);
	for (int64_t i = 0; i < f->n_meta; i++) {
		free(f->meta[i].key);
		free(f->meta[i].value);
	}
	free(f->meta);
	if (f->mapped)
		munmap((void *)f->base, f->size);
	free(f->name);
	free(f);
}

/* ---- lookups ------------------------------------------------------------------------ */

const char *st_path(const struct st_file *f) { return f->name; }
uint64_t st_header_size(const struct st_file *f) { return f->header_len; }
uint64_t st_data_offset(const struct st_file *f) { return 8 + f->header_len; }
uint64_t st_file_size(const struct st_file *f) { return f->size; }
int64_t st_n_tensors(const struct st_file *f) { return f->n_tensors; }
int64_t st_n_meta(const struct st_file *f) { return f->n_meta; }

int64_t st_find(const struct st_file *f, const char *name)
{
	int64_t lo = 0, hi = f->n_tensors;
	while (lo < hi) {
		int64_t mid = lo + (hi - lo) / 2;
		int c = strcmp(f->tensors[mid].name, name);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

const struct st_tensor *st_tensor(const struct st_file *f, int64_t i)
{
	return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const struct st_tensor *st_get(const struct st_file *f, const char *name)
{
	return st_tensor(f, st_find(f, name));
}

const char *st_meta_key(const struct st_file *f, int64_t i)
{
	return i >= 0 && i < f->n_meta ? f->meta[i].key : NULL;
}

const char *st_meta_value(const struct st_file *f, int64_t i)
{
	return i >= 0 && i < f->n_meta ? f->meta[i].value : NULL;
}

const char *st_meta_get(const struct st_file *f, const char *key)
{
	for (int64_t i = 0; i < f->n_meta; i++)
		if (strcmp(f->meta[i].key, key) == 0)
			return f->meta[i].value;
	return NULL;
}

/* ---- writer ------------------------------------------------------------------------- */

struct st_wtensor {
	char *name;
	const char *dtype;         /* static, from st_dtypes */
	uint32_t bits;
	uint32_t n_dims;
	int64_t shape[ST_MAX_DIMS];
	uint64_t nbytes;
	size_t idx;                /* order added (fill callback index) */
};

struct st_writer {
	struct st_wtensor *t;
	size_t n, cap;
	json_t *meta;              /* object */
};

struct st_writer *st_writer_new(void)
{
	struct st_writer *w = calloc(1, sizeof *w);
	if (w && (w->meta = json_object()) == NULL) {
		free(w);
		w = NULL;
	}
	return w;
}

void st_writer_free(struct st_writer *w)
{
	if (w == NULL)
		return;
	for (size_t i = 0; i < w->n; i++)
		free(w->t[i].name);
	free(w->t);
	json_decref(w->meta);
	free(w);
}

int st_writer_add_meta(struct st_writer *w, const char *key, const char *value)
{
	if (strcmp(key, "__metadata__") == 0 || json_object_get(w->meta, key) != NULL)
		return -EINVAL;
	json_t *s = json_string(value);
	return s && json_object_set_new(w->meta, key, s) == 0 ? 0 : -ENOMEM;
}

int st_writer_add_tensor(struct st_writer *w, const char *name, const char *dtype_name,
                         uint32_t n_dims, const int64_t *shape)
{
	struct st_wtensor t = { .n_dims = n_dims, .idx = w->n };
	size_t k;
	for (k = 0; k < sizeof st_dtypes / sizeof st_dtypes[0]; k++)
		if (strcmp(st_dtypes[k].name, dtype_name) == 0)
			break;
	if (k == sizeof st_dtypes / sizeof st_dtypes[0] || n_dims > ST_MAX_DIMS ||
	    strcmp(name, "__metadata__") == 0)
		return -EINVAL;
	t.dtype = st_dtypes[k].name;
	t.bits = st_dtypes[k].bits;
	uint64_t nel = 1;
	for (uint32_t d = 0; d < n_dims; d++) {
		if (shape[d] < 0)
			return -EINVAL;
		t.shape[d] = shape[d];
		if (shape[d] && nel > UINT64_MAX / 8 / (uint64_t)shape[d])
			return -EOVERFLOW;
		nel *= (uint64_t)shape[d];
	}
	if (nel * t.bits % 8 != 0)
		return -EINVAL;
	t.nbytes = nel * t.bits / 8;
	for (size_t i = 0; i < w->n; i++)
		if (strcmp(w->t[i].name, name) == 0)
			return -EINVAL;
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct st_wtensor *p = realloc(w->t, cap * sizeof *p);
		if (p == NULL)
			return -ENOMEM;
		w->t = p;
		w->cap = cap;
	}
	if ((t.name = strdup(name)) == NULL)
		return -ENOMEM;
	w->t[w->n++] = t;
	return 0;
}

/* Layout order of the reference writer: larger elements first, then by name, so
 * that every tensor starts aligned to its element size without gaps. */
static int cmp_layout(const void *a, const void *b)
{
	const struct st_wtensor *x = a, *y = b;
	if (x->bits != y->bits)
		return x->bits > y->bits ? -1 : 1;
	return strcmp(x->name, y->name);
}

static char *build_header(struct st_writer *w, size_t *len)
{
	json_t *root = json_object();
	char *s = NULL, *padded = NULL;
	uint64_t off = 0;
	if (root == NULL)
		return NULL;
	if (json_object_size(w->meta) && json_object_set(root, "__metadata__", w->meta) < 0)
		goto out;
	for (size_t i = 0; i < w->n; i++) {
		const struct st_wtensor *t = &w->t[i];
		json_t *shape = json_array();
		if (shape == NULL)
			goto out;
		for (uint32_t d = 0; d < t->n_dims; d++)
			json_array_append_new(shape, json_integer(t->shape[d]));
		json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", t->dtype, "shape", shape,
		                      "data_offsets", (json_int_t)off, (json_int_t)(off + t->nbytes));
		if (e == NULL || json_object_set_new(root, t->name, e) < 0)
			goto out;
		off += t->nbytes;
	}
	s = json_dumps(root, JSON_COMPACT);
	if (s == NULL)
		goto out;
	size_t n = strlen(s), padn = (n + 7) / 8 * 8;
	if ((padded = malloc(padn + 1)) != NULL) {
		memcpy(padded, s, n);
		memset(padded + n, ' ', padn - n); /* data area starts 8-aligned */
		padded[padn] = '\0';
		*len = padn;
	}
out:
	free(s);
	json_decref(root);
	return padded;
}

int st_writer_write(struct st_writer *w, const char *path, st_fill_fn fill, void *arg,
                    char *err, size_t errlen)
{
	char *head = NULL, *tmp = NULL;
	uint8_t *buf = NULL;
	FILE *fp = NULL;
	size_t hlen = 0;
	uint64_t maxbytes = 1;
	int fd = -1, rc = 0;

	if (err && errlen)
		err[0] = '\0';
	qsort(w->t, w->n, sizeof *w->t, cmp_layout);
	for (size_t i = 0; i < w->n; i++)
		if (w->t[i].nbytes > maxbytes)
			maxbytes = w->t[i].nbytes;
	if ((head = build_header(w, &hlen)) == NULL || (buf = malloc((size_t)maxbytes)) == NULL ||
	    (tmp = malloc(strlen(path) + 16)) == NULL) {
		rc = perr(err, errlen, path, -ENOMEM, "out of memory");
		goto out;
	}
	sprintf(tmp, "%s.tmp.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0 || (fp = fdopen(fd, "wb")) == NULL) {
		rc = -errno;
		perr(err, errlen, tmp, rc, "cannot create: %s", strerror(-rc));
		goto out;
	}
	fd = -1;
	fchmod(fileno(fp), 0644); /* mkstemp creates 0600; a model file is not secret */
	uint8_t lenbuf[8];
	for (int i = 0; i < 8; i++)
		lenbuf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
	if (fwrite(lenbuf, 1, 8, fp) != 8 || fwrite(head, 1, hlen, fp) != hlen)
		goto io_error;
	for (size_t i = 0; i < w->n; i++) {
		const struct st_wtensor *t = &w->t[i];
		if ((rc = fill(t->idx, buf, (size_t)t->nbytes, arg)) < 0) {
			perr(err, errlen, path, rc, "cannot produce the data of tensor '%s': %s", t->name,
			     strerror(-rc));
			goto out;
		}
		if (t->nbytes && fwrite(buf, 1, (size_t)t->nbytes, fp) != t->nbytes)
			goto io_error;
	}
	if (fflush(fp) != 0 || fsync(fileno(fp)) != 0)
		goto io_error;
	rc = fclose(fp);
	fp = NULL;
	if (rc != 0)
		goto io_error;
	if (rename(tmp, path) != 0) {
		rc = -errno;
		perr(err, errlen, path, rc, "cannot rename %s into place: %s", tmp, strerror(-rc));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	goto out;

io_error:
	rc = -(errno ? errno : EIO);
	perr(err, errlen, tmp, rc, "write failed: %s", strerror(-rc));
out:
	if (fp)
		fclose(fp);
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	free(buf);
	free(head);
	return rc;
}
