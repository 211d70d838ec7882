#!/usr/bin/python3
"""Independent numpy (float64) reference of the Stable Diffusion 1.x/2.x UNet (diffusers'
UNet2DConditionModel), written from the published architecture (Rombach et al. 2022 and the
diffusers model card): sinusoidal timestep embedding -> MLP; conv_in; down blocks of ResNet
blocks (+ spatial transformers) and stride-2 downsamplers, every output kept as a skip; a mid
block (resnet, transformer, resnet); up blocks whose resnets take concat(h, skip), with
nearest-2x upsamplers; group norm, SiLU, conv_out.

The timestep embedding is computed in float32 as PyTorch does (cos/sin of f32 products of
t and the f32 frequencies); everything after it in float64.

Module use (the full-pipeline reference imports these):
  cfg, W = load(folder_or_unet_dir)         config dict with diffusers' defaults filled in,
                                            float64 weights by diffusers' tensor names
  eps = forward(cfg, W, x, t, ctx, t_cond=None, down_res=None, mid_res=None)
      x (B, in_channels, H, W), t (B,), ctx (B, L, cross_attention_dim), t_cond (B, dim)

CLI:
  unet_ref.py run UNET_DIR X.f32 T.f32 CTX.f32 OUT.f64 --batch B --h H --w W --ctx-len L
              [--t-cond F.f32] [--down-res F.f32] [--mid-res F.f32]
      raw little-endian files; --down-res holds every skip's residual one after the other
  unet_ref.py make-config OUT_DIR [--channels 32,64] [--down D,D] [--up U,U] [--heads 8]
              [--layers-per-block 2] [--transformer-layers 1] [--cross 32] [--groups 32]
              [--linear-projection] [--no-mid] [--time-cond-dim N] [--center]
              [--freq-shift N] [--no-flip] [--mid-scale F] [--downsample-padding N]
              [--num-attention-heads] [--in-channels 4] [--out-channels 4]
              [--dtype f32|f16|bf16] [--seed S]
      OUT_DIR/config.json + diffusion_pytorch_model.safetensors with random weights (D is
      Down or CrossAttnDown, U is Up or CrossAttnUp; --heads a number or a list; with
      --num-attention-heads the heads go to num_attention_heads instead of
      attention_head_dim)
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

# ---- safetensors ------------------------------------------------------------------------


def read_safetensors(path):
    return st_io.read(path)


def write_safetensors(path, tensors):
    """tensors: name -> (dtype name, float array)."""
    st_io.write(path, {n: (dt, st_io.encode(arr, dt), arr.shape) for n, (dt, arr) in tensors.items()},
                metadata={"format": "pt"})


# ---- config --------------------------------------------------------------------------------

DEFAULTS = {
    "in_channels": 4, "out_channels": 4, "center_input_sample": False, "flip_sin_to_cos": True,
    "freq_shift": 0, "layers_per_block": 2, "downsample_padding": 1,
    "mid_block_scale_factor": 1.0, "norm_num_groups": 32, "norm_eps": 1e-5,
    "cross_attention_dim": 1280, "attention_head_dim": 8, "num_attention_heads": None,
    "use_linear_projection": False, "upcast_attention": False, "time_cond_proj_dim": None,
    "transformer_layers_per_block": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
    "time_embedding_dim": None,
}


def normalize(raw):
    cfg = dict(DEFAULTS)
    cfg.update(raw)
    n = len(cfg["block_out_channels"])
    heads = cfg["num_attention_heads"] or cfg["attention_head_dim"]
    if isinstance(heads, int):
        heads = [heads] * n
    tl = cfg["transformer_layers_per_block"]
    if isinstance(tl, int):
        tl = [tl] * n
    cfg["heads"] = list(heads)
    cfg["tlayers"] = list(tl)
    return cfg


def load(path):
    d = path if os.path.exists(os.path.join(path, "config.json")) else os.path.join(path, "unet")
    with open(os.path.join(d, "config.json")) as f:
        raw = json.load(f)
    w = os.path.join(d, "diffusion_pytorch_model.safetensors")
    if not os.path.exists(w):
        w = os.path.join(d, "diffusion_pytorch_model.fp16.safetensors")
    return normalize(raw), read_safetensors(w)


# ---- layers ----------------------------------------------------------------------------------


def silu(x):
    return x / (1.0 + np.exp(-x))


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def group_norm(x, groups, w, b, eps):
    B, C = x.shape[:2]
    g = x.reshape(B, groups, -1)
    m = g.mean(-1, keepdims=True)
    v = ((g - m) ** 2).mean(-1, keepdims=True)
    y = ((g - m) / np.sqrt(v + eps)).reshape(x.shape)
    return y * w[None, :, None, None] + b[None, :, None, None]


def layer_norm(x, w, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def conv2d(x, w, b, stride=1, pad=(1, 1, 1, 1)):
    """x (B, C, H, W), w (O, C, k, k); pad (top, left, bottom, right) of zeros."""
    pt, pl, pb, pr = pad
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    k = w.shape[2]
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]                      # (B, C, OH, OW, k, k)
    y = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))    # (B, OH, OW, O)
    return y.transpose(0, 3, 1, 2) + b[None, :, None, None]


def linear(W, name, x, bias=True):
    y = x @ W[name + ".weight"].T
    return y + W[name + ".bias"] if bias else y


def timestep_embedding(t, dim, flip, shift):
    half = dim // 2
    f32 = np.float32
    expo = f32(-math.log(10000.0)) * np.arange(half, dtype=f32)
    expo = expo / f32(half - shift)
    freq = np.exp(expo).astype(f32)
    arg = t.astype(f32)[:, None] * freq[None, :]
    e = np.concatenate([np.sin(arg), np.cos(arg)], axis=-1)
    if flip:
        e = np.concatenate([e[:, half:], e[:, :half]], axis=-1)
    if dim % 2:
        e = np.pad(e, ((0, 0), (0, 1)))
    return e.astype(np.float64)


def resnet(cfg, W, p, x, emb, scale=1.0):
    g, eps = cfg["norm_num_groups"], cfg["norm_eps"]
    h = silu(group_norm(x, g, W[p + ".norm1.weight"], W[p + ".norm1.bias"], eps))
    h = conv2d(h, W[p + ".conv1.weight"], W[p + ".conv1.bias"])
    h = h + linear(W, p + ".time_emb_proj", silu(emb))[:, :, None, None]
    h = silu(group_norm(h, g, W[p + ".norm2.weight"], W[p + ".norm2.bias"], eps))
    h = conv2d(h, W[p + ".conv2.weight"], W[p + ".conv2.bias"])
    if p + ".conv_shortcut.weight" in W:
        x = conv2d(x, W[p + ".conv_shortcut.weight"], W[p + ".conv_shortcut.bias"], pad=(0, 0, 0, 0))
    return (x + h) / scale


def attention(q, k, v, heads):
    B, Lq, C = q.shape
    d = C // heads
    q = q.reshape(B, Lq, heads, d).transpose(0, 2, 1, 3)
    k = k.reshape(B, -1, heads, d).transpose(0, 2, 1, 3)
    v = v.reshape(B, -1, heads, d).transpose(0, 2, 1, 3)
    s = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(d)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    return (s @ v).transpose(0, 2, 1, 3).reshape(B, Lq, C)


def transformer(cfg, W, p, x, ctx, heads, layers):
    B, C, H, Wd = x.shape
    res = x
    h = group_norm(x, cfg["norm_num_groups"], W[p + ".norm.weight"], W[p + ".norm.bias"], 1e-6)
    if cfg["use_linear_projection"]:
        h = linear(W, p + ".proj_in", h.reshape(B, C, H * Wd).transpose(0, 2, 1))
    else:
        h = conv2d(h, W[p + ".proj_in.weight"], W[p + ".proj_in.bias"], pad=(0, 0, 0, 0))
        h = h.reshape(B, C, H * Wd).transpose(0, 2, 1)
    for i in range(layers):
        q = "%s.transformer_blocks.%d" % (p, i)
        n = layer_norm(h, W[q + ".norm1.weight"], W[q + ".norm1.bias"])
        a = attention(linear(W, q + ".attn1.to_q", n, False), linear(W, q + ".attn1.to_k", n, False),
                      linear(W, q + ".attn1.to_v", n, False), heads)
        h = h + linear(W, q + ".attn1.to_out.0", a)
        n = layer_norm(h, W[q + ".norm2.weight"], W[q + ".norm2.bias"])
        a = attention(linear(W, q + ".attn2.to_q", n, False), linear(W, q + ".attn2.to_k", ctx, False),
                      linear(W, q + ".attn2.to_v", ctx, False), heads)
        h = h + linear(W, q + ".attn2.to_out.0", a)
        n = layer_norm(h, W[q + ".norm3.weight"], W[q + ".norm3.bias"])
        hid, gate = np.split(linear(W, q + ".ff.net.0.proj", n), 2, axis=-1)
        h = h + linear(W, q + ".ff.net.2", hid * gelu(gate))
    if cfg["use_linear_projection"]:
        h = linear(W, p + ".proj_out", h).transpose(0, 2, 1).reshape(B, C, H, Wd)
    else:
        h = h.transpose(0, 2, 1).reshape(B, C, H, Wd)
        h = conv2d(h, W[p + ".proj_out.weight"], W[p + ".proj_out.bias"], pad=(0, 0, 0, 0))
    return h + res


# ---- the model ---------------------------------------------------------------------------------


def forward(cfg, W, x, t, ctx, t_cond=None, down_res=None, mid_res=None):
    x = np.asarray(x, dtype=np.float64)
    ctx = np.asarray(ctx, dtype=np.float64)
    t = np.broadcast_to(np.asarray(t, dtype=np.float64).reshape(-1), (x.shape[0],))
    ch = cfg["block_out_channels"]
    n = len(ch)
    lpb = cfg["layers_per_block"]
    heads, tl = cfg["heads"], cfg["tlayers"]

    emb = timestep_embedding(t, ch[0], cfg["flip_sin_to_cos"], cfg["freq_shift"])
    if cfg["time_cond_proj_dim"]:
        emb = emb + linear(W, "time_embedding.cond_proj", np.asarray(t_cond, np.float64), False)
    emb = linear(W, "time_embedding.linear_2", silu(linear(W, "time_embedding.linear_1", emb)))

    if cfg["center_input_sample"]:
        x = 2.0 * x - 1.0
    h = conv2d(x, W["conv_in.weight"], W["conv_in.bias"])
    skips = [h]
    for i, kind in enumerate(cfg["down_block_types"]):
        for j in range(lpb):
            h = resnet(cfg, W, "down_blocks.%d.resnets.%d" % (i, j), h, emb)
            if kind.startswith("CrossAttn"):
                h = transformer(cfg, W, "down_blocks.%d.attentions.%d" % (i, j), h, ctx, heads[i], tl[i])
            skips.append(h)
        if i < n - 1:
            p = cfg["downsample_padding"]
            pad = (p, p, p, p) if p else (0, 0, 1, 1)
            h = conv2d(h, W["down_blocks.%d.downsamplers.0.conv.weight" % i],
                       W["down_blocks.%d.downsamplers.0.conv.bias" % i], stride=2, pad=pad)
            skips.append(h)
    if down_res is not None:
        skips = [s + r for s, r in zip(skips, down_res)]

    if cfg["mid_block_type"] is not None:
        s = cfg["mid_block_scale_factor"]
        h = resnet(cfg, W, "mid_block.resnets.0", h, emb, s)
        h = transformer(cfg, W, "mid_block.attentions.0", h, ctx, heads[-1], tl[-1])
        h = resnet(cfg, W, "mid_block.resnets.1", h, emb, s)
    if mid_res is not None:
        h = h + mid_res

    for i, kind in enumerate(cfg["up_block_types"]):
        lvl = n - 1 - i
        for j in range(lpb + 1):
            h = np.concatenate([h, skips.pop()], axis=1)
            h = resnet(cfg, W, "up_blocks.%d.resnets.%d" % (i, j), h, emb)
            if kind.startswith("CrossAttn"):
                h = transformer(cfg, W, "up_blocks.%d.attentions.%d" % (i, j), h, ctx, heads[lvl], tl[lvl])
        if i < n - 1:
            h = h.repeat(2, axis=2).repeat(2, axis=3)
            h = conv2d(h, W["up_blocks.%d.upsamplers.0.conv.weight" % i],
                       W["up_blocks.%d.upsamplers.0.conv.bias" % i])
    h = silu(group_norm(h, cfg["norm_num_groups"], W["conv_norm_out.weight"],
                        W["conv_norm_out.bias"], cfg["norm_eps"]))
    return conv2d(h, W["conv_out.weight"], W["conv_out.bias"])


def skip_shapes(cfg, B, H, Wd):
    """Shapes of the skips in production order (for ControlNet residuals)."""
    ch, lpb, n = cfg["block_out_channels"], cfg["layers_per_block"], len(cfg["block_out_channels"])
    out = [(B, ch[0], H, Wd)]
    for i in range(n):
        out += [(B, ch[i], H >> i, Wd >> i)] * lpb
        if i < n - 1:
            out.append((B, ch[i], H >> (i + 1), Wd >> (i + 1)))
    return out


# ---- random models --------------------------------------------------------------------------------


def weight_shapes(cfg):
    """name -> (shape, kind) from the architecture: kind w (fan-in scaled), b, n (norm scale)."""
    T = {}
    ch, n, lpb = cfg["block_out_channels"], len(cfg["block_out_channels"]), cfg["layers_per_block"]
    temb = cfg["time_embedding_dim"] or 4 * ch[0]
    cross, lin = cfg["cross_attention_dim"], cfg["use_linear_projection"]

    def conv(p, o, i, k):
        T[p + ".weight"] = ((o, i, k, k), "w")
        T[p + ".bias"] = ((o,), "b")

    def dense(p, o, i, bias=True):
        T[p + ".weight"] = ((o, i), "w")
        if bias:
            T[p + ".bias"] = ((o,), "b")

    def norm(p, c):
        T[p + ".weight"] = ((c,), "n")
        T[p + ".bias"] = ((c,), "b")

    def res(p, i, o):
        norm(p + ".norm1", i)
        conv(p + ".conv1", o, i, 3)
        dense(p + ".time_emb_proj", o, temb)
        norm(p + ".norm2", o)
        conv(p + ".conv2", o, o, 3)
        if i != o:
            conv(p + ".conv_shortcut", o, i, 1)

    def tr(p, c, layers):
        norm(p + ".norm", c)
        (dense if lin else lambda q, o, i: conv(q, o, i, 1))(p + ".proj_in", c, c)
        for k in range(layers):
            q = "%s.transformer_blocks.%d" % (p, k)
            for a, kv in (("attn1", c), ("attn2", cross)):
                norm(q + (".norm1" if a == "attn1" else ".norm2"), c)
                dense(q + "." + a + ".to_q", c, c, False)
                dense(q + "." + a + ".to_k", c, kv, False)
                dense(q + "." + a + ".to_v", c, kv, False)
                dense(q + "." + a + ".to_out.0", c, c)
            norm(q + ".norm3", c)
            dense(q + ".ff.net.0.proj", 8 * c, c)
            dense(q + ".ff.net.2", c, 4 * c)
        (dense if lin else lambda q, o, i: conv(q, o, i, 1))(p + ".proj_out", c, c)

    conv("conv_in", ch[0], cfg["in_channels"], 3)
    dense("time_embedding.linear_1", temb, ch[0])
    dense("time_embedding.linear_2", temb, temb)
    if cfg["time_cond_proj_dim"]:
        dense("time_embedding.cond_proj", ch[0], cfg["time_cond_proj_dim"], False)
    out = ch[0]
    for i, kind in enumerate(cfg["down_block_types"]):
        prev, out = out, ch[i]
        for j in range(lpb):
            res("down_blocks.%d.resnets.%d" % (i, j), prev if j == 0 else out, out)
            if kind.startswith("CrossAttn"):
                tr("down_blocks.%d.attentions.%d" % (i, j), out, cfg["tlayers"][i])
        if i < n - 1:
            conv("down_blocks.%d.downsamplers.0.conv" % i, out, out, 3)
    if cfg["mid_block_type"] is not None:
        res("mid_block.resnets.0", ch[-1], ch[-1])
        tr("mid_block.attentions.0", ch[-1], cfg["tlayers"][-1])
        res("mid_block.resnets.1", ch[-1], ch[-1])
    rch = list(reversed(ch))
    out = rch[0]
    for i, kind in enumerate(cfg["up_block_types"]):
        prev, out, inp = out, rch[i], rch[min(i + 1, n - 1)]
        for j in range(lpb + 1):
            skip = inp if j == lpb else out
            res("up_blocks.%d.resnets.%d" % (i, j), (prev if j == 0 else out) + skip, out)
            if kind.startswith("CrossAttn"):
                tr("up_blocks.%d.attentions.%d" % (i, j), out, cfg["tlayers"][n - 1 - i])
        if i < n - 1:
            conv("up_blocks.%d.upsamplers.0.conv" % i, out, out, 3)
    norm("conv_norm_out", ch[0])
    conv("conv_out", cfg["out_channels"], ch[0], 3)
    return T


def make_config(a):
    ch = [int(v) for v in a.channels.split(",")]
    n = len(ch)

    def lst(s, conv):
        v = [conv(x) for x in s.split(",")]
        return v[0] if len(v) == 1 else v

    down = [{"Down": "DownBlock2D", "CrossAttnDown": "CrossAttnDownBlock2D"}[d]
            for d in a.down.split(",")] if a.down else \
        ["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"]
    up = [{"Up": "UpBlock2D", "CrossAttnUp": "CrossAttnUpBlock2D"}[u]
          for u in a.up.split(",")] if a.up else ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1)
    raw = {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.27.2",
        "block_out_channels": ch, "down_block_types": down, "up_block_types": up,
        "in_channels": a.in_channels, "out_channels": a.out_channels,
        "layers_per_block": a.layers_per_block, "cross_attention_dim": a.cross,
        "norm_num_groups": a.groups, "norm_eps": 1e-5, "sample_size": 32,
        "use_linear_projection": a.linear_projection, "center_input_sample": a.center,
        "flip_sin_to_cos": not a.no_flip, "freq_shift": a.freq_shift,
        "mid_block_scale_factor": a.mid_scale, "downsample_padding": a.downsample_padding,
        "transformer_layers_per_block": lst(a.transformer_layers, int),
        "act_fn": "silu",
    }
    heads = lst(a.heads, int)
    if a.num_attention_heads:
        raw["num_attention_heads"] = heads
        raw["attention_head_dim"] = 8
    else:
        raw["attention_head_dim"] = heads
    if a.no_mid:
        raw["mid_block_type"] = None
    if a.time_cond_dim:
        raw["time_cond_proj_dim"] = a.time_cond_dim
    cfg = normalize(raw)
    rng = np.random.default_rng(a.seed)
    dt = {"f32": "F32", "f16": "F16", "bf16": "BF16"}[a.dtype]
    tensors = {}
    for name, (shape, kind) in weight_shapes(cfg).items():
        if kind == "w":
            fan = int(np.prod(shape[1:]))
            v = rng.standard_normal(shape) / math.sqrt(fan)
        elif kind == "b":
            v = 0.05 * rng.standard_normal(shape)
        else:
            v = 1.0 + 0.05 * rng.standard_normal(shape)
        tensors[name] = (dt, v.astype(np.float32))
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(raw, f, indent=2)
    write_safetensors(os.path.join(a.out, "diffusion_pytorch_model.safetensors"), tensors)


def run(a):
    cfg, W = load(a.unet_dir)
    B, H, Wd, L = a.batch, a.h, a.w, a.ctx_len
    x = np.fromfile(a.x, dtype="<f4").reshape(B, cfg["in_channels"], H, Wd)
    t = np.fromfile(a.t, dtype="<f4").reshape(B)
    ctx = np.fromfile(a.ctx, dtype="<f4").reshape(B, L, cfg["cross_attention_dim"])
    tc = None
    if a.t_cond:
        tc = np.fromfile(a.t_cond, dtype="<f4").reshape(B, cfg["time_cond_proj_dim"])
    down = mid = None
    if a.down_res:
        flat = np.fromfile(a.down_res, dtype="<f4").astype(np.float64)
        down, off = [], 0
        for s in skip_shapes(cfg, B, H, Wd):
            k = int(np.prod(s))
            down.append(flat[off:off + k].reshape(s))
            off += k
        if off != flat.size:
            raise SystemExit("--down-res: %d floats, the skips hold %d" % (flat.size, off))
    if a.mid_res:
        s = skip_shapes(cfg, B, H, Wd)[-1]
        mid = np.fromfile(a.mid_res, dtype="<f4").astype(np.float64).reshape(s)
    out = forward(cfg, W, x, t, ctx, tc, down, mid)
    out.astype("<f8").tofile(a.out)


def main(argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    for k in ("unet_dir", "x", "t", "ctx", "out"):
        r.add_argument(k)
    for k in ("batch", "h", "w", "ctx-len"):
        r.add_argument("--" + k, type=int, required=True)
    for k in ("t-cond", "down-res", "mid-res"):
        r.add_argument("--" + k)
    m = sub.add_parser("make-config")
    m.add_argument("out")
    m.add_argument("--channels", default="32,64")
    m.add_argument("--down")
    m.add_argument("--up")
    m.add_argument("--heads", default="8")
    m.add_argument("--layers-per-block", type=int, default=2)
    m.add_argument("--transformer-layers", default="1")
    m.add_argument("--cross", type=int, default=32)
    m.add_argument("--groups", type=int, default=32)
    m.add_argument("--linear-projection", action="store_true")
    m.add_argument("--no-mid", action="store_true")
    m.add_argument("--time-cond-dim", type=int, default=0)
    m.add_argument("--center", action="store_true")
    m.add_argument("--freq-shift", type=int, default=0)
    m.add_argument("--no-flip", action="store_true")
    m.add_argument("--mid-scale", type=float, default=1.0)
    m.add_argument("--downsample-padding", type=int, default=1)
    m.add_argument("--num-attention-heads", action="store_true")
    m.add_argument("--in-channels", type=int, default=4)
    m.add_argument("--out-channels", type=int, default=4)
    m.add_argument("--dtype", default="f32")
    m.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.cmd == "run":
        run(a)
    else:
        make_config(a)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
