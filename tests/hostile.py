"""Hostile images inside the request limits: decompression and CPU bombs, built in code.

Used by the tests (tests/test_imaging_hostile.py, tests/test_hostile_load.py) and by
bench/bench_hostile.py. Every builder is deterministic and cached (the big ones take a few
hundred milliseconds to build); the pictures stay within the default limits (20 MiB body,
40 M pixels, 16384 per side) unless a builder says otherwise.

``KINDS`` lists the shapes the benchmark and the load test send, with the outcome each must get.
"""
from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

# ---- PNG -----------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _zlib_rows(row: bytes, height: int, level: int = 9) -> bytes:
    """zlib stream of ``height`` copies of ``row`` (compressed a block of rows at a time)."""
    comp = zlib.compressobj(level)
    block = max(1, (1 << 22) // max(1, len(row)))
    out = []
    chunk = row * block
    done = 0
    while done < height:
        n = min(block, height - done)
        out.append(comp.compress(chunk if n == block else row * n))
        done += n
    out.append(comp.flush())
    return b"".join(out)


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, row: bytes,
              extra_before_idat: Sequence[bytes] = (), idat_size: int = 1 << 20) -> bytes:
    """A PNG whose every row is ``row`` (filter byte included), IDAT split in ``idat_size`` pieces."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    data = _zlib_rows(row, height)
    idats = [png_chunk(b"IDAT", data[i:i + idat_size]) for i in range(0, len(data), idat_size)]
    return b"".join([PNG_SIGNATURE, png_chunk(b"IHDR", ihdr), *extra_before_idat, *idats,
                     png_chunk(b"IEND", b"")])


@functools.lru_cache(maxsize=None)
def png_rgba_zeros(side: int = 6324) -> bytes:
    """RGBA, all zeros (transparent black): 155 KB for 6324x6324 = 40 M pixels."""
    return png_bytes(side, side, 8, 6, b"\x00" * (1 + side * 4))


@functools.lru_cache(maxsize=None)
def png16_rgba(width: int = 16384, height: int = 2441) -> bytes:
    """16-bit RGBA, half-transparent mid grey (every pixel composited)."""
    pixel = struct.pack(">HHHH", 30000, 40000, 50000, 32768)
    return png_bytes(width, height, 16, 6, b"\x00" + pixel * width)


@functools.lru_cache(maxsize=None)
def png_palette_trns(side: int = 6324) -> bytes:
    """Palette with a tRNS chunk (index 0 transparent): a few tens of KB for 40 M pixels."""
    plte = png_chunk(b"PLTE", bytes([0, 0, 0, 255, 0, 0]))
    trns = png_chunk(b"tRNS", bytes([0]))
    row = b"\x00" + bytes(side)
    return png_bytes(side, side, 8, 3, row, extra_before_idat=[plte, trns])


@functools.lru_cache(maxsize=None)
def png_grey16(side: int = 6324) -> bytes:
    """16-bit grey, constant: a grey bomb (scaled to 8 bits when decoded)."""
    return png_bytes(side, side, 16, 0, b"\x00" + b"\x80\x00" * side)




@functools.lru_cache(maxsize=None)
def png_many_chunks(count: int = 1_000_000, where: str = "before") -> bytes:
    """A tiny PNG with ``count`` empty ancillary chunks before (or after) its IDAT."""
    junk = png_chunk(b"juNk", b"") * count
    head = png_bytes(64, 64, 8, 2, b"\x00" + b"\x10\x20\x30" * 64)
    idat = head.index(b"IDAT") - 4
    iend = head.rindex(b"IEND") - 4
    if where == "before":
        return head[:idat] + junk + head[idat:]
    return head[:iend] + junk + head[iend:]


@functools.lru_cache(maxsize=None)
def png_many_iccp(count: int = 5000) -> bytes:
    """``count`` iCCP chunks, each inflating to just under 1 MB (Pillow's per-chunk cap)."""
    profile = zlib.compress(b"\x00" * ((1 << 20) - 1024), 9)
    iccp = png_chunk(b"iCCP", b"icc\x00\x00" + profile)
    head = png_bytes(64, 64, 8, 2, b"\x00" + b"\x10\x20\x30" * 64)
    idat = head.index(b"IDAT") - 4
    return head[:idat] + iccp * count + head[idat:]


@functools.lru_cache(maxsize=None)
def apng_many_frames(frames: int = 200_000, side: int = 64) -> bytes:
    """An APNG with ``frames`` frames (fcTL + tiny fdAT each) after a small default image."""
    row = b"\x00" + b"\x10\x20\x30" * side
    data = _zlib_rows(row, side)
    out = [PNG_SIGNATURE, png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)),
           png_chunk(b"acTL", struct.pack(">II", frames, 0))]
    seq = 0
    out.append(png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, side, side, 0, 0, 1, 100, 0, 0)))
    seq += 1
    out.append(png_chunk(b"IDAT", data))
    for _ in range(frames - 1):
        out.append(png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, 1, 1, 0, 0, 1, 100, 0, 0)))
        out.append(png_chunk(b"fdAT", struct.pack(">I", seq + 1) + zlib.compress(b"\x00\x00\x00\x00")))
        seq += 2
    out.append(png_chunk(b"IEND", b""))
    return b"".join(out)


