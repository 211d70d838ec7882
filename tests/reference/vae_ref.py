#!/usr/bin/python3
"""Independent numpy (float64) reference of the Stable Diffusion VAE (diffusers' AutoencoderKL),
written from the published architecture (Rombach et al., "High-Resolution Image Synthesis with
Latent Diffusion Models", the taming-transformers / ldm Encoder and Decoder that diffusers
ports), not from diffusers' code:

  ResnetBlock(x)  = shortcut(x) + conv2(silu(gn2(conv1(silu(gn1(x))))))
                    (shortcut: 1x1 conv when the channel count changes, else identity)
  AttnBlock(x)    = x + proj(softmax(q k^T / sqrt(C)) v), q, k, v = linear(gn(x)) over the
                    h*w pixels as tokens (one head of C channels)
  Encoder(img)    = conv_out(silu(gn(mid(down_n(...down_1(conv_in(img)))))))
                    down_i = layers_per_block resnets, then (all but the last) a stride-2 3x3
                    conv after zero padding of one row at the bottom and one column at the right
                    mid = resnet, attention (optional), resnet
  Decoder(z)      = conv_out(silu(gn(up_n(...up_1(mid(conv_in(z)))))))
                    up_i = layers_per_block + 1 resnets, then (all but the last) nearest 2x
                    upsampling and a 3x3 conv
  group norms: norm_num_groups groups, eps 1e-6; quant_conv / post_quant_conv: 1x1 convs.
  Posterior: mean, logvar = split(quant_conv(Encoder(img))), logvar clamped to [-30, 20],
  std = exp(logvar / 2). UNet space: z_unet = (z - shift_factor) * scaling_factor.

Module use (the full-pipeline reference imports these):
  cfg, W = load(folder_or_vae_dir)       config dict (diffusers defaults filled in), float64 weights
  img = decode(cfg, W, z)                z (B, latent, h, w) in UNet space -> (B, out, 8h, 8w)
  mean, std = encode(cfg, W, img)        img (B, in, H, W) -> posterior in UNet space

CLI (raw little-endian files):
  vae_ref.py decode VAE_DIR Z.f32 OUT.f64 --batch B --h h --w w
      Z: float32 (B, latent, h, w) (h, w: latent sizes); OUT: float64 (B, out, h*f, w*f)
  vae_ref.py encode VAE_DIR IMG.f32 MEAN.f64 STD.f64 --batch B --h H --w W
      IMG: float32 (B, in, H, W) (H, W: image sizes); MEAN, STD: float64 (B, latent, H/f, W/f)
  vae_ref.py make OUT_DIR [--channels 32,64] [--layers N] [--latent N] [--in N] [--out N]
                  [--groups N] [--scaling F] [--shift F] [--no-quant-conv]
                  [--no-post-quant-conv] [--no-mid-attention] [--old-attn-names]
                  [--attn-4d] [--dtype f32|f16|bf16] [--seed S] [--drop NAME]
      a vae folder (config.json + diffusion_pytorch_model.safetensors) with random weights,
      tensor names listed here from the architecture (diffusers' names); --drop leaves one
      tensor out (error tests)
VAE_DIR may be a pipeline folder (its vae/ is used) or the vae folder itself.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

EPS = 1e-6

# ---- safetensors ----------------------------------------------------------------------------


def read_safetensors(path):
    return st_io.read(path)


def write_safetensors(path, tensors):
    """tensors: name -> (safetensors dtype name, little-endian bytes, shape)."""
    st_io.write(path, tensors)


# ---- configuration and weights -----------------------------------------------------------

DEFAULTS = {
    "in_channels": 3, "out_channels": 3, "layers_per_block": 1, "latent_channels": 4,
    "norm_num_groups": 32, "scaling_factor": 0.18215, "shift_factor": 0.0,
    "use_quant_conv": True, "use_post_quant_conv": True, "mid_block_add_attention": True,
}


def vae_dir(path):
    sub = os.path.join(path, "vae")
    return sub if os.path.isdir(sub) else path


def load(path):
    """(config dict, name -> float64 array) of a diffusers AutoencoderKL folder."""
    d = vae_dir(path)
    with open(os.path.join(d, "config.json")) as f:
        raw = json.load(f)
    cfg = dict(DEFAULTS)
    for k, v in raw.items():
        if v is not None:
            cfg[k] = v
    cfg["block_out_channels"] = list(raw["block_out_channels"])
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return cfg, read_safetensors(p)
    raise FileNotFoundError(os.path.join(d, "diffusion_pytorch_model.safetensors"))


def downscale(cfg):
    return 2 ** (len(cfg["block_out_channels"]) - 1)


# ---- operators -----------------------------------------------------------------------------


def conv(x, w, b, stride=1, pad=(1, 1, 1, 1)):
    """x (B, C, H, W), w (O, C, kh, kw); pad = (top, bottom, left, right) zeros."""
    kh, kw = w.shape[2], w.shape[3]
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[1]), (pad[2], pad[3])))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]                      # (B, C, OH, OW, kh, kw)
    y = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))    # (B, OH, OW, O)
    return y.transpose(0, 3, 1, 2) + b[None, :, None, None]


def group_norm(x, groups, g, b):
    B, C = x.shape[:2]
    xr = x.reshape(B, groups, -1)
    m = xr.mean(-1, keepdims=True)
    v = ((xr - m) ** 2).mean(-1, keepdims=True)
    y = ((xr - m) / np.sqrt(v + EPS)).reshape(x.shape)
    return y * g[None, :, None, None] + b[None, :, None, None]


def silu(x):
    return x / (1.0 + np.exp(-x))


def get(W, p, name):
    return W[p + "." + name]


def conv_layer(W, p, x, stride=1, pad=(1, 1, 1, 1)):
    w = W[p + ".weight"]
    k = w.shape[2]
    if k == 1:
        pad = (0, 0, 0, 0)
    return conv(x, w, W[p + ".bias"], stride, pad)


def resnet(cfg, W, p, x):
    G = cfg["norm_num_groups"]
    h = silu(group_norm(x, G, W[p + ".norm1.weight"], W[p + ".norm1.bias"]))
    h = conv_layer(W, p + ".conv1", h)
    h = silu(group_norm(h, G, W[p + ".norm2.weight"], W[p + ".norm2.bias"]))
    h = conv_layer(W, p + ".conv2", h)
    if p + ".conv_shortcut.weight" in W:
        x = conv_layer(W, p + ".conv_shortcut", x)
    return x + h


def linear_weights(W, p, new, old):
    for n in (new, old):
        if p + "." + n + ".weight" in W:
            w = W[p + "." + n + ".weight"]
            return w.reshape(w.shape[0], w.shape[1]), W[p + "." + n + ".bias"]
    raise KeyError(p + "." + new + ".weight")


def attention(cfg, W, p, x):
    B, C, H, Wd = x.shape
    h = group_norm(x, cfg["norm_num_groups"], W[p + ".group_norm.weight"], W[p + ".group_norm.bias"])
    t = h.reshape(B, C, H * Wd).transpose(0, 2, 1)           # (B, HW, C) pixel tokens
    wq, bq = linear_weights(W, p, "to_q", "query")
    wk, bk = linear_weights(W, p, "to_k", "key")
    wv, bv = linear_weights(W, p, "to_v", "value")
    wo, bo = linear_weights(W, p, "to_out.0", "proj_attn")
    q, k, v = t @ wq.T + bq, t @ wk.T + bk, t @ wv.T + bv
    s = q @ k.transpose(0, 2, 1) / math.sqrt(C)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    o = (s @ v) @ wo.T + bo                                  # (B, HW, C)
    return x + o.transpose(0, 2, 1).reshape(B, C, H, Wd)


def mid(cfg, W, p, x):
    x = resnet(cfg, W, p + ".mid_block.resnets.0", x)
    if cfg["mid_block_add_attention"]:
        x = attention(cfg, W, p + ".mid_block.attentions.0", x)
    return resnet(cfg, W, p + ".mid_block.resnets.1", x)


def upsample2x(x):
    return x.repeat(2, axis=2).repeat(2, axis=3)


# ---- the two halves ------------------------------------------------------------------------


def decode(cfg, W, z):
    """z (B, latent, h, w) in the UNet's space -> image (B, out, h*f, w*f) (not clamped)."""
    x = np.asarray(z, dtype=np.float64) / cfg["scaling_factor"] + cfg["shift_factor"]
    if cfg["use_post_quant_conv"]:
        x = conv_layer(W, "post_quant_conv", x)
    x = conv_layer(W, "decoder.conv_in", x)
    x = mid(cfg, W, "decoder", x)
    n = len(cfg["block_out_channels"])
    for i in range(n):
        for j in range(cfg["layers_per_block"] + 1):
            x = resnet(cfg, W, "decoder.up_blocks.%d.resnets.%d" % (i, j), x)
        if i < n - 1:
            x = conv_layer(W, "decoder.up_blocks.%d.upsamplers.0.conv" % i, upsample2x(x))
    x = silu(group_norm(x, cfg["norm_num_groups"], W["decoder.conv_norm_out.weight"],
                        W["decoder.conv_norm_out.bias"]))
    return conv_layer(W, "decoder.conv_out", x)


