/* Device discovery through the CUDA runtime. */
#include "cuda_probe.h"

#include <cuda_runtime.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int cuda_built(void)
{
	return 1;
}

int cuda_probe(struct cuda_device_info *out, int max, char *err, size_t errlen)
{
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);

	if (e != cudaSuccess) {
		snprintf(err, errlen, "no CUDA device: %s", cudaGetErrorString(e));
		return -ENODEV;
	}
	for (int i = 0; i < n && i < max && out; i++) {
		cudaDeviceProp p;
		if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
			snprintf(out[i].name, sizeof(out[i].name), "device %d (properties unavailable)", i);
			continue;
		}
		snprintf(out[i].name, sizeof(out[i].name), "%.127s", p.name);
		out[i].major = p.major;
		out[i].minor = p.minor;
		out[i].memory_bytes = (uint64_t)p.totalGlobalMem;
		out[i].multiprocessors = p.multiProcessorCount;
	}
	return n;
}
