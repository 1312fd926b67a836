"""Cheap structural checks that bound the decoding work a file can ask for, before any decoder runs.

The byte and pixel limits bound what a picture *is*; they do not bound how much work decoding it
takes. Some format features cost time (or Python-level loops in Pillow) per scan, chunk, tile or
directory entry rather than per pixel, so a small file inside every limit could keep a worker busy
for a minute. Each check here walks the file's structure (never its pixel data) in time
proportional to the number of structures it allows, and refuses a file that asks for more:

- JPEG: at most ``MAX_JPEG_SCANS`` scans and ``MAX_JPEG_SEGMENTS`` marker segments, a file of
  several scans (progressive) at most ``MAX_JPEG_COEFFICIENT_BYTES_PER_PIXEL`` bytes of
  coefficients per pixel (plus ``JPEG_COEFFICIENT_SLACK``), and in the
  header that Pillow parses in Python at most ``MAX_JPEG_DQT_BYTES`` of quantization tables and
  ``MAX_JPEG_PHOTOSHOP_BLOCKS`` Photoshop resource blocks; the file must end its last scan with
  an EOI marker (a truncated JPEG is refused, not half-decoded).
- PNG: at most ``MAX_PNG_CHUNKS`` chunks that the decoder reads, and at most
  ``MAX_PNG_INFLATED_CHUNKS`` of the chunks it inflates besides the pixels (iCCP, zTXt, iTXt).
- TIFF: at most ``MAX_TIFF_IFD_ENTRIES`` entries in each directory the decoder reads, at most
  ``MAX_TIFF_BLOCKS`` strips or tiles per plane, at most 8 bytes per stored pixel, and at most
  ``MAX_TIFF_BLOCK_BYTES`` in one decoded strip or tile of more than 4 bytes per pixel.
- WebP: at most ``MAX_WEBP_CHUNKS`` chunks (frames included; only the first frame is decoded).
- BMP: run-length encoded files are reported, so they go to OpenCV's C decoder (Pillow's is Python).

A refused file gets 413 ``image_too_complex`` (or 415 ``invalid_image`` when it is broken), in
milliseconds. See ``sniff`` for the formats recognised.
"""
from __future__ import annotations

import re
import struct
from typing import Dict, List, Tuple

from shared.errors import ImageTooComplex, InvalidImage