# ---- JPEG ----------------------------------------------------------------------------------------

def jpeg_segments(data: bytes) -> List[Tuple[int, int, int]]:
    """(marker, start, end) of each segment of a well-formed JPEG, entropy data in its SOS segment."""
    pos, out = 2, []
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            break
        end = pos + 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker == 0xDA:
            i = end
            while True:
                j = data.index(b"\xff", i)
                if data[j + 1] == 0 or 0xD0 <= data[j + 1] <= 0xD7:
                    i = j + 2
                    continue
                break
            end = j
        out.append((marker, pos, end))
        pos = end
    return out


def _pil_jpeg(side: int, progressive: bool, colour=(120, 130, 140), **kw) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buf, "JPEG", progressive=progressive, quality=90, **kw)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def jpeg_scan_bomb(side: int = 4096, scans: int = 12000, all_components: bool = False) -> bytes:
    """A progressive JPEG with ``scans`` extra (empty) AC scans: each costs a pass over every block.

    4096x4096 with 12,000 scans is the issue's file (~190 KB); ``all_components`` repeats the
    interleaved DC refinement scan instead (bigger per scan, three components per pass).
    """
    data = _pil_jpeg(side, True)
    sos = [(s, e) for m, s, e in jpeg_segments(data) if m == 0xDA]
    if all_components:
        s, e = sos[-4]  # the DC refinement scan over all three components
        assert data[s + 4] == 3
    else:
        s, e = sos[1]  # the first AC scan of Y (Ss=1..5): a few bytes of EOB runs
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + data[s:e] * scans + data[eoi:]


def jpeg_with_scans(scans: int, side: int = 64) -> bytes:
    """A small progressive JPEG with exactly ``scans`` scans (the last AC scan repeated)."""
    data = _pil_jpeg(side, True, colour=(30, 160, 90))
    sos = [(s, e) for m, s, e in jpeg_segments(data) if m == 0xDA]
    if scans < len(sos):
        raise ValueError(f"a progressive JPEG from libjpeg already has {len(sos)} scans")
    s, e = sos[1]
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + data[s:e] * (scans - len(sos)) + data[eoi:]


@functools.lru_cache(maxsize=None)
def jpeg_progressive_444(side: int = 6324, mode: str = "RGB") -> bytes:
    """A flat progressive JPEG without chroma subsampling (libjpeg keeps every coefficient of a
    progressive picture: 2 bytes per sample), RGB or CMYK."""
    buf = io.BytesIO()
    colour = (120, 130, 140) if mode == "RGB" else (10, 40, 80, 20)
    Image.new(mode, (side, side), colour).save(buf, "JPEG", progressive=True, quality=90, subsampling=0)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def jpeg_many_segments(count: int = 1_000_000) -> bytes:
    """A small JPEG with ``count`` empty COM segments before its first scan."""
    data = _pil_jpeg(64, False)
    return data[:2] + b"\xff\xfe\x00\x02" * count + data[2:]


