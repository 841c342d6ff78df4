"""Small deterministic helpers shared by the demo writers: CSV output, ids, colours, random streams."""
from __future__ import annotations

import colorsys
import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

#: Cells of the basal ganglia release are stamped with this processing date in their labels.
LABEL_DATE = "20250227"


def stream(seed: int, *names: str) -> np.random.Generator:
    """An independent random stream for ``(seed, names)``.

    Each part of the demo draws from its own stream, so adding or reordering parts never changes the
    bytes of another part (and the same seed always gives the same files).
    """
    key = hashlib.sha256("/".join(names).encode()).digest()
    words = [int.from_bytes(key[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words]))


def stable_int(text: str, digits: int) -> int:
    """A number of ``digits`` digits derived from ``text`` (same text, same number, any seed)."""
    h = int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "little")
    return 10 ** (digits - 1) + h % (9 * 10 ** (digits - 1))


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` as pandas' ``to_csv(index=False)`` would (the release's style), but fast.

    Large tables go through Arrow's CSV writer with pandas' text forms (``True``/``False``, ``3405.0``,
    empty for missing); tables with commas or quotes inside values, and small ones, use pandas itself.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    table = _arrow_table(df) if len(df) >= 20_000 else None
    if table is None:
        df.to_csv(path, index=False, lineterminator="\n")
        return path
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(list(df.columns))
    with open(path, "wb") as fh:
        fh.write(header.getvalue().encode())
        pacsv.write_csv(table, fh, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return path


def append_csv(df: pd.DataFrame, path: Path, header: bool) -> Path:
    """Write ``df`` as :func:`write_csv` does, but in pieces: ``header=True`` starts ``path`` with the column
    names, otherwise the rows are appended (a big table written chunk by chunk, in bounded memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb" if header else "ab") as fh:
        if header:
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerow(list(df.columns))
            fh.write(text.getvalue().encode())
        table = _arrow_table(df) if len(df) else None
        if table is not None:
            pacsv.write_csv(table, fh, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
        elif len(df):
            fh.write(df.to_csv(index=False, header=False, lineterminator="\n").encode())
    return path


def _arrow_table(df: pd.DataFrame):
    """An all-text Arrow table printing like pandas, or ``None`` when a value would need quoting."""
    arrays = []
    for name in df.columns:
        col = df[name]
        values = col.to_numpy()
        if col.dtype == bool:
            arrays.append(pa.array(np.where(values, "True", "False")))
        elif col.dtype.kind == "f":
            nan = np.isnan(values)
            text = pc.cast(pa.array(values), pa.string())
            if pc.any(pc.match_substring_regex(text, "[eE]|inf")).as_py():
                return None
            integral = pc.match_substring_regex(text, r"^-?[0-9]+$")
            text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
            arrays.append(pc.if_else(pa.array(nan), pa.scalar(None, pa.string()), text))
        elif col.dtype.kind in "iu":
            arrays.append(pa.array(values))
        else:
            arr = pa.array(values, from_pandas=True)
            if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
                return None
            if pc.any(pc.match_substring_regex(arr, '[,"\\n\\r]')).as_py():
                return None
            arrays.append(arr)
    return pa.table(arrays, names=[str(c) for c in df.columns])


def uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random version-4 UUID strings (object array), e.g. ``ddc7b0c5-1bb0-4f02-a1e4-ddacac84c9aa``."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = [r.tobytes().hex() for r in raw]
    return np.array([f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexed], dtype=object)


def hex_color(rgb: tuple[float, float, float], upper: bool = False) -> str:
    """``#rrggbb`` (or ``#RRGGBB``) from an RGB triple in 0..1."""
    text = "#" + "".join(f"{int(round(max(0.0, min(1.0, c)) * 255)):02x}" for c in rgb)
    return text.upper() if upper else text


def palette(keys: list[str], hue_offset: float = 0.0, saturation: float = 0.65, value: float = 0.85) -> dict[str, str]:
    """Distinct, stable colours for ``keys`` (golden-angle hues), about a third written in upper case.

    The ABC tables mix ``#a8afa5`` and ``#FF3358`` styles; readers must accept both.
    """
    out = {}
    for i, key in enumerate(keys):
        h = (hue_offset + i * 0.61803398875) % 1.0
        jitter = (stable_int(key, 6) % 1000) / 1000.0
        s = min(1.0, saturation * (0.75 + 0.4 * jitter))
        v = min(1.0, value * (0.8 + 0.25 * ((jitter * 7) % 1.0)))
        out[key] = hex_color(colorsys.hsv_to_rgb(h, s, v), upper=stable_int("case" + key, 4) % 3 == 0)
    return out


def letters_id(rng: np.random.Generator, n: int, length: int = 8, alphabet: str = "abcdefghijklmnop") -> np.ndarray:
    """``n`` distinct lower-case ids like Xenium cell ids (``abmkfncc``)."""
    codes = np.frombuffer(alphabet.encode(), dtype=np.uint8)
    ids = np.ascontiguousarray(codes[rng.integers(0, len(codes), size=(n, length))]).view(f"S{length}").ravel()
    while True:
        _, first = np.unique(ids, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        if not len(dup):
            break
        ids[dup] = np.ascontiguousarray(codes[rng.integers(0, len(codes), size=(len(dup), length))]
                                        ).view(f"S{length}").ravel()
    return ids.astype(str).astype(object)
