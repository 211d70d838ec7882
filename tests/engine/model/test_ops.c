#include <criterion/criterion.h>
Test(model_ops, placeholder) {}
