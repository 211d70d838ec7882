/* The CUDA backend's presence: which devices this process can use.
 *
 * The daemon asks at start-up and logs the answer, so an operator sees whether the GPU backend
 * was built and whether a device is visible. Built without the CUDA toolkit, the probe says so.
 * Errors: the number of devices (>= 0), or a negative errno with the reason in err
 * (-ENOSYS: built without CUDA; -ENODEV: no usable driver or device).
 */
#ifndef INFERD_ENGINE_CUDA_PROBE_H
#define INFERD_ENGINE_CUDA_PROBE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct cuda_device_info {
	char name[128];
	int major, minor;              /* compute capability */
	uint64_t memory_bytes;
	int multiprocessors;
};

/* @return whether this build contains the CUDA backend. */
int cuda_built(void);

/* Lists up to max devices into out (may be NULL with max 0). */
int cuda_probe(struct cuda_device_info *out, int max, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
