#!/usr/bin/env python3
"""Reference images for tests/engine/image: files made and decoded by an independent tool
(Pillow, pinned, installed into a venv in the build folder on first use), and a reader of the
PNGs that inferd writes.

  image_ref.py gen VENV OUTDIR
      writes OUTDIR/NAME.png|jpg and OUTDIR/NAME.rgb (Pillow's decode as 8-bit RGB rows) for
      every case of CASES, and OUTDIR/cases.txt ("NAME FILE WIDTH HEIGHT" lines). PNGs that
      Pillow cannot write (2/4-bit grey, 16-bit colour, Adam7 interlace) are written by the
      small encoder below and still decoded by Pillow for the expectation. 16-bit grey, which
      Pillow opens as 16-bit integers (its convert("RGB") clips at 255), is expected as the
      high byte, the rule of image_io.h.
  image_ref.py read VENV FILE OUT.rgb
      opens FILE with Pillow, writes its convert("RGB") pixels to OUT.rgb and prints a JSON
      object: format, mode, width, height, text (the PNG text chunks Pillow found).

Exit 77 (skipped) with a message when Pillow can be neither installed nor imported.
"""
import json
import os
import random
import struct
import subprocess
import sys
import time
import zlib

PINS = ["Pillow==10.4.0"]


def ensure_pillow(venv):
    """Re-executes this script under VENV's python (made on first use) when needed."""
    venv = os.path.abspath(venv)
    inside = os.path.abspath(sys.prefix) == venv
    if not inside:
        try:
            import fcntl
            os.makedirs(os.path.dirname(venv) or ".", exist_ok=True)
            with open(venv + ".lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                failed = venv + ".failed"
                # A failed attempt is not repeated for 10 minutes (one test run offline).
                recent = os.path.exists(failed) and time.time() - os.path.getmtime(failed) < 600
                if not os.path.exists(venv + "/.ok") and not recent:
                    py = os.path.join(venv, "bin", "python")
                    ok = subprocess.run([sys.executable, "-m", "venv", "--clear", venv],
                                        capture_output=True).returncode == 0
                    if ok:
                        with open(venv + ".log", "w") as log:
                            ok = subprocess.run([py, "-m", "pip", "install", "--quiet",
                                                 "--disable-pip-version-check", "--timeout", "15",
                                                 "--retries", "1"] + PINS,
                                                stdout=log, stderr=log).returncode == 0
                    open(venv + "/.ok" if ok else failed, "w").close()
        except OSError as e:
            print("image_ref: cannot make the venv: %s" % e, file=sys.stderr)
        if os.path.exists(venv + "/.ok"):
            py = os.path.join(venv, "bin", "python")
            os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])
    try:
        import PIL  # noqa: F401
    except ImportError:
        print("image_ref: Pillow is not available: cannot install %s (offline?), see %s.log"
              % (" ".join(PINS), venv), file=sys.stderr)
        sys.exit(77)


# ---- a minimal PNG encoder for what Pillow cannot write -------------------------------------

def chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def pack_row(samples, bit_depth):
    """Samples of one row (ints) -> bytes at bit_depth (1, 2, 4, 8 or 16)."""
    if bit_depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if bit_depth == 8:
        return bytes(samples)
    per = 8 // bit_depth
    out = bytearray()
    for i in range(0, len(samples), per):
        byte = 0
        group = samples[i:i + per]
        for j, s in enumerate(group):
            byte |= s << (8 - bit_depth * (j + 1))
        out.append(byte)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def write_png(path, width, height, color_type, bit_depth, pixels, interlace=False):
    """pixels[y][x] is a tuple of channel samples."""
    raw = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        xs = range(x0, width, dx)
        if not xs:
            continue
        for y in range(y0, height, dy):
            samples = [s for x in xs for s in pixels[y][x]]
            raw += b"\x00" + pack_row(samples, bit_depth)  # filter type 0 (None)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlace))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw)))
                + chunk(b"IEND", b""))


# ---- the cases --------------------------------------------------------------------------------

