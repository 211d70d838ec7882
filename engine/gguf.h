/* GGUF v2/v3 reader: metadata, tensor infos, and tensor data used in place
 * from a read-only memory map.
 *
 * Conventions: functions that can fail return 0 or a negative errno-style code.
 * gguf_open() writes a one-line reason naming the file, the key or tensor and
 * what is wrong into err (when err is not NULL). Getters return -ENOENT when
 * the key is absent, -EINVAL when its type does not fit the getter and
 * -ERANGE when the value does not fit the output type.
 *
 * Every check on the file happens in gguf_open(): afterwards all strings,
 * arrays and tensor data handed out lie inside the file, every tensor's byte
 * size is computed without overflow and every tensor type is known. Memory
 * allocated for the parse is bounded by a small multiple of the file size.
 *
 * Pointers into the file (string bytes, array data, tensor data) may be
 * unaligned except tensor data, which is aligned to gguf_alignment() relative
 * to the start of the file (and therefore in memory for gguf_open()).
 */
#ifndef INFERD_ENGINE_GGUF_H
#define INFERD_ENGINE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* Metadata value types as stored in the file. */
enum gguf_vtype {
	GGUF_VTYPE_UINT8 = 0,
	GGUF_VTYPE_INT8 = 1,
	GGUF_VTYPE_UINT16 = 2,
	GGUF_VTYPE_INT16 = 3,
	GGUF_VTYPE_UINT32 = 4,
	GGUF_VTYPE_INT32 = 5,
	GGUF_VTYPE_FLOAT32 = 6,
	GGUF_VTYPE_BOOL = 7,
	GGUF_VTYPE_STRING = 8,
	GGUF_VTYPE_ARRAY = 9,
	GGUF_VTYPE_UINT64 = 10,
	GGUF_VTYPE_INT64 = 11,
	GGUF_VTYPE_FLOAT64 = 12,
	GGUF_VTYPE_COUNT
};

struct gguf; /* opaque: one parsed file */

struct gguf_tensor_info {
	const char *name;           /* NUL-terminated, owned by the gguf */
	enum dtype type;
	uint32_t n_dims;            /* 1..GGUF_MAX_DIMS */
	int64_t ne[GGUF_MAX_DIMS];  /* elements per dim, ne[0] contiguous; unused dims are 1 */
	const void *data;           /* in place, aligned; NULL when nbytes == 0 */
	uint64_t offset;            /* of the data, from the start of the file */
	uint64_t nbytes;            /* byte size of the data */
	uint64_t n_elements;
};

/* Opens and checks the GGUF file at path, mapping it read-only.
 * @return 0 and *out (free with gguf_free()), or a negative errno code
 * (-EINVAL / -EBADMSG for a malformed file, -ENOTSUP for an unsupported
 * version, -ENOMEM, or the errno of open/mmap) with a reason in err. */
int gguf_open(const char *path, struct gguf **out, char *err, size_t errlen);

/* Like gguf_open() on len bytes at data, which must stay valid and unchanged
 * until gguf_free(); name is used in messages (may be NULL). Tensor data is
 * aligned in memory only if data is. */
int gguf_open_memory(const void *data, size_t len, const char *name, struct gguf **out,
                     char *err, size_t errlen);

/* Unmaps and frees everything; accepts NULL. */
void gguf_free(struct gguf *g);

uint32_t gguf_version(const struct gguf *g);
uint32_t gguf_alignment(const struct gguf *g);
uint64_t gguf_data_offset(const struct gguf *g); /* start of the tensor data section */
uint64_t gguf_file_size(const struct gguf *g);
const void *gguf_file_data(const struct gguf *g); /* the whole file */

/* ---- metadata ---------------------------------------------------------------- */

int64_t gguf_n_kv(const struct gguf *g);
/* Index of key, or -1. */
int64_t gguf_find_key(const struct gguf *g, const char *key);
/* Key and type of entry kid (0 <= kid < gguf_n_kv()); NULL / GGUF_VTYPE_COUNT if out of range. */
const char *gguf_kv_key(const struct gguf *g, int64_t kid);
enum gguf_vtype gguf_kv_type(const struct gguf *g, int64_t kid);
const char *gguf_vtype_name(enum gguf_vtype t);

