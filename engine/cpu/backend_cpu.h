/* The cpu backend: host memory, cpu_matmul for weight products, own AVX2/FMA
 * kernels (ops.h, attention.h) for everything else. Synchronous: copy, sync,
 * events and streams complete at once.
 */
#ifndef INFERD_ENGINE_CPU_BACKEND_CPU_H
#define INFERD_ENGINE_CPU_BACKEND_CPU_H

#include "backend.h"

/* Fills *b as a cpu backend computing on n_threads OpenMP threads (0 = the
 * OpenMP default). Nothing to free: the table is static and ctx unused. */
void backend_cpu_init(struct backend *b, int n_threads);

/* The table itself (for tests of the dispatcher). */
extern const struct backend_ops backend_cpu_ops;

#endif
