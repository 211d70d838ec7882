/* GGUF v3 writer (see gguf_write.h); used by inferd-mkmodel and by tests. */
#include "gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int failed; /* sticky -ENOMEM */
};

struct wtensor {
	char *name;
	enum dtype type;
	uint32_t n_dims;
	int64_t ne[GGUF_MAX_DIMS];
	uint64_t nbytes;
	uint64_t offset; /* in the data section */
};

struct gguf_writer {
	uint32_t alignment;
	uint64_t n_kv;
	struct wbuf kv;          /* serialized key/value pairs */
	struct wtensor *tensors;
	size_t n_tensors, cap_tensors;
	uint64_t data_size;      /* running, aligned */
};

static void wb_put(struct wbuf *b, const void *src, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (p == NULL) {
			b->failed = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void wb_le(struct wbuf *b, uint64_t v, int n)
{
	uint8_t t[8];
	for (int i = 0; i < n; i++)
		t[i] = (uint8_t)(v >> (8 * i));
	wb_put(b, t, (size_t)n);
}

static void wb_str(struct wbuf *b, const char *s)
{
	size_t n = strlen(s);
	wb_le(b, n, 8);
	wb_put(b, s, n);
}

struct gguf_writer *gguf_writer_new(uint32_t alignment)
{
	if (alignment == 0)
		alignment = GGUF_DEFAULT_ALIGNMENT;
	if (alignment & (alignment - 1))
		return NULL;
	struct gguf_writer *w = calloc(1, sizeof *w);
	if (w)
		w->alignment = alignment;
	return w;
}

void gguf_writer_free(struct gguf_writer *w)
{
	if (w == NULL)
		return;
	for (size_t i = 0; i < w->n_tensors; i++)
		free(w->tensors[i].name);
	free(w->tensors);
	free(w->kv.p);
	free(w);
}

static int kv_head(struct gguf_writer *w, const char *key, enum gguf_vtype t)
{
	wb_str(&w->kv, key);
	wb_le(&w->kv, t, 4);
	w->n_kv++;
	return w->kv.failed;
}

int gguf_writer_add_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
	kv_head(w, key, GGUF_VTYPE_UINT32);
	wb_le(&w->kv, v, 4);
	return w->kv.failed;
}

int gguf_writer_add_i32(struct gguf_writer *w, const char *key, int32_t v)
{
	kv_head(w, key, GGUF_VTYPE_INT32);
	wb_le(&w->kv, (uint32_t)v, 4);
	return w->kv.failed;
}

int gguf_writer_add_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
	kv_head(w, key, GGUF_VTYPE_UINT64);
	wb_le(&w->kv, v, 8);
	return w->kv.failed;
}

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

int gguf_writer_add_f32(struct gguf_writer *w, const char *key, float v)
{
	kv_head(w, key, GGUF_VTYPE_FLOAT32);
	wb_le(&w->kv, f32_bits(v), 4);
	return w->kv.failed;
}

int gguf_writer_add_bool(struct gguf_writer *w, const char *key, bool v)
{
	kv_head(w, key, GGUF_VTYPE_BOOL);
	wb_le(&w->kv, v ? 1 : 0, 1);
	return w->kv.failed;
}

int gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *v)
{
	kv_head(w, key, GGUF_VTYPE_STRING);
	wb_str(&w->kv, v);
	return w->kv.failed;
}

static void arr_head(struct gguf_writer *w, const char *key, enum gguf_vtype et, size_t n)
{
	kv_head(w, key, GGUF_VTYPE_ARRAY);
	wb_le(&w->kv, et, 4);
	wb_le(&w->kv, n, 8);
}

int gguf_writer_add_arr_str(struct gguf_writer *w, const char *key, const char *const *v, size_t n)
{
	arr_head(w, key, GGUF_VTYPE_STRING, n);
	for (size_t i = 0; i < n; i++)
		wb_str(&w->kv, v[i]);
	return w->kv.failed;
}

int gguf_writer_add_arr_f32(struct gguf_writer *w, const char *key, const float *v, size_t n)
{
	arr_head(w, key, GGUF_VTYPE_FLOAT32, n);
	for (size_t i = 0; i < n; i++)
		wb_le(&w->kv, f32_bits(v[i]), 4);
	return w->kv.failed;
}

