/* The VAE of Stable Diffusion (diffusers' AutoencoderKL), on the CPU in f32.
 *
 * Decoder: z / scaling_factor + shift_factor -> post_quant_conv -> conv_in -> mid block
 * (resnet, attention, resnet) -> up blocks (layers_per_block + 1 resnets, nearest-2x upsampler
 * + conv on all but the last) -> group norm, SiLU, conv_out. Encoder: conv_in -> down blocks
 * (layers_per_block resnets, a stride-2 downsampler with (0,1,0,1) padding on all but the
 * last) -> mid block -> group norm, SiLU, conv_out (2 x latent_channels) -> quant_conv ->
 * (mean, logvar), logvar clamped to [-30, 20] as diffusers. VAE resnets have no time
 * embedding; the mid attention is one head over all pixels with group norm.
 *
 * Latents are in the UNet's space on both sides: vae_decode() takes what the sampler produced,
 * vae_encode() returns the posterior already scaled ((mean - shift) * scaling, std * scaling),
 * so an image-to-image start is mean + std * noise.
 *
 * Images are (batch, 3, H, W) floats in [-1, 1] (the decoder's output is not clamped);
 * H = h * vae_downscale(), W likewise.
 *
 * Weights: diffusers' tensor names (diff_vae_tensors() in pipeline.h; the older attention
 * names query/key/value/proj_attn are accepted), F32/F16/BF16, converted to f32 at load.
 * Conventions: 0 or a negative errno code; vae_new() writes a reason into err. A model is
 * immutable after creation.
 */
#ifndef INFERD_ENGINE_DIFFUSION_VAE_H
#define INFERD_ENGINE_DIFFUSION_VAE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline.h"

struct st_file;
struct vae; /* opaque */

/* Builds the decoder, and the encoder too when with_encoder (image-to-image).
 * @return 0 and *out (free with vae_free()), -EINVAL / -EBADMSG (tensor named in err),
 * -ENOTSUP, -ENOMEM. */
int vae_new(const struct diff_vae_config *c, const struct st_file *f, bool with_encoder,
            struct vae **out, char *err, size_t errlen);
void vae_free(struct vae *v); /* accepts NULL */
const struct diff_vae_config *vae_get_config(const struct vae *v);
bool vae_has_encoder(const struct vae *v);

/* Image pixels per latent pixel: 2^(n_blocks - 1) (8 for SD). */
int vae_downscale(const struct vae *v);

/* img (batch, out_channels, h * f, w * f) = decode(z (batch, latent_channels, h, w)).
 * n_threads: 0 = OpenMP default. @return 0, -EINVAL, -ENOMEM. */
int vae_decode(const struct vae *v, const float *z, int64_t batch, int64_t h, int64_t w,
               float *img, int n_threads);

/* mean, std (batch, latent_channels, H / f, W / f), scaled to the UNet's space, of the
 * posterior of img (batch, in_channels, H, W); H and W multiples of f.
 * @return 0, -EINVAL (no encoder, sizes), -ENOMEM. */
int vae_encode(const struct vae *v, const float *img, int64_t batch, int64_t H, int64_t W,
               float *mean, float *std, int n_threads);

#endif
