/* GGUF v3 writer: metadata and tensor infos are collected in memory, tensor
 * data is produced one tensor at a time by a callback while the file is
 * written, so a writer never holds more than the largest tensor.
 *
 * Errors: 0 or a negative errno-style code; gguf_writer_write() also fills err.
 */
#ifndef INFERD_ENGINE_GGUF_WRITE_H
#define INFERD_ENGINE_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

struct gguf_writer;

/* @return a writer with the given tensor data alignment (a power of two; 0 means
 * GGUF_DEFAULT_ALIGNMENT), or NULL when out of memory; free with gguf_writer_free(). */
struct gguf_writer *gguf_writer_new(uint32_t alignment);
void gguf_writer_free(struct gguf_writer *w); /* accepts NULL */

/* Metadata in the order added. The writer copies keys and values. The
 * general.alignment key is not added automatically: add it (u32) when the
 * alignment is not the default. */
int gguf_writer_add_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_add_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_add_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_add_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_add_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *v);
int gguf_writer_add_arr_str(struct gguf_writer *w, const char *key, const char *const *v, size_t n);
int gguf_writer_add_arr_f32(struct gguf_writer *w, const char *key, const float *v, size_t n);
int gguf_writer_add_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, size_t n);

/* Declares a tensor; its data comes from the fill callback of gguf_writer_write().
 * -EINVAL for a bad type/shape (ne[0] must be a multiple of the block size). */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum dtype type,
                           uint32_t n_dims, const int64_t *ne);

/* Fills buf (nbytes, the tensor's byte size) with the data of tensor idx (in the
 * order added). Returns 0 or a negative errno code that aborts the write. */
typedef int (*gguf_fill_fn)(size_t idx, void *buf, size_t nbytes, void *arg);

/* Writes the file at path (replaced atomically through a temporary file in the
 * same folder). @return 0 or a negative errno code with a reason in err. */
int gguf_writer_write(struct gguf_writer *w, const char *path, gguf_fill_fn fill, void *arg,
                      char *err, size_t errlen);

#endif
