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