@functools.lru_cache(maxsize=None)
def jpeg_photoshop_flood(segments: int = 300) -> bytes:
    """A small JPEG with ``segments`` APP13 Photoshop segments, each ~5,400 empty resource blocks
    (Pillow parses every block in Python)."""
    block = b"8BIM" + b"\x04\x04" + b"\x00\x00" + b"\x00\x00\x00\x00"
    payload = b"Photoshop 3.0\x00" + block * ((65533 - 14) // len(block))
    segment = b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload
    data = _pil_jpeg(64, False)
    return data[:2] + segment * segments + data[2:]


@functools.lru_cache(maxsize=None)
def jpeg_dqt_flood(segments: int = 300) -> bytes:
    """A small JPEG with ``segments`` DQT segments of ~1,000 tables each (parsed in Python)."""
    table = b"\x00" + bytes(range(1, 65))
    payload = table * ((65533) // len(table))
    segment = b"\xff\xdb" + struct.pack(">H", len(payload) + 2) + payload
    data = _pil_jpeg(64, False)
    return data[:2] + segment * segments + data[2:]




# ---- TIFF ----------------------------------------------------------------------------------------

SHORT, LONG, ASCII = 3, 4, 2


def tiff_bytes(width: int, height: int, *, samples: int = 3, bits: int = 8, photometric: int = 2,
               compression: int = 1, blocks: Sequence[bytes] = (), tile: Optional[Tuple[int, int]] = None,
               rows_per_strip: Optional[int] = None, extra_samples: Sequence[int] = (),
               extra_tags: Sequence[Tuple[int, int, Sequence]] = (), pages: int = 1) -> bytes:
    """A little-endian TIFF: ``blocks`` are the strips (or tiles) as stored; ``pages`` copies of the IFD.

    ``extra_tags`` are (tag, type, values) with type SHORT, LONG or ASCII (values a str).
    """
    header = b"II*\x00"
    data = bytearray(header + b"\x00\x00\x00\x00")
    # identical blocks are stored once (a bomb's tiles all point at the same bytes)
    offsets, stored = [], {}
    for block in blocks:
        if block not in stored:
            stored[block] = len(data)
            data += block
            if len(data) % 2:
                data += b"\x00"
        offsets.append(stored[block])
    counts = [len(b) for b in blocks]
    tags: List[Tuple[int, int, Sequence]] = [
        (256, LONG, [width]), (257, LONG, [height]), (258, SHORT, [bits] * samples),
        (259, SHORT, [compression]), (262, SHORT, [photometric]), (277, SHORT, [samples]),
        (284, SHORT, [1]),
    ]
    if tile:
        tags += [(322, LONG, [tile[0]]), (323, LONG, [tile[1]]), (324, LONG, offsets), (325, LONG, counts)]
    else:
        tags += [(273, LONG, offsets), (278, LONG, [rows_per_strip or height]), (279, LONG, counts)]
    if extra_samples:
        tags.append((338, SHORT, list(extra_samples)))
    tags += list(extra_tags)
    tags.sort(key=lambda t: t[0])

    def pack_values(kind: int, values) -> bytes:
        if kind == ASCII:
            return values.encode("ascii") + b"\x00"
        fmt = "<%dH" % len(values) if kind == SHORT else "<%dI" % len(values)
        return struct.pack(fmt, *values)

    ifd_offsets = []
    for page in range(pages):
        # out-of-line values first, then the IFD itself
        entries = []
        for tag, kind, values in tags:
            raw = pack_values(kind, values)
            count = len(raw) if kind == ASCII else len(values)
            if len(raw) <= 4:
                entries.append(struct.pack("<HHI", tag, kind, count) + raw.ljust(4, b"\x00"))
            else:
                off = len(data)
                data += raw
                if len(data) % 2:
                    data += b"\x00"
                entries.append(struct.pack("<HHII", tag, kind, count, off))
        ifd_offsets.append(len(data))
        data += struct.pack("<H", len(entries)) + b"".join(entries) + b"\x00\x00\x00\x00"
    struct.pack_into("<I", data, 4, ifd_offsets[0])
    for a, b in zip(ifd_offsets, ifd_offsets[1:]):  # chain the pages
        n = struct.unpack_from("<H", data, a)[0]
        struct.pack_into("<I", data, a + 2 + 12 * n, b)
    return bytes(data)


@functools.lru_cache(maxsize=None)
def tiff_tiny_tiles(side: int = 6320, tile: int = 16) -> bytes:
    """Uncompressed RGB in 16x16 tiles: 156,000 tiles for 40 M pixels (one stored tile, shared)."""
    n = (-(-side // tile)) ** 2
    block = bytes(tile * tile * 3)
    return tiff_bytes(side, side, blocks=[block] * n, tile=(tile, tile))


@functools.lru_cache(maxsize=None)
def tiff_row_strips(width: int = 2441, height: int = 16384) -> bytes:
    """Uncompressed RGB with one strip per row (the most strips a height allows)."""
    block = bytes(width * 3)
    return tiff_bytes(width, height, blocks=[block] * height, rows_per_strip=1)


@functools.lru_cache(maxsize=None)
def tiff_deflate_rgba16(width: int = 16384, height: int = 2441, rows_per_strip: Optional[int] = None) -> bytes:
    """Deflate-compressed 16-bit RGBA (associated alpha), the widest raw pixels, in the biggest
    strips the decoder accepts (``imagecheck.MAX_TIFF_BLOCK_BYTES``); ``rows_per_strip`` = height
    gives one strip (refused at 40 MP: 320 MB of strip buffer)."""
    from shared import imagecheck

    pixel = struct.pack("<HHHH", 30000, 40000, 50000, 32768)
    rows = rows_per_strip or max(1, imagecheck.MAX_TIFF_BLOCK_BYTES // (width * 8))
    blocks = [_zlib_rows(pixel * width, min(rows, height - y)) for y in range(0, height, rows)]
    return tiff_bytes(width, height, samples=4, bits=16, compression=8, blocks=blocks,
                      rows_per_strip=rows, extra_samples=[2])


@functools.lru_cache(maxsize=None)
def tiff_deflate_rgb(side: int = 6324) -> bytes:
    """Deflate-compressed 8-bit RGB, one strip (the issue's "TIFF bomb")."""
    block = _zlib_rows(b"\x40\x80\xc0" * side, side)
    return tiff_bytes(side, side, compression=8, blocks=[block])


@functools.lru_cache(maxsize=None)
def tiff_many_pages(pages: int = 20000) -> bytes:
    """A small TIFF whose IFD chain has ``pages`` pages."""
    return tiff_bytes(64, 64, blocks=[bytes(64 * 64 * 3)], pages=pages)


@functools.lru_cache(maxsize=None)
def tiff_jpeg_scan_bomb(side: int = 4096, scans: int = 12000) -> bytes:
    """JPEG-in-TIFF (compression 7) whose one strip is a progressive JPEG scan bomb."""
    strip = jpeg_scan_bomb(side, scans)
    return tiff_bytes(side, side, photometric=6, compression=7, blocks=[strip],
                      extra_tags=[(530, SHORT, [2, 2])])


def tiff_oriented(pixels_rgb: np.ndarray, orientation: int, ascii: bool = False) -> bytes:
    """An uncompressed RGB TIFF of ``pixels_rgb`` (as stored) with an Orientation tag."""
    h, w = pixels_rgb.shape[:2]
    tag = (274, ASCII, str(orientation)) if ascii else (274, SHORT, [orientation])
    return tiff_bytes(w, h, blocks=[np.ascontiguousarray(pixels_rgb, np.uint8).tobytes()],
                      extra_tags=[tag])


# ---- BMP -----------------------------------------------------------------------------------------

def bmp_bytes(width: int, height: int, bits: int, compression: int, pixel_data: bytes,
              palette: Optional[bytes] = None) -> bytes:
    """A BITMAPINFOHEADER BMP around ``pixel_data`` (bottom-up)."""
    if palette is None and bits <= 8:
        palette = b"".join(bytes([i, i, i, 0]) for i in range(1 << bits))
    palette = palette or b""
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, compression, len(pixel_data),
                       2835, 2835, len(palette) // 4, 0)
    head = struct.pack("<2sIHHI", b"BM", offset + len(pixel_data), 0, 0, offset)
    return head + info + palette + pixel_data


@functools.lru_cache(maxsize=None)
def bmp_rle8_runs(side: int = 6324) -> bytes:
    """RLE8, every row made of 255-pixel runs: ~0.3 MB for 40 M pixels."""
    row = bytearray()
    left = side
    while left:
        n = min(255, left)
        row += bytes([n, 7])
        left -= n
    row += b"\x00\x00"  # end of line
    return bmp_bytes(side, side, 8, 1, bytes(row) * side + b"\x00\x01")


@functools.lru_cache(maxsize=None)
def bmp_rle8_literals(width: int = 6324, height: int = 1500) -> bytes:
    """RLE8 of one-pixel runs (2 bytes per pixel): the most RLE codes a body can hold."""
    row = b"\x01\x07" * width + b"\x00\x00"
    return bmp_bytes(width, height, 8, 1, row * height + b"\x00\x01")




# ---- WebP ----------------------------------------------------------------------------------------



@functools.lru_cache(maxsize=None)
def webp_lossless_flat(side: int = 6324) -> bytes:
    """A lossless WebP of one colour at 40 M pixels (a few KB)."""
    buf = io.BytesIO()
    Image.new("RGBA", (side, side), (0, 0, 0, 0)).save(buf, "WEBP", lossless=True, method=0)
    return buf.getvalue()


def riff_chunk(fourcc: bytes, payload: bytes) -> bytes:
    """One RIFF chunk (padded to an even size)."""
    return fourcc + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")


@functools.lru_cache(maxsize=None)
def webp_frame_flood(frames: int = 400_000, side: int = 64) -> bytes:
    """An animated WebP of ``side`` x ``side`` made of ``frames`` one-pixel frames (~50 bytes each)."""
    buf = io.BytesIO()
    Image.new("RGBA", (1, 1), (1, 2, 3, 255)).save(buf, "WEBP", lossless=True)
    vp8l = buf.getvalue()[12:]  # the VP8L chunk of a 1x1 picture
    vp8x = riff_chunk(b"VP8X", struct.pack("<I", 0x02 | 0x10) + (side - 1).to_bytes(3, "little")
                      + (side - 1).to_bytes(3, "little"))
    anim = riff_chunk(b"ANIM", struct.pack("<IH", 0, 0))
    frame = riff_chunk(b"ANMF", bytes(12) + (10).to_bytes(3, "little") + b"\x00" + vp8l)  # x, y, w-1, h-1
    body = b"WEBP" + vp8x + anim + frame * frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


# ---- the catalogue -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """One hostile shape: how to build it and the status class it must get (2 = 2xx, 4 = 4xx).

    ``load`` builds the variant the load test floods the host with: the same structure at a size
    whose upload costs the host little (a flood of multi-megabyte bodies costs the host as much
    whatever they contain: see bench/bench_hostile.py's controls), or None when the shape is no
    harder to decode than an ordinary picture (flooding with it is an ordinary flood).
    """

    name: str
    build: Callable[[], bytes]
    content_type: str
    expect: int  # 2 or 4: the first digit of the status
    note: str
    load: Optional[Callable[[], bytes]] = None

    def load_body(self) -> bytes:
        return (self.load or self.build)()


KINDS: List[Kind] = [
    Kind("jpeg_12000_scans", jpeg_scan_bomb, "image/jpeg", 4, "issue item 1: progressive 4096x4096, 12,000 scans",
         jpeg_scan_bomb),
    Kind("jpeg_1m_segments", jpeg_many_segments, "image/jpeg", 4, "1 M empty COM segments before the scan",
         lambda: jpeg_many_segments(100_000)),
    Kind("jpeg_photoshop_flood", jpeg_photoshop_flood, "image/jpeg", 4,
         "300 APP13 segments of 5,400 Photoshop resource blocks", lambda: jpeg_photoshop_flood(16)),
    Kind("jpeg_dqt_flood", jpeg_dqt_flood, "image/jpeg", 4, "300 DQT segments of 1,000 tables",
         lambda: jpeg_dqt_flood(16)),
    Kind("jpeg_cmyk_progressive", lambda: jpeg_progressive_444(mode="CMYK"), "image/jpeg", 4,
         "progressive CMYK 6324x6324: 305 MiB of coefficients (8 bytes per pixel)"),
    Kind("png_rgba_zeros", png_rgba_zeros, "image/png", 2, "RGBA 6324x6324 zeros, 155 KB", png_rgba_zeros),
    Kind("png16_rgba", png16_rgba, "image/png", 2, "16-bit RGBA 16384x2441", png16_rgba),
    Kind("png_palette_trns", png_palette_trns, "image/png", 2, "palette + tRNS 6324x6324", png_palette_trns),
    Kind("png_grey16", png_grey16, "image/png", 2, "16-bit grey 6324x6324", png_grey16),
    Kind("png_1m_chunks", png_many_chunks, "image/png", 4, "1 M empty ancillary chunks (11 MB)",
         lambda: png_many_chunks(100_000)),
    Kind("png_iccp_flood", png_many_iccp, "image/png", 4, "5,000 iCCP chunks of 1 MB each inflated",
         lambda: png_many_iccp(100)),
    Kind("apng_200k_frames", apng_many_frames, "image/png", 2, "APNG with 200,000 frames (the first decoded)"),
    Kind("tiff_deflate_rgb", tiff_deflate_rgb, "image/tiff", 2, "deflate RGB 6324x6324, one strip",
         tiff_deflate_rgb),
    Kind("tiff_deflate_rgba16", tiff_deflate_rgba16, "image/tiff", 2,
         "deflate 16-bit RGBA 16384x2441 in 64 MiB strips", tiff_deflate_rgba16),
    Kind("tiff_rgba16_one_strip", lambda: tiff_deflate_rgba16(rows_per_strip=2441), "image/tiff", 4,
         "deflate 16-bit RGBA 16384x2441 in one 320 MB strip"),
    Kind("tiff_tiny_tiles", tiff_tiny_tiles, "image/tiff", 4, "156,000 16x16 tiles", tiff_tiny_tiles),
    Kind("tiff_jpeg_scans", tiff_jpeg_scan_bomb, "image/tiff", 4, "JPEG-in-TIFF with 12,000 scans",
         tiff_jpeg_scan_bomb),
    Kind("bmp_rle8_runs", bmp_rle8_runs, "image/bmp", 2, "RLE8 6324x6324 in 255-pixel runs", bmp_rle8_runs),
    # a bomb for Pillow's Python RLE decoder only: OpenCV decodes it like any 9.5 MP picture
    Kind("bmp_rle8_literals", bmp_rle8_literals, "image/bmp", 2, "RLE8 of 1-pixel runs, 6324x1500, 19 MB"),
    Kind("webp_flat", webp_lossless_flat, "image/webp", 2, "lossless 6324x6324 one colour", webp_lossless_flat),
    Kind("webp_frame_flood", webp_frame_flood, "image/webp", 4, "animated 64x64, 400,000 one-pixel frames",
         lambda: webp_frame_flood(20_000)),
]
#: What the load test floods with (not the APNG and the RLE literals: after the fix they are no
#: harder to decode than ordinary pictures of their size, so a flood of them is an ordinary flood).
LOAD_KINDS: List[Kind] = [k for k in KINDS if k.load is not None]


def kinds(names: Optional[Iterable[str]] = None) -> List[Kind]:
    """The catalogue, or the named part of it."""
    if names is None:
        return list(KINDS)
    wanted = set(names)
    return [k for k in KINDS if k.name in wanted]




# ---- load: hostile clients next to a normal one --------------------------------------------------

@dataclass
class LoadResult:
    """One window of a normal client's requests, with or without hostile clients beside it."""

    kind: str  # "" for quiet
    normal_ms: List[float]
    normal_statuses: Dict[int, int]
    hostile_statuses: Dict[int, int]
    hostile_ms: List[float]

    @property
    def median_ms(self) -> float:
        ordered = sorted(self.normal_ms)
        return ordered[len(ordered) // 2] if ordered else float("nan")


def _post(conn, path: str, body: bytes, ctype: str, sent: Optional[Callable[[], None]] = None) -> int:
    conn.request("POST", path, body=body, headers={"Content-Type": ctype})
    if sent is not None:  # the whole request is in the socket: the host has it to work on
        sent()
    response = conn.getresponse()
    response.read()
    return response.status


def _hostile_clients(port: int, path: str, body: bytes, ctype: str, clients: int) -> Dict[str, object]:
    """``clients`` threads posting ``body`` back to back until stdin closes: statuses and latencies.
    Prints ``ready`` once every client has sent its first request (the load is running)."""
    import http.client
    import sys
    import threading
    import time

    lock = threading.Lock()
    statuses: Dict[int, int] = {}
    latencies: List[float] = []
    stop = threading.Event()
    sent = [threading.Event() for _ in range(clients)]

    def client(first_sent: threading.Event) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    status = _post(conn, path, body, ctype, first_sent.set)
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    status = -1
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    latencies.append((time.perf_counter() - t) * 1000.0)
        finally:
            first_sent.set()  # a client that failed must not hold the others' "ready"
            conn.close()

    threads = [threading.Thread(target=client, args=(e,)) for e in sent]
    for th in threads:
        th.start()
    for e in sent:
        e.wait()
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes it: the normal client's window is over
    stop.set()
    for th in threads:
        th.join()
    return {"statuses": statuses, "ms": latencies}


def load_window(port: int, path: str, normal: bytes, seconds: float, kind: Optional[Kind] = None,
                clients: int = 4, warmup: float = 1.0) -> LoadResult:
    """A normal client posting ``normal`` (JPEG) back to back for ``seconds``, while ``clients``
    hostile clients post ``kind``'s file back to back (each on its own kept-alive connection).

    The hostile clients run in another process (``python -m tests.hostile``), as they would on
    other machines: they share the CPU with everything else but not the normal client's GIL. The
    normal client starts once every hostile client has sent its first request, plus ``warmup``
    seconds (the load's steady state, for bench/bench_hostile.py's ratios), and the hostile clients
    stop only after the normal client's last answer: its whole window runs under the hostile load.
    """
    import http.client
    import json
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    proc = None
    body_file = None
    if kind is not None:
        body_file = Path(tempfile.mkstemp(prefix=f"hostile-{kind.name}-")[1])
        body_file.write_bytes(kind.load_body())
        root = Path(__file__).resolve().parent.parent
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile", str(port), path, str(body_file), kind.content_type,
             str(clients)],
            cwd=str(root), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.stdout.readline().strip() != "ready":  # every hostile client has sent a request
            proc.kill()
            raise RuntimeError(f"hostile clients failed: {proc.communicate()[1][-2000:]}")
        time.sleep(warmup)  # the hostile load reaches its steady state (a bench figure, not a wait)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    normal_ms: List[float] = []
    normal_statuses: Dict[int, int] = {}
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            t = time.perf_counter()
            status = _post(conn, path, normal, "image/jpeg")
            normal_ms.append((time.perf_counter() - t) * 1000.0)
            normal_statuses[status] = normal_statuses.get(status, 0) + 1
    finally:
        conn.close()
    hostile_statuses: Dict[int, int] = {}
    hostile_ms: List[float] = []
    if proc is not None:
        out, err = proc.communicate(input="", timeout=300)  # closes stdin: the hostile clients stop
        body_file.unlink()
        if proc.returncode != 0:
            raise RuntimeError(f"hostile clients failed: {err[-2000:]}")
        result = json.loads(out.strip().splitlines()[-1])
        hostile_statuses = {int(k): v for k, v in result["statuses"].items()}
        hostile_ms = result["ms"]
    return LoadResult(kind.name if kind else "", normal_ms, normal_statuses, hostile_statuses, hostile_ms)


if __name__ == "__main__":  # the hostile clients of load_window, in their own process
    import json as _json
    import sys as _sys

    _port, _path, _file, _ctype, _clients = _sys.argv[1:6]
    with open(_file, "rb") as _f:
        _body = _f.read()
    print(_json.dumps(_hostile_clients(int(_port), _path, _body, _ctype, int(_clients))))
