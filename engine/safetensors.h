/* safetensors reader and writer.
 *
 * A file is: u64 little-endian header length N, N bytes of UTF-8 JSON (an
 * object: tensor name -> {"dtype": "F32", "shape": [..], "data_offsets":
 * [begin, end]}, plus an optional "__metadata__" object of string -> string),
 * then the data area; offsets count from the start of the data area.
 *
 * Conventions: functions that can fail return 0 or a negative errno-style code.
 * st_open() writes a one-line reason naming the file, the tensor or key and what
 * is wrong into err (when err is not NULL).
 *
 * Every check happens in st_open(): afterwards every tensor's byte range lies
 * inside the data area, no two ranges overlap, and for every dtype whose
 * element size is known the range is exactly product(shape) x element size
 * (computed without overflow). A file may contain dtypes this engine does not
 * compute with (I64 position ids in CLIP text encoders, F64, F8...): it still
 * opens; st_tensor_dtype() on such a tensor says -ENOTSUP. Gaps between
 * ranges and bytes after the last one are accepted (the reference writer never
 * makes them, but nothing depends on their absence). The header is capped at
 * ST_MAX_HEADER bytes, so parsing allocates at most a small multiple of that.
 *
 * Tensor data is used in place. Writers pad the header so that the data area
 * starts 8-aligned, and lay tensors out largest alignment first, so data is
 * normally aligned to its element size; a file that is not can still be read
 * with st_tensor_to_f32() (memcpy-based).
 */
#ifndef INFERD_ENGINE_SAFETENSORS_H
#define INFERD_ENGINE_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* as the reference implementation */
#define ST_MAX_DIMS 8

struct st_file; /* opaque: one parsed file */

struct st_tensor {
	const char *name;          /* NUL-terminated, owned by the st_file */
	const char *dtype_name;    /* as in the file: "F32", "F16", "BF16", "I64", ... */
	uint32_t elem_bits;        /* bits per element; 0 for a dtype name this reader does not know */
	uint32_t n_dims;           /* 0..ST_MAX_DIMS (0: a scalar) */
	int64_t shape[ST_MAX_DIMS];/* as in the file: shape[0] outermost (row-major, PyTorch order) */
	uint64_t n_elements;
	const void *data;          /* in place; NULL when nbytes == 0 */
	uint64_t offset;           /* of the data, from the start of the file */
	uint64_t nbytes;
};

/* Opens and checks the safetensors file at path, mapping it read-only.
 * @return 0 and *out (free with st_free()), or -EBADMSG for a malformed file,
 * -ENOMEM, or the errno of open/mmap, with a reason in err. */
int st_open(const char *path, struct st_file **out, char *err, size_t errlen);

/* Like st_open() on len bytes at data, which must stay valid and unchanged until
 * st_free(); name is used in messages (may be NULL). */
int st_open_memory(const void *data, size_t len, const char *name, struct st_file **out,
                   char *err, size_t errlen);

/* Unmaps and frees everything; accepts NULL. */
void st_free(struct st_file *f);

const char *st_path(const struct st_file *f);   /* the name given to st_open*() */
uint64_t st_header_size(const struct st_file *f); /* N */
uint64_t st_data_offset(const struct st_file *f); /* 8 + N */
uint64_t st_file_size(const struct st_file *f);

/* ---- tensors (listed in byte order of their names) ---------------------------------- */

int64_t st_n_tensors(const struct st_file *f);
/* Index of the tensor called name, or -1. */
int64_t st_find(const struct st_file *f, const char *name);
/* Info of tensor i (0 <= i < st_n_tensors()), or NULL; owned by the st_file. */
const struct st_tensor *st_tensor(const struct st_file *f, int64_t i);
/* Shortcut: info by name, or NULL. */
const struct st_tensor *st_get(const struct st_file *f, const char *name);

/* The engine dtype of t: DTYPE_F32, DTYPE_F16 or DTYPE_BF16; -ENOTSUP for any
 * other dtype in the file. */
int st_tensor_dtype(const struct st_tensor *t, enum dtype *out);

/* Converts the n_elements values of an F32/F16/BF16 tensor to f32 in dst (n
 * floats of room). @return 0, -ENOTSUP (other dtype), -ERANGE (n too small). */
int st_tensor_to_f32(const struct st_tensor *t, float *dst, uint64_t n);

/* Element size in bits of a safetensors dtype name; 0 when unknown. */
uint32_t st_dtype_bits(const char *dtype_name);

/* ---- metadata ("__metadata__", string -> string) ----------------------------------- */

int64_t st_n_meta(const struct st_file *f);
/* Key and value of entry i (NULL when out of range); owned by the st_file. */
const char *st_meta_key(const struct st_file *f, int64_t i);
const char *st_meta_value(const struct st_file *f, int64_t i);
/* Value of key, or NULL when absent. */
const char *st_meta_get(const struct st_file *f, const char *key);

/* ---- writer ------------------------------------------------------------------------
 * Tensors and metadata are collected in memory, data is produced one tensor at a
 * time by a callback while the file is written (as gguf_write.h). */

struct st_writer;

/* @return a writer, or NULL when out of memory; free with st_writer_free(). */
struct st_writer *st_writer_new(void);
void st_writer_free(struct st_writer *w); /* accepts NULL */

/* Metadata entry (copied). -EINVAL for the key "__metadata__" or a duplicate. */
int st_writer_add_meta(struct st_writer *w, const char *key, const char *value);

/* Declares a tensor (name and shape copied). dtype_name is a safetensors dtype
 * ("F32", "F16", "BF16", "I64", ...). -EINVAL for an unknown dtype, a bad shape
 * or a duplicate name, -EOVERFLOW when the size does not fit. */
int st_writer_add_tensor(struct st_writer *w, const char *name, const char *dtype_name,
                         uint32_t n_dims, const int64_t *shape);

/* Fills buf (nbytes, the tensor's byte size) with the data of tensor idx (in the
 * order added). Returns 0 or a negative errno code that aborts the write. */
typedef int (*st_fill_fn)(size_t idx, void *buf, size_t nbytes, void *arg);

/* Writes the file at path (replaced atomically through a temporary file in the
 * same folder). @return 0 or a negative errno code with a reason in err. */
int st_writer_write(struct st_writer *w, const char *path, st_fill_fn fill, void *arg,
                    char *err, size_t errlen);

#endif
