"""Lossless compressed chunks of one gene's entries: delta-coded cell rows and float32 values, Blosc (LZ4, bit
shuffle) per chunk.

A chunk holds the entries of one gene whose store rows fall in ``[c * chunk_rows, (c + 1) * chunk_rows)``, as
uint32 words: a header of 8 words (the entry count ``n``, then zeros), ``n`` row deltas (the first from the
chunk's first row; deltas wrap modulo 2**32, so any order decodes exactly) and ``n`` float32 values, each of
the two padded with zeros to a multiple of 8 words (Blosc's bit shuffle is silently skipped otherwise), then
bit-shuffled with a 4-byte type size and compressed by Blosc's LZ4. Sorted rows give small deltas whose high
bits are zero, which the bit shuffle turns into long runs: rows cost about 0.5-1.5 bytes per entry instead of 4,
and a chunk decodes at 1-3 GB/s. The values are the source's float32 bits, so nothing is rounded.
"""
from __future__ import annotations

import numba
import numpy as np
from numcodecs import Blosc, blosc

# Chunks are small and many processes or server threads decode at once: Blosc's own thread pool would only add
# buffers and contention.
blosc.use_threads = False

#: Store rows per chunk: a section of a spatial dataset (about 200 k cells) decodes one or two chunks of a gene.
CHUNK_ROWS = 1 << 18
#: The codec, as numcodecs writes its configuration into ``expression.json``.
CODEC = Blosc(cname="lz4", clevel=5, shuffle=Blosc.BITSHUFFLE, typesize=4, blocksize=0)
_CNAME = CODEC.cname.encode() if isinstance(CODEC.cname, str) else CODEC.cname


def _is_blosc(codec) -> bool:
    return isinstance(codec, Blosc)


def codec_config() -> dict:
    """The codec's numcodecs configuration (JSON), recorded with the store."""
    return CODEC.get_config()


def codec_from_config(config: dict | None):
    """The numcodecs codec of a stored configuration (the default one when None)."""
    if not config:
        return CODEC
    from numcodecs import get_codec

    return get_codec(dict(config))


