#!/usr/bin/python3
"""Independent numpy (float64) reference of the CLIP text encoder (HF CLIPTextModel as Stable
Diffusion uses it), written from the architecture: token + position embeddings, pre-LN
transformer layers with causal multi-head self-attention (q scaled by head_dim^-1/2) and an
MLP fc1 -> quick_gelu | gelu -> fc2, final layer norm.

  clip_text_ref.py make OUT.safetensors --vocab V --ctx T --width W --layers L --ffn F
                   [--dtype f32|f16] [--seed S]
      random weights under diffusers' tensor names (plus an I64 position_ids tensor)
  clip_text_ref.py run WEIGHTS.safetensors IDS OUT --heads H [--act quick_gelu|gelu]
                   [--eps E] [--skip K]
      IDS: int32 (B, T) raw little-endian; OUT: float64 (B, T, W) raw little-endian
"""
import argparse
import math
import sys

import os

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

P = "text_model."


def write_safetensors(path, tensors):
    """tensors: name -> numpy array (float32, float16 or int64)."""
    kinds = {np.float32: "F32", np.float16: "F16", np.int64: "I64"}
    st_io.write(path, {n: (kinds[a.dtype.type], st_io.encode(a, kinds[a.dtype.type]), a.shape)
                       for n, a in tensors.items()})


def read_safetensors(path):
    return st_io.read(path)


def make(a):
    rng = np.random.default_rng(a.seed)
    W, F = a.width, a.ffn
    dt = np.float16 if a.dtype == "f16" else np.float32
    t = {}

    def lin(name, o, i):
        t[name + ".weight"] = (rng.standard_normal((o, i)) / math.sqrt(i)).astype(dt)
        t[name + ".bias"] = (0.1 * rng.standard_normal(o)).astype(dt)

    def ln(name):
        t[name + ".weight"] = (1 + 0.1 * rng.standard_normal(W)).astype(dt)
        t[name + ".bias"] = (0.1 * rng.standard_normal(W)).astype(dt)

    t[P + "embeddings.token_embedding.weight"] = rng.standard_normal((a.vocab, W)).astype(dt)
    t[P + "embeddings.position_embedding.weight"] = (0.5 * rng.standard_normal((a.ctx, W))).astype(dt)
    t[P + "embeddings.position_ids"] = np.arange(a.ctx, dtype=np.int64).reshape(1, a.ctx)
    for i in range(a.layers):
        p = P + "encoder.layers.%d." % i
        ln(p + "layer_norm1")
        for n in ("q", "k", "v", "out"):
            lin(p + "self_attn.%s_proj" % n, W, W)
        ln(p + "layer_norm2")
        lin(p + "mlp.fc1", F, W)
        lin(p + "mlp.fc2", W, F)
    ln(P + "final_layer_norm")
    write_safetensors(a.out, t)


def layer_norm(x, w, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def act(x, kind):
    if kind == "quick_gelu":
        return x / (1 + np.exp(-1.702 * x))
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def forward(t, ids, heads, kind, eps, skip):
    B, T = ids.shape
    x = t[P + "embeddings.token_embedding.weight"][ids] + t[P + "embeddings.position_embedding.weight"][:T]
    W = x.shape[-1]
    hd = W // heads
    n_layers = len([k for k in t if k.endswith("layer_norm1.weight")])
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(n_layers - skip):
        p = P + "encoder.layers.%d." % i

        def lin(name, v):
            return v @ t[p + name + ".weight"].T + t[p + name + ".bias"]

        h = layer_norm(x, t[p + "layer_norm1.weight"], t[p + "layer_norm1.bias"], eps)
        q = lin("self_attn.q_proj", h).reshape(B, T, heads, hd).transpose(0, 2, 1, 3) * hd ** -0.5
        k = lin("self_attn.k_proj", h).reshape(B, T, heads, hd).transpose(0, 2, 1, 3)
        v = lin("self_attn.v_proj", h).reshape(B, T, heads, hd).transpose(0, 2, 1, 3)
        s = q @ k.transpose(0, 1, 3, 2) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, W)
        x = x + lin("self_attn.out_proj", o)
        h = layer_norm(x, t[p + "layer_norm2.weight"], t[p + "layer_norm2.bias"], eps)
        x = x + lin("mlp.fc2", act(lin("mlp.fc1", h), kind))
    return layer_norm(x, t[P + "final_layer_norm.weight"], t[P + "final_layer_norm.bias"], eps)


def main(argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    for k in ("vocab", "ctx", "width", "layers", "ffn"):
        m.add_argument("--" + k, type=int, required=True)
    m.add_argument("--dtype", default="f32")
    m.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("weights")
    r.add_argument("ids")
    r.add_argument("out")
    r.add_argument("--heads", type=int, required=True)
    r.add_argument("--act", default="quick_gelu")
    r.add_argument("--eps", type=float, default=1e-5)
    r.add_argument("--skip", type=int, default=0)
    a = ap.parse_args(argv)
    if a.cmd == "make":
        make(a)
        return 0
    t = read_safetensors(a.weights)
    T = t[P + "embeddings.position_embedding.weight"].shape[0]
    ids = np.fromfile(a.ids, dtype="<i4").reshape(-1, T)
    forward(t, ids, a.heads, a.act, a.eps, a.skip).astype("<f8").tofile(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
