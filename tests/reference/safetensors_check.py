#!/usr/bin/python3
"""Independent check of generated diffusers pipelines.

Runs `inferd-mkmodel diffusion`, parses every safetensors file with its own
reader (numpy; written from the format description: u64 little-endian header
length, JSON header, data area; strict as the reference implementation: the
tensors cover the data area exactly, without gaps or overlap), and compares
names, dtypes, shapes and every value with the C reader's view (st_dump).
Also checks the tokenizer files (CLIP vocabulary layout; every merge's parts
and result are tokens, results in rank order) and a few tensor shapes that
the configs imply, computed here from the config files.

Usage: safetensors_check.py --mkmodel PATH --dump PATH [--dtype f32|f16]
Exit 0 when everything matches, 1 with messages otherwise.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "I32": 4, "F64": 8}
errors = []


def fail(msg):
    errors.append(msg)
    print("FAIL:", msg)


def parse(path):
    """-> (metadata dict, {name: (dtype, shape, float32 array or raw int array)})"""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    if n > len(buf) - 8:
        raise ValueError(f"{path}: header length {n} past the end")
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    if (8 + n) % 8:
        fail(f"{path}: data area starts at {8 + n}, not 8-aligned")
    data = buf[8 + n:]
    meta = header.pop("__metadata__", {})
    ranges = []
    out = {}
    for name, info in header.items():
        dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if e - b != count * SIZES[dt]:
            fail(f"{path}: {name}: {e - b} bytes for shape {shape} {dt}")
        if b % SIZES[dt]:
            fail(f"{path}: {name}: offset {b} not aligned to {SIZES[dt]}")
        ranges.append((b, e, name))
        raw = data[b:e]
        if dt == "F32":
            v = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            v = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            v = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "I64":
            v = np.frombuffer(raw, dtype="<i8")
        else:
            v = None
        out[name] = (dt, list(shape), v)
    ranges.sort()
    pos = 0
    for b, e, name in ranges:
        if b != pos:
            fail(f"{path}: {name} starts at {b}, expected {pos} (gap or overlap)")
        pos = e
    if pos != len(data):
        fail(f"{path}: tensors cover {pos} of {len(data)} data bytes")
    return meta, out


def compare_with_c(path, dump_exe, tmp):
    meta, ref = parse(path)
    binp = os.path.join(tmp, "values.bin")
    res = subprocess.run([dump_exe, path, binp], capture_output=True, text=True)
    if res.returncode != 0:
        fail(f"st_dump {path}: {res.stderr.strip()}")
        return ref
    values = np.fromfile(binp, dtype="<f4")
    seen = set()
    cmeta = {}
    for line in res.stdout.splitlines():
        f = line.split("\t")
        if f[0] == "__metadata__":
            cmeta[f[1]] = f[2]
            continue
        name, dt, shape, count, at = f[0], f[1], f[2], int(f[3]), int(f[4])
        shape = [] if shape == "-" else [int(x) for x in shape.split(",")]
        seen.add(name)
        if name not in ref:
            fail(f"{path}: C reader lists {name}, the reference does not")
            continue
        rdt, rshape, rv = ref[name]
        if (dt, shape) != (rdt, rshape):
            fail(f"{path}: {name}: C says {dt} {shape}, reference {rdt} {rshape}")
        if at < 0:
            if rdt in ("F32", "F16", "BF16"):
                fail(f"{path}: {name}: C gave no values for {rdt}")
            continue
        cv = values[at:at + count]
        if cv.shape != rv.shape or not np.array_equal(cv, rv):
            fail(f"{path}: {name}: values differ (max |diff| "
                 f"{np.max(np.abs(cv - rv)) if cv.shape == rv.shape else 'shape'})")
    if seen != set(ref):
        fail(f"{path}: tensors only in the reference: {sorted(set(ref) - seen)[:5]}")
    if cmeta != meta:
        fail(f"{path}: metadata C {cmeta} vs reference {meta}")
    return ref


def expect_shape(ref, name, shape, where):
    if name not in ref:
        fail(f"{where}: tensor {name} missing")
    elif ref[name][1] != shape:
        fail(f"{where}: {name} has shape {ref[name][1]}, config implies {shape}")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def check_tokenizer(sd, vocab_size):
    with open(os.path.join(sd, "tokenizer", "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))) or len(ids) != vocab_size:
        fail(f"vocab.json: ids are not 0..{vocab_size - 1}")
    inv = {i: t for t, i in vocab.items()}
    base = bytes_to_unicode()
    for i, s in enumerate(base):
        if inv.get(i) != s or inv.get(256 + i) != s + "</w>":
            fail(f"vocab.json: byte symbol {i} is {inv.get(i)!r}, expected {s!r}")
            break
    if inv.get(vocab_size - 2) != "<|startoftext|>" or inv.get(vocab_size - 1) != "<|endoftext|>":
        fail("vocab.json: the last two tokens are not <|startoftext|>, <|endoftext|>")
    with open(os.path.join(sd, "tokenizer", "merges.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    if not lines[0].startswith("#version"):
        fail("merges.txt: no #version line")
    merges = [l.split(" ") for l in lines[1:] if l]
    last = 511
    for rank, (a, b) in enumerate(merges):
        if a not in vocab or b not in vocab or a + b not in vocab:
            fail(f"merges.txt: merge {rank} '{a} {b}': a part or the result is not a token")
            break
        if not (vocab[a] < vocab[a + b] and vocab[b] < vocab[a + b] and vocab[a + b] > last):
            fail(f"merges.txt: merge {rank} '{a} {b}' is out of rank order")
            break
        last = vocab[a + b]
    if len(merges) != vocab_size - 514:
        fail(f"merges.txt: {len(merges)} merges for a vocabulary of {vocab_size}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mkmodel", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--dtype", default="f32")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sd = os.path.join(tmp, "sd")
        subprocess.run([args.mkmodel, "diffusion", "--out", sd, "--dtype", args.dtype,
                        "--seed", "3"], check=True)
        cfg = {}
        for part in ("unet", "vae", "text_encoder"):
            with open(os.path.join(sd, part, "config.json")) as f:
                cfg[part] = json.load(f)
        unet = compare_with_c(os.path.join(sd, "unet", "diffusion_pytorch_model.safetensors"),
                              args.dump, tmp)
        vae = compare_with_c(os.path.join(sd, "vae", "diffusion_pytorch_model.safetensors"),
                             args.dump, tmp)
        te = compare_with_c(os.path.join(sd, "text_encoder", "model.safetensors"), args.dump, tmp)
        want = "F32" if args.dtype == "f32" else "F16"
        for ref in (unet, vae):
            for name, (dt, _, _) in ref.items():
                if dt != want:
                    fail(f"{name}: dtype {dt}, expected {want}")

        u, v, t = cfg["unet"], cfg["vae"], cfg["text_encoder"]
        ch, lat = u["block_out_channels"], v["latent_channels"]
        expect_shape(unet, "conv_in.weight", [ch[0], u["in_channels"], 3, 3], "unet")
        expect_shape(unet, "time_embedding.linear_1.weight", [4 * ch[0], ch[0]], "unet")
        expect_shape(unet, "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
                     [8 * ch[0], ch[0]], "unet")
        expect_shape(unet, "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                     [ch[0], u["cross_attention_dim"]], "unet")
        expect_shape(unet, "up_blocks.0.upsamplers.0.conv.weight", [ch[-1], ch[-1], 3, 3], "unet")
        expect_shape(unet, "up_blocks.0.resnets.0.conv1.weight", [ch[-1], 2 * ch[-1], 3, 3], "unet")
        expect_shape(unet, "conv_out.weight", [u["out_channels"], ch[0], 3, 3], "unet")
        vch = v["block_out_channels"]
        expect_shape(vae, "quant_conv.weight", [2 * lat, 2 * lat, 1, 1], "vae")
        expect_shape(vae, "post_quant_conv.weight", [lat, lat, 1, 1], "vae")
        expect_shape(vae, "encoder.conv_out.weight", [2 * lat, vch[-1], 3, 3], "vae")
        expect_shape(vae, "decoder.mid_block.attentions.0.to_q.weight", [vch[-1], vch[-1]], "vae")
        expect_shape(vae, "decoder.conv_out.weight", [v["out_channels"], vch[0], 3, 3], "vae")
        h = t["hidden_size"]
        expect_shape(te, "text_model.embeddings.token_embedding.weight", [t["vocab_size"], h], "clip")
        expect_shape(te, "text_model.encoder.layers.0.mlp.fc1.weight", [t["intermediate_size"], h], "clip")
        expect_shape(te, f"text_model.encoder.layers.{t['num_hidden_layers'] - 1}.self_attn.q_proj.weight",
                     [h, h], "clip")
        expect_shape(te, "text_model.final_layer_norm.weight", [h], "clip")
        pid = te.get("text_model.embeddings.position_ids")
        if pid is None or pid[0] != "I64" or list(pid[2]) != list(range(t["max_position_embeddings"])):
            fail("text_model.embeddings.position_ids is not I64 0..76")
        check_tokenizer(sd, t["vocab_size"])
        n = len(unet) + len(vae) + len(te)
    if errors:
        print(f"{len(errors)} problem(s)")
        return 1
    print(f"ok: {n} tensors match the C reader value for value ({args.dtype}); tokenizer consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
