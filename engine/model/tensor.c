/* struct tensor helpers. */
#include "tensor.h"

#include <errno.h>
#include <string.h>

int tensor_init(struct tensor *t, enum dtype type, int n_dims, const int64_t *ne, void *data)
{
	if (t == NULL || !dtype_valid(type) || n_dims < 1 || n_dims > TENSOR_MAX_DIMS)
		return -EINVAL;
	memset(t, 0, sizeof *t);
	t->type = type;
	t->n_dims = n_dims;
	for (int i = 0; i < TENSOR_MAX_DIMS; i++) {
		t->ne[i] = i < n_dims ? ne[i] : 1;
		if (t->ne[i] < 0)
			return -EINVAL;
	}
	uint64_t row;
	int rc = dtype_row_size(type, t->ne[0], &row);
	if (rc < 0)
		return rc;
	t->nb[0] = dtype_block_bytes(type);
	t->nb[1] = (size_t)row;
	for (int i = 2; i < TENSOR_MAX_DIMS; i++) {
		if (t->ne[i - 1] != 0 && t->nb[i - 1] > SIZE_MAX / (size_t)t->ne[i - 1])
			return -EOVERFLOW;
		t->nb[i] = t->nb[i - 1] * (size_t)t->ne[i - 1];
	}
	t->data = data;
	return 0;
}

int64_t tensor_nelements(const struct tensor *t)
{
	return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

size_t tensor_nbytes(const struct tensor *t)
{
	return t->nb[3] * (size_t)t->ne[3];
}

bool tensor_has_shape(const struct tensor *t, int n_dims, const int64_t *ne)
{
	for (int i = 0; i < TENSOR_MAX_DIMS; i++)
		if (t->ne[i] != (i < n_dims ? ne[i] : 1))
			return false;
	return true;
}
