/* Error-message helpers of the diffusion loaders. */
#include "diff-internal.h"

#include <stdarg.h>
#include <stdio.h>

void diff_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void diff_format_shape(char *buf, size_t len, uint32_t nd, const int64_t *s)
{
	size_t n = (size_t)snprintf(buf, len, "[");
	for (uint32_t i = 0; i < nd && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? ", " : "", (long long)s[i]);
	if (n < len)
		snprintf(buf + n, len - n, "]");
}