/* Exact-type getters (gguf_get_f32 also accepts a FLOAT64 value). */
int gguf_get_u8(const struct gguf *g, const char *key, uint8_t *out);
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out);
int gguf_get_i32(const struct gguf *g, const char *key, int32_t *out);
int gguf_get_u64(const struct gguf *g, const char *key, uint64_t *out);
int gguf_get_f32(const struct gguf *g, const char *key, float *out);
int gguf_get_f64(const struct gguf *g, const char *key, double *out);
int gguf_get_bool(const struct gguf *g, const char *key, bool *out);
/* String value: NUL-terminated copy owned by the gguf; len (may be NULL) is the
 * byte length in the file (the string may contain NUL bytes). */
int gguf_get_str(const struct gguf *g, const char *key, const char **out, size_t *len);

/* Any integer type (UINT8..INT64), range-checked: real files differ in which
 * integer type they use for counts. */
int gguf_get_uint(const struct gguf *g, const char *key, uint64_t *out);
int gguf_get_uint32(const struct gguf *g, const char *key, uint32_t *out);
int gguf_get_int(const struct gguf *g, const char *key, int64_t *out);

/* Scalar value of entry kid for printing: integers and bools as int64/uint64,
 * floats as double. -EINVAL for strings and arrays. */
int gguf_kv_get_int(const struct gguf *g, int64_t kid, int64_t *out);
int gguf_kv_get_uint(const struct gguf *g, int64_t kid, uint64_t *out);
int gguf_kv_get_float(const struct gguf *g, int64_t kid, double *out);
int gguf_kv_get_str(const struct gguf *g, int64_t kid, const char **out, size_t *len);

/* ---- arrays ---------------------------------------------------------------------
 * An array value is addressed by key; nested arrays by gguf_arr_sub(). */

struct gguf_arr; /* opaque view of one array value, owned by the gguf */

/* The array at key: -ENOENT, -EINVAL if not an array. */
int gguf_get_arr(const struct gguf *g, const char *key, const struct gguf_arr **out);
int gguf_kv_get_arr(const struct gguf *g, int64_t kid, const struct gguf_arr **out);
enum gguf_vtype gguf_arr_type(const struct gguf_arr *a); /* element type */
uint64_t gguf_arr_len(const struct gguf_arr *a);
/* Raw little-endian element bytes in place (numeric and bool arrays only, may be
 * unaligned; copy with memcpy); NULL for string and nested arrays. */
const void *gguf_arr_data(const struct gguf_arr *a);
/* Element i: -ERANGE when i >= length, -EINVAL when the type does not fit. */
int gguf_arr_get_str(const struct gguf_arr *a, uint64_t i, const char **s, size_t *len); /* in place, NOT NUL-terminated */
int gguf_arr_get_int(const struct gguf_arr *a, uint64_t i, int64_t *out);   /* any integer or bool type */
int gguf_arr_get_uint(const struct gguf_arr *a, uint64_t i, uint64_t *out); /* any integer, >= 0 */
int gguf_arr_get_float(const struct gguf_arr *a, uint64_t i, double *out);  /* f32, f64 */
int gguf_arr_get_f32(const struct gguf_arr *a, uint64_t i, float *out);     /* f32, f64 */
int gguf_arr_sub(const struct gguf_arr *a, uint64_t i, const struct gguf_arr **out); /* nested */

/* ---- tensors -------------------------------------------------------------------- */

int64_t gguf_n_tensors(const struct gguf *g);
/* Index of the tensor called name, or -1. */
int64_t gguf_find_tensor(const struct gguf *g, const char *name);
/* Info of tensor tid (0 <= tid < gguf_n_tensors()), or NULL. Owned by the gguf. */
const struct gguf_tensor_info *gguf_tensor(const struct gguf *g, int64_t tid);
/* Shortcut: info by name, or NULL. */
const struct gguf_tensor_info *gguf_get_tensor(const struct gguf *g, const char *name);

#endif
