/* The offline parameter search for nano-batching (`inferd --tune MODEL`).
 *
 * It measures, on this machine, the forward pass of a representative decode iteration (batch
 * sequences, each one new token over `context` cached positions) unsplit and split into two
 * nano-batches at several shares and thread splits, keeps the fastest, and turns nano-batching
 * on only when it beats the unsplit pass by more than 2%. The result is a small INI file stored
 * next to the model and loaded at start-up.
 * Errors: 0 or a negative errno, with a message.
 */
#ifndef INFERD_SCHEDULER_NANO_TUNE_H
#define INFERD_SCHEDULER_NANO_TUNE_H

#include <stdbool.h>
#include <stdio.h>

#include "dtype.h"
#include "forward.h"

struct backend;
struct llama_model;

struct nano_profile {
	bool enabled;
	struct fwd_nano params;
	int batch, context;          /* the iteration it was measured on */
	double t_off, t_on;          /* seconds per iteration: unsplit, best split */
};

/* Measures and picks. Progress lines go to report (may be NULL). */
int nano_tune(struct llama_model *m, struct backend *b, int batch, int context,
              int block_size, enum dtype kv_type, int n_threads, struct nano_profile *out,
              FILE *report,
              char *err, size_t errlen);

int nano_profile_save(const char *path, const struct nano_profile *p, const char *model_path,
                      char *err, size_t errlen);
/* @return 0, -ENOENT when there is no profile, or -EINVAL with the line at fault. */
int nano_profile_load(const char *path, struct nano_profile *p, char *err, size_t errlen);

#endif