def encode(cfg, W, img):
    """img (B, in, H, W) -> (mean, std) of the posterior, (B, latent, H/f, W/f), UNet space."""
    x = conv_layer(W, "encoder.conv_in", np.asarray(img, dtype=np.float64))
    n = len(cfg["block_out_channels"])
    for i in range(n):
        for j in range(cfg["layers_per_block"]):
            x = resnet(cfg, W, "encoder.down_blocks.%d.resnets.%d" % (i, j), x)
        if i < n - 1:
            x = conv_layer(W, "encoder.down_blocks.%d.downsamplers.0.conv" % i, x, stride=2,
                           pad=(0, 1, 0, 1))
    x = mid(cfg, W, "encoder", x)
    x = silu(group_norm(x, cfg["norm_num_groups"], W["encoder.conv_norm_out.weight"],
                        W["encoder.conv_norm_out.bias"]))
    x = conv_layer(W, "encoder.conv_out", x)
    if cfg["use_quant_conv"]:
        x = conv_layer(W, "quant_conv", x)
    lat = cfg["latent_channels"]
    mean, logvar = x[:, :lat], np.clip(x[:, lat:], -30.0, 20.0)
    std = np.exp(0.5 * logvar)
    s = cfg["scaling_factor"]
    return (mean - cfg["shift_factor"]) * s, std * s