#: Scans in one JPEG. Real encoders write few: libjpeg's simple progression writes 10 scans for
#: YCbCr, 6 for grey and 18 for CMYK; mozjpeg picks its scans from 64 candidates. libtiff refuses
#: JPEG-compressed TIFF strips with more than 100 (LIBTIFF_JPEG_MAX_ALLOWED_SCAN_NUMBER); we use the
#: same bound. Each scan is a pass over every block of its components (~4 ns per block here), so
#: 100 scans of a 40 MP picture cost about as much again as decoding it once; 12,000 cost 25 s.
MAX_JPEG_SCANS = 100
#: Marker segments (APPn, DQT, DHT, SOS, COM, ...) in one JPEG: real files have tens (a progressive
#: one ~2 per scan, an ICC profile one per 64 KB). Pillow reads the header segments one by one in
#: Python (~1.5 us each), so a million empty COM segments cost ~1.6 s.
MAX_JPEG_SEGMENTS = 1024
#: Coefficient memory of a JPEG of several scans (progressive), per pixel: libjpeg keeps every
#: coefficient of the whole picture while it decodes, 2 bytes per sample of every component
#: (sampling factors counted). 3 components without subsampling take 6 bytes per pixel (decode
#: peak 3 x the decoded picture, the largest accepted); a progressive CMYK picture takes 8 (3.7 x),
#: so it is refused beyond what ``JPEG_COEFFICIENT_SLACK`` allows (about 8 MP). Baseline (one scan)
#: files are decoded row by row and are not bounded by this.
MAX_JPEG_COEFFICIENT_BYTES_PER_PIXEL = 6
JPEG_COEFFICIENT_SLACK = 16 << 20
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Bytes of quantization tables before the first scan: a JPEG needs at most 4 tables (65 or 129
#: bytes each). Pillow parses the header's tables one by one in Python (~2 us each), so 18 MB of
#: DQT segments cost ~1 s.
MAX_JPEG_DQT_BYTES = 65536
#: Photoshop resource blocks (APP13 "8BIM") before the first scan: Photoshop writes tens. Pillow
#: parses each in Python (~1.5 us): 300 segments of 5,400 empty blocks cost ~0.8 s.
MAX_JPEG_PHOTOSHOP_BLOCKS = 4096
#: PNG chunks the decoder reads (for an animated PNG, those of the first frame). libpng writes IDAT
#: in 8 KiB pieces by default: ~2,600 chunks for a file at the 20 MiB body limit. Pillow handles
#: each chunk in Python (~2.5 us), so a million empty chunks cost ~2.5 s.
MAX_PNG_CHUNKS = 10_000
#: PNG chunks that are inflated besides the pixels (iCCP, zTXt, iTXt). Pillow inflates each up to
#: 1 MB; the PNG spec allows one iCCP, and real files have a handful of text chunks. 64 matches
#: Pillow's own total text budget (MAX_TEXT_MEMORY = 64 chunks' worth).
MAX_PNG_INFLATED_CHUNKS = 64
#: RIFF chunks in a WebP (an animated one has a chunk per frame, plus a handful): libwebp's demuxer,
#: run by Pillow and by OpenCV, walks every chunk: 400,000 one-pixel frames cost ~0.2 s.
MAX_WEBP_CHUNKS = 10_000
#: Entries in one TIFF directory: a baseline TIFF has ~15-30, an EXIF directory ~70, a DNG ~150.
#: Pillow parses each entry in Python (~8 us), so a 65,000-entry directory costs ~0.5 s.
MAX_TIFF_IFD_ENTRIES = 512
#: Strips or tiles per plane: one strip per row of the tallest allowed picture (16384), or 64x64
#: tiles over 40 M pixels (~9,800). Pillow handles uncompressed ones one by one in Python (~8 us).
MAX_TIFF_BLOCKS = 16384
#: Bytes per stored TIFF pixel (samples x bits / 8): 8 = 16-bit RGBA. libtiff decodes a whole strip
#: into one buffer, so this bounds that buffer to 8 bytes per pixel.
MAX_TIFF_BYTES_PER_PIXEL = 8
#: Decoded bytes in one TIFF strip or tile of more than 4 bytes per pixel (16-bit RGB or RGBA):
#: libtiff decodes a whole strip into one buffer beside Pillow's 4-byte picture, so a 40 MP 16-bit
#: RGBA picture in one strip holds 320 MB more while it decodes (4 x the picture, the largest
#: decode peak of any format). 16-bit writers (libtiff aims at 8 KB strips, Pillow at 64 KB,
#: Photoshop and scanners write strips too) stay far below; 8-bit files in one strip (older
#: Pillow wrote those) are left alone: their strip is at most Pillow's picture.
MAX_TIFF_BLOCK_BYTES = 64 << 20

SUPPORTED = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")
_UNSUPPORTED_MAGIC: Tuple[Tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"\x00\x00\x01\x00", "ICO"), (b"%PDF", "PDF"),
    (b"8BPS", "PSD"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"), (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
)
_TIFF_MAGIC = (b"MM\x00\x2a", b"II\x2a\x00", b"MM\x2a\x00", b"II\x00\x2a", b"MM\x00\x2b", b"II\x2b\x00")
_SUPPORTED_LIST = "JPEG, PNG, BMP, WebP or TIFF"


def sniff(data: bytes) -> str:
    """The format of ``data`` from its magic bytes (one of ``SUPPORTED``); 415 otherwise."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in _TIFF_MAGIC:
        return "TIFF"
    if head[4:12] in (b"ftypavif", b"ftypheic", b"ftypheix", b"ftypmif1"):
        raise InvalidImage(f"image format {head[8:12].decode().upper()} is not supported; "
                           f"send {_SUPPORTED_LIST}")
    for magic, name in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            raise InvalidImage(f"image format {name} is not supported; send {_SUPPORTED_LIST}")
    raise InvalidImage(f"the data is not a supported image ({_SUPPORTED_LIST})")


def check(fmt: str, data: bytes) -> bool:
    """Walk the structure of ``data`` (format ``fmt``); 413/415 when it asks for too much work.
    Returns the one fact the decoder needs: True for a run-length encoded BMP."""
    if fmt == "JPEG":
        check_jpeg(data)
    elif fmt == "PNG":
        check_png(data)
    elif fmt == "TIFF":
        check_tiff(data)
    elif fmt == "BMP":
        return bmp_is_rle(data)
    elif fmt == "WEBP":
        check_webp(data)
    return False


# ---- JPEG ----------------------------------------------------------------------------------------

# Inside entropy-coded data every 0xFF is followed by 0x00 (stuffing) or a restart marker
# (0xD0-0xD7); any other 0xFF xx is the next marker (0xFF 0xFF being fill bytes before it).
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def check_jpeg(data: bytes, strict: bool = True) -> int:
    """Number of scans; 415 when truncated or corrupt, 413 when over the scan or segment bound.
    With ``strict`` False (a JPEG stream inside a TIFF strip, which libtiff reads leniently), a
    structural problem just ends the count.

    Walks marker segments by their lengths (so APPn blocks, with their EXIF thumbnails and
    markers of their own, are skipped whole) and each scan's entropy-coded data up to the next
    marker (a regular-expression search: C speed). Stops at the EOI that ends the last scan;
    whatever follows it (trailers, an MPO's further pictures) is not the main picture.
    """
    try:
        return _walk_jpeg(data)
    except InvalidImage:
        if strict:
            raise
        return 0


def _walk_jpeg(data: bytes) -> int:
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise InvalidImage("the JPEG image is truncated or corrupt")
    pos, scans, segments, dqt_bytes, photoshop_blocks = 2, 0, 0, 0, 0
    coefficients = (0, 0)  # (bytes libjpeg keeps for a multi-scan file, the bound for its size)
    while True:
        if pos + 2 > n:
            raise InvalidImage("the JPEG image is truncated or corrupt")
        if data[pos] != 0xFF:
            if not scans:  # before the first scan every segment must follow the previous one
                raise InvalidImage("the JPEG image is truncated or corrupt")
            # between scans libjpeg skips stray bytes up to the next marker (with a warning)
            found = _ENTROPY_END.search(data, pos)
            if found is None:
                raise InvalidImage("the JPEG image is truncated or corrupt")
            pos = found.start()
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            if not scans:
                raise InvalidImage("the JPEG image has no image data")
            if scans > 1 and coefficients[0] > coefficients[1]:
                raise ImageTooComplex(
                    f"the JPEG image of {scans} scans keeps {coefficients[0] >> 20} MiB of coefficients "
                    f"while it decodes; the limit for its size is {coefficients[1] >> 20} MiB (a "
                    "progressive CMYK picture above ~8 MP: save it as baseline)")
            return scans
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ImageTooComplex(f"the JPEG image has more than {MAX_JPEG_SEGMENTS} marker segments")
        if pos + 4 > n:
            raise InvalidImage("the JPEG image is truncated or corrupt")
        end = pos + 2 + ((data[pos + 2] << 8) | data[pos + 3])
        if end > n or end < pos + 4:
            raise InvalidImage("the JPEG image is truncated or corrupt")
        if marker != 0xDA:
            if marker in _SOF_MARKERS and not coefficients[1]:
                coefficients = _coefficient_bytes(data, pos + 4, end)
            if not scans and marker == 0xDB:
                dqt_bytes += end - pos - 4
                if dqt_bytes > MAX_JPEG_DQT_BYTES:
                    raise ImageTooComplex("the JPEG image has more than "
                                          f"{MAX_JPEG_DQT_BYTES} bytes of quantization tables")
            elif not scans and marker == 0xED and data[pos + 4:pos + 18] == b"Photoshop 3.0\x00":
                photoshop_blocks += bytes(data[pos + 18:end]).count(b"8BIM")
                if photoshop_blocks > MAX_JPEG_PHOTOSHOP_BLOCKS:
                    raise ImageTooComplex("the JPEG image has more than "
                                          f"{MAX_JPEG_PHOTOSHOP_BLOCKS} Photoshop resource blocks")
            pos = end
            continue
        scans += 1
        if scans > MAX_JPEG_SCANS:
            raise ImageTooComplex(f"the JPEG image has more than {MAX_JPEG_SCANS} scans "
                                  "(real encoders write at most a few tens)")
        found = _ENTROPY_END.search(data, end)
        if found is None:
            raise InvalidImage("the JPEG image is truncated or corrupt")
        pos = found.start()


def _coefficient_bytes(data: bytes, at: int, end: int) -> Tuple[int, int]:
    """(bytes libjpeg's whole-picture coefficient buffer takes, the bound for the picture's size)
    for the frame header (SOFn body) at ``at``: 128 bytes per 8x8 block of every component,
    MCU-padded as libjpeg allocates it."""
    if at + 6 > end:
        return 0, 0
    height, width, count = (data[at + 1] << 8) | data[at + 2], (data[at + 3] << 8) | data[at + 4], data[at + 5]
    factors = [(data[at + 6 + 3 * i + 1] >> 4, data[at + 6 + 3 * i + 1] & 15) for i in range(count)
               if at + 6 + 3 * i + 2 < end]
    if not factors:
        return 0, 0
    h_max, v_max = max(1, max(h for h, _ in factors)), max(1, max(v for _, v in factors))
    mcu_cols, mcu_rows = -(-width // (8 * h_max)), -(-height // (8 * v_max))
    kept = sum(mcu_cols * h * mcu_rows * v * 128 for h, v in factors)
    bound = MAX_JPEG_COEFFICIENT_BYTES_PER_PIXEL * (mcu_cols * 8 * h_max) * (mcu_rows * 8 * v_max)
    return kept, bound + JPEG_COEFFICIENT_SLACK


# ---- PNG -----------------------------------------------------------------------------------------

_INFLATED = (b"iCCP", b"zTXt", b"iTXt")


def check_png(data: bytes) -> int:
    """Number of chunks the decoder will read; 413 when over ``MAX_PNG_CHUNKS`` or the inflated bound.

    Mirrors what Pillow reads for the first frame: every chunk up to IEND, or for an animated PNG
    up to the first frame-control chunk after the first image data. A truncated file just ends
    the walk (the decoder decides whether what is there is enough).
    """
    n, pos, chunks, inflated = len(data), 8, 0, 0
    animated = seen_data = False
    unpack = struct.unpack_from
    while pos + 8 <= n:
        length, kind = unpack(">I4s", data, pos)
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise ImageTooComplex(f"the PNG image has more than {MAX_PNG_CHUNKS} chunks")
        if kind == b"IEND":
            break
        if kind in _INFLATED:
            inflated += 1
            if inflated > MAX_PNG_INFLATED_CHUNKS:
                raise ImageTooComplex(f"the PNG image has more than {MAX_PNG_INFLATED_CHUNKS} "
                                      "compressed profile or text chunks")
        elif kind == b"acTL":
            animated = True
        elif kind == b"IDAT":
            seen_data = True
        elif kind == b"fcTL" and animated and seen_data:
            break  # the next frame: the decoder stops here for the first one
        pos += 12 + length
    return chunks


# ---- WebP ----------------------------------------------------------------------------------------

def check_webp(data: bytes) -> int:
    """Number of RIFF chunks; 413 when over ``MAX_WEBP_CHUNKS``. A truncated file ends the walk."""
    n, pos, chunks = len(data), 12, 0
    while pos + 8 <= n:
        size = struct.unpack_from("<I", data, pos + 4)[0]
        chunks += 1
        if chunks > MAX_WEBP_CHUNKS:
            raise ImageTooComplex(f"the WebP image has more than {MAX_WEBP_CHUNKS} chunks (frames)")
        pos += 8 + size + (size & 1)
    return chunks


# ---- TIFF ----------------------------------------------------------------------------------------

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
               16: 8, 17: 8, 18: 8}
_INT_FORMATS = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}
_SUB_IFDS = (34665, 34853, 40965)  # Exif, GPS, Interoperability: Pillow reads these too
_IFD = Dict[int, Tuple[int, int, int]]  # tag -> (type, count, offset of the value bytes)


class _Tiff:
    """Just enough of a TIFF (or BigTIFF) reader to count directory entries and blocks."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.endian = "<" if data[:2] == b"II" else ">"
        self.big = data[2:4] in (b"\x2b\x00", b"\x00\x2b")
        self.first = self._uint(8 if self.big else 4, 8 if self.big else 4)

    def _uint(self, pos: int, size: int) -> int:
        if pos < 0 or pos + size > len(self.data):
            raise IndexError(pos)
        return struct.unpack_from(self.endian + {2: "H", 4: "I", 8: "Q"}[size], self.data, pos)[0]

    def ifd(self, offset: int) -> Tuple[_IFD, int]:
        """(entries, offset of the next directory) of the directory at ``offset``."""
        count_size, entry_size, value_size = (8, 20, 8) if self.big else (2, 12, 4)
        count = self._uint(offset, count_size)
        if count > MAX_TIFF_IFD_ENTRIES:
            raise ImageTooComplex(f"a TIFF directory has {count} entries; the limit is "
                                  f"{MAX_TIFF_IFD_ENTRIES}")
        entries: _IFD = {}
        base = offset + count_size
        for i in range(count):
            at = base + i * entry_size
            tag, kind = self._uint(at, 2), self._uint(at + 2, 2)
            n = self._uint(at + 4, value_size)
            size = _TYPE_SIZES.get(kind, 1) * n
            value_at = at + 4 + value_size
            entries[tag] = (kind, n, value_at if size <= value_size else self._uint(value_at, value_size))
        return entries, self._uint(base + count * entry_size, value_size)

    def ints(self, entries: _IFD, tag: int, default: List[int], limit: int = 16) -> List[int]:
        """The first ``limit`` integer values of ``tag`` (``default`` when absent or not integers)."""
        if tag not in entries:
            return default
        kind, n, at = entries[tag]
        fmt = _INT_FORMATS.get(kind)
        if fmt is None or n == 0:
            return default
        n = min(n, limit)
        size = struct.calcsize(fmt)
        if at + n * size > len(self.data):
            return default
        return list(struct.unpack_from(f"{self.endian}{n}{fmt}", self.data, at))


def check_tiff(data: bytes) -> int:
    """Strips or tiles of the first page; 413 when a directory, the block count or the stored pixel
    size is over its bound. A file too broken to walk is left to the decoder (which refuses it)."""
    try:
        tiff = _Tiff(data)
        ifd0, next_ifd = tiff.ifd(tiff.first)
        if next_ifd:  # Pillow reads the second directory to know whether there are more pages
            tiff.ifd(next_ifd)
        exif_ifd = None
        for tag in _SUB_IFDS:
            pointer = tiff.ints(ifd0, tag, [0], 1)[0]
            if pointer:
                entries, _ = tiff.ifd(pointer)
                exif_ifd = entries if tag == 34665 else exif_ifd
        if exif_ifd is not None and tiff.ints(exif_ifd, 40965, [0], 1)[0]:
            tiff.ifd(tiff.ints(exif_ifd, 40965, [0], 1)[0])
    except (IndexError, KeyError, struct.error):
        return 0
    samples = tiff.ints(ifd0, 277, [1], 1)[0]
    bits = tiff.ints(ifd0, 258, [1], 64)
    stored_bits = samples * max(bits or [1])
    if stored_bits > MAX_TIFF_BYTES_PER_PIXEL * 8:
        raise ImageTooComplex(f"the TIFF image stores {stored_bits} bits per pixel; the limit is "
                              f"{MAX_TIFF_BYTES_PER_PIXEL * 8}")
    planes = samples if tiff.ints(ifd0, 284, [1], 1)[0] == 2 else 1
    offsets_tag, counts_tag = (324, 325) if 324 in ifd0 else (273, 279)
    blocks = ifd0[offsets_tag][1] if offsets_tag in ifd0 else 0
    if blocks > MAX_TIFF_BLOCKS * planes:
        raise ImageTooComplex(f"the TIFF image has {blocks} strips or tiles; the limit is "
                              f"{MAX_TIFF_BLOCKS * planes}")
    width = tiff.ints(ifd0, 256, [0], 1)[0]
    height = tiff.ints(ifd0, 257, [0], 1)[0]
    if offsets_tag == 324:
        block_w, block_h = tiff.ints(ifd0, 322, [width], 1)[0], tiff.ints(ifd0, 323, [height], 1)[0]
    else:
        block_w, block_h = width, min(height, tiff.ints(ifd0, 278, [height], 1)[0] or height)
    block_bytes = block_w * block_h * stored_bits // (8 * planes)
    if stored_bits > 32 and block_bytes > MAX_TIFF_BLOCK_BYTES:
        raise ImageTooComplex(f"a strip or tile of the TIFF image decodes to {block_bytes >> 20} MiB; "
                              f"the limit is {MAX_TIFF_BLOCK_BYTES >> 20} MiB at more than 32 bits per "
                              "pixel (write smaller strips)")
    compression = tiff.ints(ifd0, 259, [1], 1)[0]
    if compression == 6:
        raise InvalidImage("old-style JPEG compression in TIFF (compression 6, obsolete since 1995) "
                           "is not supported")
    if compression == 7:  # each strip or tile is a JPEG stream: the scan bound applies to each
        offsets = tiff.ints(ifd0, offsets_tag, [], blocks)
        counts = tiff.ints(ifd0, counts_tag, [], blocks)
        view = memoryview(data)
        for offset, count in zip(offsets, counts):
            check_jpeg(view[offset:offset + count], strict=False)
    return blocks


# ---- BMP -----------------------------------------------------------------------------------------

def bmp_is_rle(data: bytes) -> bool:
    """True for a run-length encoded BMP (BI_RLE8 or BI_RLE4)."""
    if len(data) < 34:
        return False
    header_size = struct.unpack_from("<I", data, 14)[0]
    if header_size < 40:  # OS/2 1.x header: no compression field
        return False
    return struct.unpack_from("<I", data, 30)[0] in (1, 2)
