#!/usr/bin/python3
"""Independent numpy (float64) reference of a whole Stable Diffusion run over a diffusers folder,
assembled from the component references of this folder (clip_tokenizer_ref, clip_text_ref,
unet_ref, vae_ref, noise_sched_ref), all written from the published architectures and
formulas. It follows the pipeline that engine/diffusion/sd.h documents:

  ids      = BOS, tokens (at most 75), EOS, pad (special_tokens_map.json's pad_token, else EOS)
  ctx      = text_encoder([negative, prompt])                 (prompt alone when guidance <= 1)
  image k  : generator Rng(seed + k)
             text-to-image: latents = normal(C*h*w) * init_noise_sigma
             image-to-image: (mean, std) = vae.encode(init); x0 = mean + std * normal();
                             start = n - min(int(n * strength), n); latents = add_noise(start,
                             x0, normal())
             per step i: x_in = scale(i, latents); (u, c) = unet(x_in, t_i, ctx);
                         eps = u + g (c - u); latents = step(i, eps, latents, generator)
  images   = vae.decode(latents)                               (not clamped)

  sd_ref.py run DIR OUT --prompt P [--negative N] --width W --height H --steps S
            --guidance G --seed SEED [--scheduler ddim|euler|euler_a|dpmpp_2m|lcm]
            [--num-images K] [--init RGB8_FILE --strength F]
      OUT: float64 little-endian, images (K, 3, H, W) then latents (K, C, H/f, W/f).
      RGB8_FILE: H * W * 3 bytes, rows top to bottom (pixels -> p / 127.5 - 1).
"""
import argparse
import json
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_text_ref  # noqa: E402
import clip_tokenizer_ref  # noqa: E402
import noise_sched_ref  # noqa: E402
import unet_ref  # noqa: E402
import vae_ref  # noqa: E402


def token_ids(folder, text, n_ctx=77):
    vocab, ranks = clip_tokenizer_ref.load(folder + "/tokenizer")
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    pad = eos
    path = folder + "/tokenizer/special_tokens_map.json"
    if os.path.exists(path):
        with open(path) as f:
            p = json.load(f).get("pad_token")
        if isinstance(p, dict):
            p = p.get("content")
        if isinstance(p, str) and p in vocab:
            pad = vocab[p]
    toks = clip_tokenizer_ref.encode(text, vocab, ranks)[:n_ctx - 2]
    ids = [bos] + toks + [eos]
    return ids + [pad] * (n_ctx - len(ids))


def text_embeddings(folder, prompts):
    with open(folder + "/text_encoder/config.json") as f:
        c = json.load(f)
    t = clip_text_ref.read_safetensors(folder + "/text_encoder/model.safetensors")
    ids = np.array([token_ids(folder, p, c.get("max_position_embeddings", 77)) for p in prompts])
    return clip_text_ref.forward(t, ids, c["num_attention_heads"], c.get("hidden_act", "quick_gelu"),
                                 c.get("layer_norm_eps", 1e-5), 0)


def scheduler(folder, kind, steps):
    with open(folder + "/scheduler/scheduler_config.json") as f:
        c = json.load(f)
    assert c.get("beta_start", 0.00085) == 0.00085 or abs(c["beta_start"] - 0.00085) < 1e-12
    assert abs(c.get("beta_end", 0.012) - 0.012) < 1e-12, "noise_sched_ref fixes SD's betas"
    a = types.SimpleNamespace(
        kind=kind, pred=c.get("prediction_type", "epsilon"), steps=steps,
        clip_sample=c.get("clip_sample_range", 1.0) if c.get("clip_sample", False) else 0.0,
        beta=c.get("beta_schedule", "scaled_linear"), alpha_one=c.get("set_alpha_to_one", False),
        spacing=c.get("timestep_spacing", "leading"), offset=c.get("steps_offset", 0))
    return noise_sched_ref.Sched(a)


def run(a):
    folder = a.dir
    ucfg, uw = unet_ref.load(folder + "/unet")
    vcfg, vw = vae_ref.load(folder + "/vae")
    f = vae_ref.downscale(vcfg)
    C, h, w = vcfg["latent_channels"], a.height // f, a.width // f
    n = C * h * w
    cfg_on = a.guidance > 1
    ctx = text_embeddings(folder, [a.negative, a.prompt] if cfg_on else [a.prompt])
    init = None
    if a.init:
        px = np.fromfile(a.init, dtype=np.uint8).reshape(a.height, a.width, 3)
        img = px.transpose(2, 0, 1)[None].astype(np.float64) / 127.5 - 1.0
        mean, std = vae_ref.encode(vcfg, vw, img)
        init = (mean.reshape(-1), std.reshape(-1))
    lat_all = []
    for k in range(a.num_images):
        s = scheduler(folder, a.scheduler, a.steps)
        rng = noise_sched_ref.Rng(a.seed + k)
        start = 0
        if init is not None:
            x0 = init[0] + init[1] * rng.normal(n)
            start = s.n - min(int(s.n * a.strength), s.n)
            x = s.add_noise(start, x0, rng.normal(n))
        else:
            x = rng.normal(n) * s.init_sigma
        for i in range(start, s.n):
            xin = s.scale(i, x).reshape(1, C, h, w)
            xb = np.concatenate([xin] * ctx.shape[0])
            t = np.full(ctx.shape[0], s.t[i])
            out = unet_ref.forward(ucfg, uw, xb, t, ctx).reshape(ctx.shape[0], n)
            eps = out[0] + a.guidance * (out[1] - out[0]) if cfg_on else out[0]
            _, x = s.step(i, eps, x, rng)
        lat_all.append(x.reshape(C, h, w))
    lat = np.stack(lat_all)
    images = vae_ref.decode(vcfg, vw, lat)
    np.concatenate([images.reshape(-1), lat.reshape(-1)]).astype("<f8").tofile(a.out)


def main(argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("out")
    r.add_argument("--prompt", required=True)
    r.add_argument("--negative", default="")
    r.add_argument("--width", type=int, required=True)
    r.add_argument("--height", type=int, required=True)
    r.add_argument("--steps", type=int, required=True)
    r.add_argument("--guidance", type=float, required=True)
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--scheduler", default="ddim")
    r.add_argument("--num-images", type=int, default=1)
    r.add_argument("--init")
    r.add_argument("--strength", type=float, default=0.8)
    a = ap.parse_args(argv)
    run(a)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
