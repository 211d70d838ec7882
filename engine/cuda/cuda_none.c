/* The CUDA probe of a build without the CUDA toolkit. */
#include "cuda_probe.h"

#include <errno.h>
#include <stdio.h>

int cuda_built(void)
{
	return 0;
}

int cuda_probe(struct cuda_device_info *out, int max, char *err, size_t errlen)
{
	(void)out;
	(void)max;
	snprintf(err, errlen, "this build has no CUDA backend (the CUDA toolkit was not found)");
	return -ENOSYS;
}

#include "backend_cuda.h"

int backend_cuda_init(struct backend *b, int device, char *err, size_t errlen)
{
	(void)b;
	(void)device;
	snprintf(err, errlen, "this build has no CUDA backend (the CUDA toolkit was not found)");
	return -ENOSYS;
}

void backend_cuda_fini(struct backend *b)
{
	(void)b;
}