# ---- writing a random folder ---------------------------------------------------------------


def tensor_list(cfg, old_names=False, attn_4d=False):
    """[(name, shape, kind)] of every weight, from the architecture above."""
    out = []
    ch, lat = cfg["block_out_channels"], cfg["latent_channels"]
    n, L = len(ch), cfg["layers_per_block"]

    def cv(p, o, i, k):
        out.append((p + ".weight", (o, i, k, k), "w"))
        out.append((p + ".bias", (o,), "b"))

    def gn(p, c):
        out.append((p + ".weight", (c,), "n"))
        out.append((p + ".bias", (c,), "b"))

    def res(p, i, o):
        gn(p + ".norm1", i)
        cv(p + ".conv1", o, i, 3)
        gn(p + ".norm2", o)
        cv(p + ".conv2", o, o, 3)
        if i != o:
            cv(p + ".conv_shortcut", o, i, 1)

    def mid_(p, c):
        res(p + ".mid_block.resnets.0", c, c)
        if cfg["mid_block_add_attention"]:
            a = p + ".mid_block.attentions.0"
            gn(a + ".group_norm", c)
            names = ("query", "key", "value", "proj_attn") if old_names else \
                    ("to_q", "to_k", "to_v", "to_out.0")
            for nm in names:
                out.append((a + "." + nm + ".weight", (c, c, 1, 1) if attn_4d else (c, c), "w"))
                out.append((a + "." + nm + ".bias", (c,), "b"))
        res(p + ".mid_block.resnets.1", c, c)

    cv("encoder.conv_in", ch[0], cfg["in_channels"], 3)
    prev = ch[0]
    for i in range(n):
        for j in range(L):
            res("encoder.down_blocks.%d.resnets.%d" % (i, j), prev if j == 0 else ch[i], ch[i])
        prev = ch[i]
        if i < n - 1:
            cv("encoder.down_blocks.%d.downsamplers.0.conv" % i, ch[i], ch[i], 3)
    mid_("encoder", ch[-1])
    gn("encoder.conv_norm_out", ch[-1])
    cv("encoder.conv_out", 2 * lat, ch[-1], 3)
    if cfg["use_quant_conv"]:
        cv("quant_conv", 2 * lat, 2 * lat, 1)
    if cfg["use_post_quant_conv"]:
        cv("post_quant_conv", lat, lat, 1)
    cv("decoder.conv_in", ch[-1], lat, 3)
    mid_("decoder", ch[-1])
    prev = ch[-1]
    for i in range(n):
        o = ch[n - 1 - i]
        for j in range(L + 1):
            res("decoder.up_blocks.%d.resnets.%d" % (i, j), prev if j == 0 else o, o)
        prev = o
        if i < n - 1:
            cv("decoder.up_blocks.%d.upsamplers.0.conv" % i, o, o, 3)
    gn("decoder.conv_norm_out", ch[0])
    cv("decoder.conv_out", cfg["out_channels"], ch[0], 3)
    return out


