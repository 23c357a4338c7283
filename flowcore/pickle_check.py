"""What Python object a file that `torch.load(..., weights_only=True)` refused asks for, if any.

Nothing here runs the file: it reads torch's error message and, where that names nothing, the
pickle opcodes (`pickletools.genops`, a parser that executes nothing) of the stream torch read:
the `data.pkl` of a zip archive (sliced or inflated directly: torch does not check checksums),
or the file itself (a legacy `torch.save` file is several pickles in a row).

An import counts when it names a dotted Python name (`module.sub`, `Class.attr`) that torch's
weights-only reader would not allow, through GLOBAL, INST or STACK_GLOBAL (whose two strings are
followed through a simulated stack, so POP or DUP in between do not hide them). Random or
damaged bytes that happen to hold an import opcode almost never spell such a name (before this
check about 1 random file in 80 was called malicious; a flipped letter in a legitimate file's
`torch.FloatStorage` is reported as what it now asks for). A crafted file can still hide its
import from this reading (e.g. behind an opcode variant `pickletools` parses more strictly than
the unpickler): it is refused all the same and reported as unreadable.
"""

from __future__ import annotations

import io
import mmap
import pickletools
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+?)\.? (?:was not an allowed global|whose module)")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_ZIP_MAGIC = b"PK\x03\x04"  # what torch checks to choose its zip reader over the legacy one
_MAX_INFLATED = 64 << 20  # bytes of a deflated data.pkl read at most (a zip bomb stops here)
_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
_MARK = object()


def refused_import(path: Path, message: str) -> str | None:
    """The dotted name of a Python object the refused file at `path` imports, or None."""
    named = _REFUSED_GLOBAL.search(message)
    if named is not None and _DOTTED.fullmatch(named.group(1)):
        return named.group(1)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            allowed = _allowed_globals()
            for stream in _pickle_streams(data):
                found = _imported_name(stream, allowed)
                if found is not None:
                    return found
    except Exception:  # noqa: BLE001 - unreadable (empty, a folder, not a zip after all): no import seen
        return None
    return None


def _pickle_streams(data: Any) -> Iterator[Any]:
    """The bytes torch unpickles: the `data.pkl` member(s) of a zip archive, or the whole file."""
    if data[:4] != _ZIP_MAGIC:
        yield data
        return
    with zipfile.ZipFile(data) as z:
        for info in z.infolist():
            if info.filename == "data.pkl" or info.filename.endswith("/data.pkl"):
                yield _member(data, info)


def _member(data: Any, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes as torch reads them (no checksum check); inflated up to `_MAX_INFLATED`."""
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    raw = data[start : start + info.compress_size]
    if info.compress_type == zipfile.ZIP_DEFLATED:
        return zlib.decompressobj(-15).decompress(raw, _MAX_INFLATED)
    return raw


def _allowed_globals() -> set[str]:
    """What torch's weights-only reader imports itself (tensors, storages, OrderedDict): a damaged
    `torch.save` file holds those and is only damaged. Empty where torch does not say."""
    try:
        from torch import _weights_only_unpickler as reader
        return set(reader._get_allowed_globals()) | set(reader._get_user_allowed_globals())
    except Exception:  # noqa: BLE001 - a private helper: without it every import counts
        return set()


def _imported_name(stream: Any, allowed: set[str]) -> str | None:
    """The first import of a dotted name outside `allowed` in the pickles at the start of `stream`.

    Consecutive pickles are read up to the first byte that does not parse; the stack is simulated
    from each opcode's documented effect, keeping only strings (what STACK_GLOBAL takes)."""
    buf = stream if hasattr(stream, "read") else io.BytesIO(stream)
    size = len(stream)
    stack: list[object] = []
    memo: dict[object, object] = {}
    try:
        while buf.tell() < size:
            for op, arg, _ in pickletools.genops(buf):
                found = _import_of(op.name, arg, stack, allowed)
                if found is not None:
                    return found
                _apply(op, arg, stack, memo)
    except Exception:  # noqa: BLE001 - the rest does not parse: stop reading
        pass
    return None


def _import_of(name: str, arg: object, stack: list[object], allowed: set[str]) -> str | None:
    if name in ("GLOBAL", "INST") and isinstance(arg, str):
        parts = arg.split(" ")
    elif name == "STACK_GLOBAL" and len(stack) >= 2:
        parts = [stack[-2], stack[-1]]
    else:
        return None
    if len(parts) != 2 or not all(isinstance(p, str) and _DOTTED.fullmatch(p) for p in parts):
        return None
    dotted = ".".join(parts)
    return None if dotted in allowed else dotted


def _apply(op: pickletools.OpcodeInfo, arg: object, stack: list[object], memo: dict[object, object]) -> None:
    """`op`'s effect on a stack that keeps strings and stands None for every other value."""
    name = op.name
    if name == "MEMOIZE":
        memo[len(memo)] = stack[-1] if stack else None
    elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
        memo[arg] = stack[-1] if stack else None
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        stack.append(memo.get(arg))
    elif name == "DUP":
        stack.append(stack[-1] if stack else None)
    else:
        before = op.stack_before
        if pickletools.markobject in before:  # pops everything down to the mark, the mark, then more
            while stack and stack[-1] is not _MARK:
                stack.pop()
            if stack:
                stack.pop()
            below = before.index(pickletools.markobject)
        else:
            below = len(before)
        del stack[max(0, len(stack) - below):]
        for kind in op.stack_after:
            stack.append(_MARK if kind is pickletools.markobject else arg if name in _STRINGS
                         and isinstance(arg, str) else None)
