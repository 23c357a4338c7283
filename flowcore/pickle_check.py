"""Why `torch.load(..., weights_only=True)` refused a file: it imports Python objects, or it is broken.

Nothing here runs the file: it reads torch's error message and, where that is not enough, the
pickle opcodes (`pickletools.genops`, a parser that executes nothing).

- torch's weights-only reader names a refused import itself ("GLOBAL os.system was not an
  allowed global"), for the GLOBAL opcode of `torch.save` and of pickle protocols 0-3;
- where it stopped earlier, at an opcode it does not implement ("Unsupported operand": the
  STACK_GLOBAL of protocols 4-5, INST, or anything before the import), the file's pickle is read
  the way torch reads it (the `data.pkl` of a zip archive, or the file itself) for an import of a
  dotted name that torch's reader would not allow.

A name must look like Python (`module.sub`, `Class.attr`): random or damaged bytes that happen to
hold an import opcode almost never spell one, so they are called broken, not malicious (before
this check about 1 random file in 80 was called malicious).
"""

from __future__ import annotations

import io
import pickletools
import re
import struct
import zipfile
from pathlib import Path

_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+?)\.? (?:was not an allowed global|whose module)")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
_NO_PUSH = {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "STOP"}
_ZIP_MAGIC = b"PK\x03\x04"  # what torch checks to choose its zip reader over the legacy one


def refuses_import(path: Path, message: str) -> bool:
    """Whether torch's refusal `message` for `path` was about importing a named Python object."""
    named = _REFUSED_GLOBAL.search(message)
    if named is not None:
        return _DOTTED.fullmatch(named.group(1)) is not None
    if "Unsupported operand" not in message:
        return False
    try:
        streams = _pickle_streams(path)
    except Exception:  # noqa: BLE001 - unreadable means broken, not malicious
        return False
    return any(_imports_a_name(stream) for stream in streams)


def _pickle_streams(path: Path) -> list[bytes]:
    """The bytes torch unpickles: each `*.pkl` of a zip archive, or the whole (legacy) file."""
    data = path.read_bytes()
    if not data.startswith(_ZIP_MAGIC):
        return [data]
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [_member(z, data, info) for info in z.infolist() if info.filename.endswith(".pkl")]


def _member(z: zipfile.ZipFile, data: bytes, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes; a stored member is sliced out directly, as torch reads it (no CRC check)."""
    if info.compress_type != zipfile.ZIP_STORED:
        return z.read(info)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    return data[start : start + info.compress_size]


def _allowed_globals() -> set[str]:
    """What torch's weights-only reader imports itself (tensors, storages, OrderedDict): a damaged
    `torch.save` file holds those and is still only damaged. Empty where torch does not say."""
    try:
        from torch import _weights_only_unpickler as reader
        return set(reader._get_allowed_globals()) | set(reader._get_user_allowed_globals())
    except Exception:  # noqa: BLE001 - a private helper: without it every import counts
        return set()


def _imports_a_name(stream: bytes) -> bool:
    """Whether the pickles at the start of `stream` import a dotted name torch would not allow.

    Consecutive pickles are read (a legacy `torch.save` file is several), up to the first byte
    that does not parse."""
    buf = io.BytesIO(stream)
    pushed: list[object] = []  # what the opcodes so far pushed: strings, else None
    memo: dict[int, object] = {}
    allowed = _allowed_globals()
    try:
        while buf.tell() < len(stream):
            for op, arg, _ in pickletools.genops(buf):
                name = op.name
                if name in _STRINGS:
                    pushed.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
                elif name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = pushed[-1] if pushed else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(arg))
                elif name == "STACK_GLOBAL" and len(pushed) >= 2 and _refused_name(
                        f"{pushed[-2]} {pushed[-1]}", allowed) and all(_dotted(v) for v in pushed[-2:]):
                    return True
                elif name in ("GLOBAL", "INST") and _refused_name(arg, allowed):
                    return True
                elif name not in _NO_PUSH:
                    pushed.append(None)
    except Exception:  # noqa: BLE001 - the rest does not parse: stop reading
        pass
    return False


def _refused_name(arg: object, allowed: set[str]) -> bool:
    """For GLOBAL / INST, whose argument is "module name": a dotted name outside `allowed`."""
    parts = arg.split(" ") if isinstance(arg, str) else []
    return len(parts) == 2 and all(_dotted(v) for v in parts) and ".".join(parts) not in allowed


def _dotted(value: object) -> bool:
    return isinstance(value, str) and _DOTTED.fullmatch(value) is not None
