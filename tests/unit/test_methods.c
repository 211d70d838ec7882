/* The method table: what is served, and what stays served during a drain. */
#include <criterion/criterion.h>

#include "server-internal.h"

Test(methods, serves_the_methods_that_need_no_model)
{
	const int served[] = {
		INFERD__V1__METHOD__METHOD_HEALTH, INFERD__V1__METHOD__METHOD_LIST_MODELS,
		INFERD__V1__METHOD__METHOD_STATS, INFERD__V1__METHOD__METHOD_CANCEL,
		INFERD__V1__METHOD__METHOD_ECHO,
	};
	for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++) {
		const struct method_entry *m = method_lookup(served[i]);
		cr_assert_not_null(m, "method %d", served[i]);
		cr_expect_eq(m->method, served[i]);
		cr_expect_not_null(m->handler);
	}
}

Test(methods, unknown_and_unspecified_methods_are_not_served)
{
	cr_expect_null(method_lookup(INFERD__V1__METHOD__METHOD_UNSPECIFIED));
	cr_expect_null(method_lookup(-5));
	cr_expect_null(method_lookup(4242));
}

Test(methods, drain_keeps_observability_and_cancel)
{
	cr_expect(method_lookup(INFERD__V1__METHOD__METHOD_HEALTH)->while_draining);
	cr_expect(method_lookup(INFERD__V1__METHOD__METHOD_STATS)->while_draining);
	cr_expect(method_lookup(INFERD__V1__METHOD__METHOD_CANCEL)->while_draining);
	cr_expect(!method_lookup(INFERD__V1__METHOD__METHOD_ECHO)->while_draining);
}