def encode(rows: np.ndarray, values: np.ndarray, base: int = 0, codec=CODEC, restarts: np.ndarray | None = None
           ) -> bytes:
    """One compressed chunk.

    Parameters
    ----------
    rows : numpy.ndarray
        ``(n,)`` integer store rows (any order; sorted rows compress best).
    values : numpy.ndarray
        ``(n,)`` float32 values.
    base : int
        The row the first delta is taken from (the chunk's first store row).
    restarts : numpy.ndarray, optional
        Positions (int, ascending, > 0) where the deltas start again from ``base``: the first entry of each gene
        when a frame holds several genes (no large jump between genes); :func:`decode` needs the same.

    Returns
    -------
    bytes
        The codec's frame.
    """
    n = len(rows)
    n8 = -(-n // 8) * 8
    buf = np.zeros(8 + 2 * n8, dtype=np.uint32)
    buf[0] = n
    r = np.asarray(rows).astype(np.uint32, copy=False)
    if n:
        buf[8] = np.uint32((int(r[0]) - int(base)) & 0xFFFFFFFF)
        np.subtract(r[1:], r[:-1], out=buf[9:8 + n])  # uint32 arithmetic wraps: lossless for any order
        if restarts is not None and len(restarts):
            buf[8 + np.asarray(restarts)] = r[restarts] - np.uint32(base & 0xFFFFFFFF)
    buf[8 + n8:8 + n8 + n] = np.asarray(values, dtype=np.float32).view(np.uint32)
    if codec is CODEC:  # the module's Blosc directly: a fraction of the per-call overhead of the codec object
        return blosc.compress(buf, _CNAME, CODEC.clevel, CODEC.shuffle, CODEC.blocksize)
    return bytes(codec.encode(buf))


def encode_many(rows: np.ndarray, values: np.ndarray, bounds: np.ndarray, bases: np.ndarray,
                words: np.ndarray | None = None) -> list[bytes]:
    """Many chunks at once, each exactly what :func:`encode` gives for it (no restarts, the module's codec):
    chunk i holds ``rows[bounds[i]:bounds[i + 1]]`` and their values, deltas from ``bases[i]``. Every chunk's
    words are laid out by one compiled pass into one buffer (``words``, uint32, when given and large enough:
    see :func:`frame_starts`), then each is compressed (:func:`compress_frames`).

    Returns
    -------
    list of bytes
        ``len(bounds) - 1`` frames; ``b""`` for an empty chunk.
    """
    bounds = np.asarray(bounds, dtype=np.int64)
    frame_start = frame_starts(np.diff(bounds))
    total = int(frame_start[-1])
    words = np.empty(total, dtype=np.uint32) if words is None or len(words) < total else words[:total]
    if len(words):
        _lay_out_frames(np.asarray(rows), np.ascontiguousarray(values, dtype=np.float32).view(np.uint32), bounds,
                        np.asarray(bases, dtype=np.int64), frame_start, words)
    return compress_frames(words, frame_start)


def frame_starts(counts: np.ndarray) -> np.ndarray:
    """Word offsets of consecutive frames of ``counts`` entries each in a laid-out buffer (int64
    ``(len(counts) + 1,)``): a frame of n > 0 entries takes 8 + 2 * ceil8(n) words, an empty one none."""
    counts = np.asarray(counts, dtype=np.int64)
    words = np.where(counts > 0, 8 + 2 * (-(-counts // 8) * 8), 0)
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(words, out=out[1:])
    return out


@numba.njit(cache=True, nogil=True)
def frame_headers(words, frame_start, counts):  # pragma: no cover - compiled
    """Write each non-empty frame's header (its count, then zeros) and the zero padding after its deltas and
    its values into a laid-out buffer (``frame_start`` from :func:`frame_starts` of ``counts``); the deltas and
    values themselves are left to the caller."""
    for i in range(len(counts)):
        n = counts[i]
        if n == 0:
            continue
        w = frame_start[i]
        n8 = (n + 7) // 8 * 8
        words[w] = np.uint32(n)
        for j in range(1, 8):
            words[w + j] = 0
        for j in range(n, n8):
            words[w + 8 + j] = 0
            words[w + 8 + n8 + j] = 0


def compress_frames(words: np.ndarray, frame_start: np.ndarray, clevel: int | None = None) -> list[bytes]:
    """Compress each laid-out frame ``words[frame_start[i]:frame_start[i + 1]]`` (uint32) with the module's
    codec: the bytes :func:`encode` gives for the same words; ``b""`` for an empty frame. ``clevel``: another
    compression level of the same codec (frames any Blosc decompression reads; not the store's bytes)."""
    compress, cname, shuffle, blocksize = blosc.compress, _CNAME, CODEC.shuffle, CODEC.blocksize
    level = CODEC.clevel if clevel is None else int(clevel)
    starts = np.asarray(frame_start, dtype=np.int64).tolist()
    return [compress(words[a:b], cname, level, shuffle, blocksize) if b > a else b""
            for a, b in zip(starts[:-1], starts[1:])]


@numba.njit(cache=True, nogil=True)
def _lay_out_frames(rows, value_bits, bounds, bases, frame_start, words):  # pragma: no cover - compiled
    """The words of each frame (header, row deltas, values, zero padding) in ``words``."""
    frame_headers(words, frame_start, bounds[1:] - bounds[:-1])
    for i in range(len(bounds) - 1):
        a = bounds[i]
        n = bounds[i + 1] - a
        if n == 0:
            continue
        w = frame_start[i]
        n8 = (n + 7) // 8 * 8
        d = w + 8
        v = d + n8
        prev = bases[i]
        for j in range(n):
            r = np.int64(rows[a + j])
            words[d + j] = np.uint32((r - prev) & 0xFFFFFFFF)  # wraps as uint32 arithmetic does in encode
            words[v + j] = value_bits[a + j]
            prev = r


def decode(frame, base: int = 0, codec=CODEC, rows_dtype=np.int64, restarts: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Rows and values of a chunk written by :func:`encode` (with the same ``base`` and ``restarts``).

    Returns
    -------
    tuple of numpy.ndarray
        ``(rows (n,) of rows_dtype (int64 or uint32), values float32 (n,))``.
    """
    raw = np.frombuffer(blosc.decompress(frame) if codec is CODEC or _is_blosc(codec) else codec.decode(frame),
                        dtype=np.uint32)
    n = int(raw[0])
    n8 = -(-n // 8) * 8
    rows = np.cumsum(raw[8:8 + n], dtype=np.uint32)
    if restarts is not None and len(restarts):
        # Each restarted run counted from 0 again: remove the sum carried over from the runs before it.
        starts = np.concatenate([[0], np.asarray(restarts, dtype=np.int64)])
        carried = np.concatenate([[0], rows[starts[1:] - 1]]).astype(np.uint32)
        rows -= np.repeat(carried, np.diff(np.append(starts, n)))
    if base:
        rows += np.uint32(base)
    return rows.astype(rows_dtype, copy=False), raw[8 + n8:8 + n8 + n].view(np.float32)
