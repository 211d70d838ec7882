"""safetensors files for the numpy references (own reader and writer, from the format's
published description: an 8-byte little-endian header size, a JSON header of name -> dtype,
shape, data_offsets, then the data). Shared by clip_text_ref, unet_ref and vae_ref."""
import json
import struct

import numpy as np


def read(path):
    """name -> array: F32/F16/BF16/F64 as float64, I64 as int64; other dtypes left out."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = data[base + a:base + b]
        dt = t["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F64":
            arr = np.frombuffer(raw, dtype="<f8")
        elif dt == "I64":
            out[name] = np.frombuffer(raw, dtype="<i8").reshape(t["shape"])
            continue
        else:
            continue
        out[name] = arr.astype(np.float64).reshape(t["shape"])
    return out


def encode(arr, dt):
    """Little-endian bytes of arr as safetensors dtype dt (F32, F16, BF16 rounded to nearest
    even, I64)."""
    if dt == "I64":
        return np.ascontiguousarray(arr, dtype="<i8").tobytes()
    a = np.ascontiguousarray(arr, dtype=np.float32)
    if dt == "F32":
        return a.astype("<f4").tobytes()
    if dt == "F16":
        return a.astype("<f2").tobytes()
    if dt == "BF16":
        u = a.view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        return u.astype("<u2").tobytes()
    raise ValueError("dtype " + dt)


def write(path, tensors, metadata=None):
    """tensors: name -> (dtype name, little-endian bytes, shape)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dt, raw, shape) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