def picture(w, h, seed):
    """A smooth picture with some texture, as (r, g, b) rows of 0-255."""
    rnd = random.Random(seed)
    rows = []
    for y in range(h):
        row = []
        for x in range(w):
            r = (x * 255) // max(1, w - 1)
            g = (y * 255) // max(1, h - 1)
            b = ((x // 4 + y // 4) % 2) * 160 + rnd.randrange(0, 64)
            row.append((r, g, min(255, b)))
        rows.append(row)
    return rows


def gen(outdir):
    from PIL import Image

    tmp = "%s.tmp-%d" % (outdir, os.getpid())
    os.makedirs(tmp, exist_ok=True)
    cases = []

    def expect(name, fname):
        im = Image.open(os.path.join(tmp, fname))
        im.load()
        if im.mode in ("I", "I;16", "I;16B", "I;16L"):
            data = bytes(v >> 8 for v in im.getdata() for _ in range(3))
        else:
            data = im.convert("RGB").tobytes()
        assert len(data) == im.width * im.height * 3
        with open(os.path.join(tmp, name + ".rgb"), "wb") as f:
            f.write(data)
        cases.append("%s %s %d %d" % (name, fname, im.width, im.height))

    W, H = 37, 23  # odd sizes: partial JPEG MCUs, PNG rows of odd byte lengths
    pic = picture(W, H, 1)
    rgb = Image.new("RGB", (W, H))
    rgb.putdata([p for row in pic for p in row])
    alpha = Image.new("L", (W, H))
    alpha.putdata([(x * 7 + y * 3) % 256 for y in range(H) for x in range(W)])

    def save(name, im, ext="png", **kw):
        fname = name + "." + ext
        im.save(os.path.join(tmp, fname), **kw)
        expect(name, fname)

    # PNG, written by Pillow
    save("png_rgb8", rgb)
    save("png_1x1", Image.new("RGB", (1, 1), (12, 200, 77)))
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    save("png_rgba8", rgba)
    grey = rgb.convert("L")
    save("png_grey8", grey)
    save("png_grey1", grey.convert("1"))
    la = grey.copy()
    la.putalpha(alpha)
    save("png_greyalpha8", la)
    save("png_grey8_trns", grey, transparency=128)
    pal = rgb.quantize(colors=200)
    save("png_palette8", pal)
    save("png_palette4", rgb.quantize(colors=16), bits=4)
    save("png_palette1", rgb.quantize(colors=2), bits=1)
    save("png_palette_trns", pal, transparency=bytes([0, 64, 128, 255] * 50))
    g16 = Image.new("I;16", (W, H))
    g16.putdata([(x * 1789 + y * 2311) % 65536 for y in range(H) for x in range(W)])
    save("png_grey16", g16)

    # PNG, written by the small encoder above (decoded by Pillow)
    rnd = random.Random(2)
    for depth in (2, 4):
        px = [[(rnd.randrange(0, 1 << depth),) for _ in range(W)] for _ in range(H)]
        write_png(os.path.join(tmp, "png_grey%d.png" % depth), W, H, 0, depth, px)
        expect("png_grey%d" % depth, "png_grey%d.png" % depth)
    px = [[tuple(rnd.randrange(0, 65536) for _ in range(3)) for _ in range(W)] for _ in range(H)]
    write_png(os.path.join(tmp, "png_rgb16.png"), W, H, 2, 16, px)
    expect("png_rgb16", "png_rgb16.png")
    px = [[tuple(rnd.randrange(0, 65536) for _ in range(4)) for _ in range(W)] for _ in range(H)]
    write_png(os.path.join(tmp, "png_rgba16.png"), W, H, 6, 16, px)
    expect("png_rgba16", "png_rgba16.png")
    px = [[tuple(rnd.randrange(0, 65536) for _ in range(2)) for _ in range(W)] for _ in range(H)]
    write_png(os.path.join(tmp, "png_greyalpha16.png"), W, H, 4, 16, px)
    expect("png_greyalpha16", "png_greyalpha16.png")
    write_png(os.path.join(tmp, "png_rgb8_adam7.png"), W, H, 2, 8, pic, interlace=True)
    expect("png_rgb8_adam7", "png_rgb8_adam7.png")

    # JPEG, written and decoded by Pillow (its bundled libjpeg-turbo)
    save("jpeg_baseline", rgb, "jpg", quality=90)
    save("jpeg_444", rgb, "jpg", quality=95, subsampling=0)
    save("jpeg_progressive", rgb, "jpg", quality=90, progressive=True)
    save("jpeg_grey", grey, "jpg", quality=90)
    save("jpeg_grey_progressive", grey, "jpg", quality=85, progressive=True)
    save("jpeg_cmyk", rgb.convert("CMYK"), "jpg", quality=95)
    big = Image.new("RGB", (200, 120))
    big.putdata([p for row in picture(200, 120, 3) for p in row])
    save("jpeg_200x120_optimized", big, "jpg", quality=75, optimize=True)

    with open(os.path.join(tmp, "cases.txt"), "w") as f:
        f.write("\n".join(cases) + "\n")
    if os.path.isdir(outdir):
        import shutil
        shutil.rmtree(outdir)
    os.rename(tmp, outdir)


def read(path, out):
    from PIL import Image

    im = Image.open(path)
    im.load()
    with open(out, "wb") as f:
        f.write(im.convert("RGB").tobytes())
    text = dict(getattr(im, "text", {}) or {})
    print(json.dumps({"format": im.format, "mode": im.mode, "width": im.width,
                      "height": im.height, "text": text}))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "gen":
        ensure_pillow(sys.argv[2])
        outdir = os.path.abspath(sys.argv[3])
        import fcntl
        with open(outdir + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(os.path.join(outdir, "cases.txt")):
                gen(outdir)
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "read":
        ensure_pillow(sys.argv[2])
        read(sys.argv[3], sys.argv[4])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    import warnings
    warnings.simplefilter("ignore")
    sys.exit(main())
