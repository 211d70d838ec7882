/* The weight dtype override of llama_model_load(): matrices stored as F32, F16 or BF16 are
 * converted at load to the requested type (e.g. an F16 file served as Q8_0 for twice the decode
 * speed, or an F32 file as F16 for half the memory). The converted copies are owned by the
 * model (llama_model_free releases them); the mmap'ed originals are simply not read again. */
#include "llama-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

static bool is_float(enum dtype t)
{
	return t == DTYPE_F32 || t == DTYPE_F16 || t == DTYPE_BF16;
}

/* Converts one (ne0 x ne1) matrix into a new buffer; leaves t untouched on failure. */
static int convert_one(struct llama_model *m, struct tensor *t, enum dtype to)
{
	const int64_t cols = t->ne[0], rows = t->ne[1];
	uint64_t rb;
	if (dtype_row_size(to, cols, &rb) < 0)
		return -EINVAL;
	const size_t row_bytes = (size_t)rb;
	size_t total = (row_bytes * (size_t)rows + 63) & ~(size_t)63;
	uint8_t *dst = aligned_alloc(64, total);
	if (dst == NULL)
		return -ENOMEM;
	const uint8_t *src = t->data;
	const size_t src_stride = t->nb[1];
	int err = 0;
#pragma omp parallel
	{
		float *row = malloc((size_t)cols * sizeof *row);
		int my = row == NULL ? -ENOMEM : 0;
#pragma omp for schedule(static)
		for (int64_t r = 0; r < rows; r++) {
			if (my < 0)
				continue;
			my = dtype_dequant_row(t->type, src + (size_t)r * src_stride, row, cols);
			if (my == 0)
				my = dtype_quant_row(to, row, dst + (size_t)r * row_bytes, cols);
		}
		free(row);
		if (my < 0) {
#pragma omp critical(llama_convert_err)
			err = my;
		}
	}
	if (err < 0) {
		free(dst);
		return err;
	}
	struct tensor nt;
	int rc = tensor_init(&nt, to, 2, t->ne, dst);
	if (rc < 0) {
		free(dst);
		return rc;
	}
	nt.name = t->name;
	nt.backend = t->backend;
	*t = nt;
	m->owned[m->n_owned++] = dst;
	m->n_converted++;
	return 0;
}

int llama_convert_weights(struct llama_model *m, enum dtype to, char *err, size_t errlen)
{
	const int64_t blk = dtype_block_elems(to);
	if (blk <= 0 || !dtype_can_quant(to)) {
		snprintf(err, errlen, "cannot convert weights to %s (supported: F32, F16, BF16, Q8_0, "
		         "Q4_0, Q4_K, Q6_K)", dtype_name(to) ? dtype_name(to) : "?");
		return -ENOTSUP;
	}
	const int max = 2 + 7 * m->hp.n_layers;
	m->owned = calloc((size_t)max, sizeof *m->owned);
	if (m->owned == NULL)
		return -ENOMEM;
	struct tensor *mats[2 + 7];
	for (int l = -1; l < m->hp.n_layers; l++) {
		int n = 0;
		if (l < 0) {
			mats[n++] = &m->tok_embd;
			if (!m->hp.tied_output)
				mats[n++] = &m->output;
		} else {
			struct llama_layer *L = &m->layers[l];
			struct tensor *ls[] = { &L->wq, &L->wk, &L->wv, &L->wo,
			                        &L->w_gate, &L->w_up, &L->w_down };
			for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
				mats[n++] = ls[i];
		}
		for (int i = 0; i < n; i++) {
			struct tensor *t = mats[i];
			if (t->type == to || !is_float(t->type) || t->ne[0] % blk != 0)
				continue;
			int rc = convert_one(m, t, to);
			if (rc < 0) {
				snprintf(err, errlen, "converting tensor %s from %s to %s: %s",
				         t->name ? t->name : "?", dtype_name(t->type), dtype_name(to),
				         strerror(-rc));
				return rc;
			}
		}
	}
	if (m->hp.tied_output)
		m->output = m->tok_embd;
	return 0;
}

int llama_model_n_converted(const struct llama_model *m)
{
	return m->n_converted;
}
