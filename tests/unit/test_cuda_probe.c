/* The CUDA probe: a device list or a reason, never a crash; consistent with the build. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "cuda_probe.h"
#include "inferd-config.h"

Test(cuda_probe, lists_devices_or_says_why_not)
{
	struct cuda_device_info dev[16];
	char why[256] = "";
	int n = cuda_probe(dev, 16, why, sizeof(why));

	cr_expect_eq(cuda_built(), HAVE_CUDA, "the probe matches the build");
	if (n < 0) {
		cr_expect(n == -ENOSYS || n == -ENODEV, "error %d", n);
		cr_expect_gt(strlen(why), 10, "a reason is given");
		cr_expect(cuda_built() || n == -ENOSYS);
		return;
	}
	for (int i = 0; i < n && i < 16; i++) {
		cr_expect_gt(strlen(dev[i].name), 0);
		cr_expect_geq(dev[i].major, 5, "compute capability %d.%d", dev[i].major, dev[i].minor);
		cr_expect_gt(dev[i].memory_bytes, 0);
	}
	/* Asking for no device information still counts them. */
	cr_expect_eq(cuda_probe(NULL, 0, why, sizeof(why)), n);
}