int gguf_writer_add_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
	arr_head(w, key, GGUF_VTYPE_INT32, n);
	for (size_t i = 0; i < n; i++)
		wb_le(&w->kv, (uint32_t)v[i], 4);
	return w->kv.failed;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum dtype type,
                           uint32_t n_dims, const int64_t *ne)
{
	if (!dtype_valid(type) || n_dims == 0 || n_dims > GGUF_MAX_DIMS)
		return -EINVAL;
	struct wtensor t = { .type = type, .n_dims = n_dims };
	uint64_t rows = 1;
	for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
		t.ne[d] = d < n_dims ? ne[d] : 1;
		if (t.ne[d] < 0)
			return -EINVAL;
		if (d > 0)
			rows *= (uint64_t)t.ne[d];
	}
	uint64_t row;
	int rc = dtype_row_size(type, t.ne[0], &row);
	if (rc < 0)
		return rc;
	t.nbytes = row * rows;
	if (w->n_tensors == w->cap_tensors) {
		size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
		struct wtensor *p = realloc(w->tensors, cap * sizeof *p);
		if (p == NULL)
			return -ENOMEM;
		w->tensors = p;
		w->cap_tensors = cap;
	}
	t.name = strdup(name);
	if (t.name == NULL)
		return -ENOMEM;
	t.offset = w->data_size;
	w->data_size += (t.nbytes + w->alignment - 1) / w->alignment * w->alignment;
	w->tensors[w->n_tensors++] = t;
	return 0;
}

static int write_all(FILE *f, const void *p, size_t n)
{
	return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -EIO;
}

static int pad_to(FILE *f, uint64_t pos, uint32_t alignment)
{
	static const uint8_t zeros[64];
	uint64_t pad = (alignment - pos % alignment) % alignment;
	while (pad) {
		size_t n = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
		if (write_all(f, zeros, n) < 0)
			return -EIO;
		pad -= n;
	}
	return 0;
}

int gguf_writer_write(struct gguf_writer *w, const char *path, gguf_fill_fn fill, void *arg,
                      char *err, size_t errlen)
{
	struct wbuf head = { 0 };
	char *tmp = NULL;
	uint8_t *buf = NULL;
	FILE *f = NULL;
	int fd = -1, rc = 0;

	if (w->kv.failed) {
		rc = w->kv.failed;
		snprintf(err, errlen, "%s: out of memory while building metadata", path);
		goto out;
	}
	wb_put(&head, "GGUF", 4);
	wb_le(&head, 3, 4);
	wb_le(&head, w->n_tensors, 8);
	wb_le(&head, w->n_kv, 8);
	wb_put(&head, w->kv.p ? w->kv.p : (const uint8_t *)"", w->kv.len);
	uint64_t maxbytes = 0;
	for (size_t i = 0; i < w->n_tensors; i++) {
		const struct wtensor *t = &w->tensors[i];
		wb_str(&head, t->name);
		wb_le(&head, t->n_dims, 4);
		for (uint32_t d = 0; d < t->n_dims; d++)
			wb_le(&head, (uint64_t)t->ne[d], 8);
		wb_le(&head, t->type, 4);
		wb_le(&head, t->offset, 8);
		if (t->nbytes > maxbytes)
			maxbytes = t->nbytes;
	}
	if (head.failed || (buf = malloc(maxbytes ? maxbytes : 1)) == NULL ||
	    (tmp = malloc(strlen(path) + 16)) == NULL) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	sprintf(tmp, "%s.tmp.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0 || (f = fdopen(fd, "wb")) == NULL) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	fchmod(fileno(f), 0644); /* mkstemp creates 0600; a model file is not secret */
	if ((rc = write_all(f, head.p, head.len)) < 0 || (rc = pad_to(f, head.len, w->alignment)) < 0)
		goto io_error;
	for (size_t i = 0; i < w->n_tensors; i++) {
		const struct wtensor *t = &w->tensors[i];
		if ((rc = fill(i, buf, (size_t)t->nbytes, arg)) < 0) {
			snprintf(err, errlen, "%s: cannot produce the data of tensor '%s': %s", path,
			         t->name, strerror(-rc));
			goto out;
		}
		if ((rc = write_all(f, buf, (size_t)t->nbytes)) < 0 ||
		    (rc = pad_to(f, t->nbytes, w->alignment)) < 0)
			goto io_error;
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		rc = -EIO;
		goto io_error;
	}
	if (fclose(f) != 0) {
		f = NULL;
		rc = -EIO;
		goto io_error;
	}
	f = NULL;
	if (rename(tmp, path) != 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	goto out;

io_error:
	snprintf(err, errlen, "%s: write failed: %s", tmp, strerror(errno ? errno : EIO));
out:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	free(buf);
	free(head.p);
	return rc;
}
