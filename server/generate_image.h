/* The native diffusion method: GenerateImage (progress frames, then the images as PNG). */
#ifndef INFERD_SERVER_GENERATE_IMAGE_H
#define INFERD_SERVER_GENERATE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

struct call;

void method_generate_image(struct call *c, const uint8_t *payload, size_t len);

#endif