def make(a):
    ch = [int(c) for c in a.channels.split(",")]
    cfg = {
        "_class_name": "AutoencoderKL", "_diffusers_version": "0.27.2", "act_fn": "silu",
        "block_out_channels": ch,
        "down_block_types": ["DownEncoderBlock2D"] * len(ch),
        "up_block_types": ["UpDecoderBlock2D"] * len(ch),
        "in_channels": a.in_ch, "out_channels": a.out_ch, "latent_channels": a.latent,
        "layers_per_block": a.layers, "norm_num_groups": a.groups,
        "sample_size": 32 * 2 ** (len(ch) - 1), "scaling_factor": a.scaling,
        "shift_factor": a.shift, "use_quant_conv": not a.no_quant_conv,
        "use_post_quant_conv": not a.no_post_quant_conv,
        "mid_block_add_attention": not a.no_mid_attention, "force_upcast": True,
    }
    rng = np.random.default_rng(a.seed)
    tensors = {}
    for name, shape, kind in tensor_list(cfg, a.old_attn_names, a.attn_4d):
        if name == a.drop:
            continue
        if kind == "w":
            fan_in = int(np.prod(shape[1:]))
            v = rng.standard_normal(shape) / math.sqrt(fan_in)
        elif kind == "n":
            v = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            v = 0.1 * rng.standard_normal(shape)
        if a.dtype == "f16":
            tensors[name] = ("F16", v.astype("<f2").tobytes(), shape)
        elif a.dtype == "bf16":
            u = v.astype("<f4").view("<u4")
            u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")  # round to nearest even
            tensors[name] = ("BF16", u.tobytes(), shape)
        else:
            tensors[name] = ("F32", v.astype("<f4").tobytes(), shape)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(a.out, "diffusion_pytorch_model.safetensors"), tensors)


# ---- command line --------------------------------------------------------------------------


def main(argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decode")
    d.add_argument("dir")
    d.add_argument("z")
    d.add_argument("out")
    e = sub.add_parser("encode")
    e.add_argument("dir")
    e.add_argument("img")
    e.add_argument("mean")
    e.add_argument("std")
    for p in (d, e):
        p.add_argument("--batch", type=int, required=True)
        p.add_argument("--h", type=int, required=True)
        p.add_argument("--w", type=int, required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    m.add_argument("--channels", default="32,64")
    m.add_argument("--layers", type=int, default=1)
    m.add_argument("--latent", type=int, default=4)
    m.add_argument("--in", dest="in_ch", type=int, default=3)
    m.add_argument("--out", dest="out_ch", type=int, default=3)
    m.add_argument("--groups", type=int, default=32)
    m.add_argument("--scaling", type=float, default=0.18215)
    m.add_argument("--shift", type=float, default=0.0)
    m.add_argument("--no-quant-conv", action="store_true")
    m.add_argument("--no-post-quant-conv", action="store_true")
    m.add_argument("--no-mid-attention", action="store_true")
    m.add_argument("--old-attn-names", action="store_true")
    m.add_argument("--attn-4d", action="store_true")
    m.add_argument("--dtype", default="f32", choices=("f32", "f16", "bf16"))
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--drop", default=None)
    a = ap.parse_args(argv)
    if a.cmd == "make":
        make(a)
        return 0
    cfg, W = load(a.dir)
    if a.cmd == "decode":
        z = np.fromfile(a.z, dtype="<f4").reshape(a.batch, cfg["latent_channels"], a.h, a.w)
        decode(cfg, W, z).astype("<f8").tofile(a.out)
    else:
        img = np.fromfile(a.img, dtype="<f4").reshape(a.batch, cfg["in_channels"], a.h, a.w)
        mean, std = encode(cfg, W, img)
        mean.astype("<f8").tofile(a.mean)
        std.astype("<f8").tofile(a.std)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
