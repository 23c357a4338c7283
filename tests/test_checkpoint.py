"""The checkpoint format: exact round trips, atomic writes, and refusal of anything unsafe or broken."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import random
import tarfile
import zipfile
from functools import partial
from pathlib import Path

import pytest
import torch

import flowcore
from flowcore.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from flowcore.train import TrainConfig, Trainer
from tests.helpers import MarkerPickle


def tiny_flow(name: str = "realnvp", **overrides) -> flowcore.Flow:
    torch.manual_seed(0)
    flow = flowcore.build(name, (2,), hidden=16, **overrides)
    with torch.no_grad():  # not the identity it starts as
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return flow


def test_round_trip_restores_the_density_and_metadata(tmp_path):
    flow = tiny_flow("glow")
    x = flowcore.toy_data("moons", 64, 0)
    flow.train()
    flow.log_prob(x)  # ActNorm initialises from data
    path = flowcore.save(flow, tmp_path / "sub" / "m.pt", data={"name": "moons"}, note="hello")
    loaded = flowcore.load(path)
    assert not loaded.training
    assert loaded.metadata == {"data": {"name": "moons"}, "note": "hello"}
    flow.eval()
    assert torch.equal(loaded.log_prob(x), flow.log_prob(x))
    assert flowcore.load_metadata(path)["note"] == "hello"
    raw = torch.load(path, weights_only=True)  # plain types and tensors only
    assert raw["format"] == "flowcore-checkpoint" and raw["version"] == 1
    assert raw["model"] == flowcore.config_dict(flow)


def test_weights_are_stored_in_float32(tmp_path):
    flow = tiny_flow().double()
    path = flowcore.save(flow, tmp_path / "m.pt")
    state = torch.load(path, weights_only=True)["state_dict"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}


def _break_zip_checksums(data: bytes) -> bytes:
    """Flip the CRC of a zip's first member in both headers: torch does not check it, zipfile does."""
    data = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        data[data.index(signature) + offset] ^= 0xFF
    return bytes(data)


def _zip_of(content: bytes, name: str = "notes.txt", compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        z.writestr(name, content)
    return buf.getvalue()


def _stack_global_pickle(marker: str, between: bytes) -> bytes:
    """Protocol 4: open(marker, "w") through STACK_GLOBAL, with `between` after the two strings."""
    def short(text: bytes) -> bytes:
        return b"\x8c" + bytes([len(text)]) + text
    return (b"\x80\x04" + short(b"builtins") + short(b"open") + between + b"\x93"
            + short(marker.encode()) + short(b"w") + b"\x86R.")


def _dump(payload: dict, path: os.PathLike, protocol: int) -> None:
    Path(path).write_bytes(pickle.dumps(payload, protocol))


WRITERS = {
    "torch.save": lambda payload, path: torch.save(payload, path),
    "legacy torch.save": lambda payload, path: torch.save(payload, path, _use_new_zipfile_serialization=False),
    "torch.save, zip checksums broken": lambda payload, path: (torch.save(payload, path), path.write_bytes(
        _break_zip_checksums(path.read_bytes()))),
    **{f"pickle protocol {n}": partial(_dump, protocol=n) for n in range(pickle.HIGHEST_PROTOCOL + 1)},
    "pickle + junk": lambda payload, path: path.write_bytes(pickle.dumps(payload) + random.Random(0).randbytes(500)),
    "pickle + a zip archive": lambda payload, path: path.write_bytes(pickle.dumps(payload, 2) + _zip_of(b"x" * 99)),
    "protocol 0, an int first": lambda payload, path: path.write_bytes(
        b"I0\n" + pickle.dumps(payload["x"], 0).replace(b"c__builtin__", b"cbuiltins")),
    # the two strings of STACK_GLOBAL with a pushed-and-popped None between them and the import
    "protocol 4, a POP before the import": lambda payload, path: path.write_bytes(
        _stack_global_pickle(payload["x"].marker, b"N0")),
    # torch stops at SETITEM on a list before it reaches the import; the stdlib would run it
    "torch stops before the import": lambda payload, path: path.write_bytes(
        b"\x80\x02](NeK\x00Ns0" + pickle.dumps(payload["x"], 0).replace(b"c__builtin__", b"cbuiltins")),
    "zip, deflated, checksums broken": lambda payload, path: path.write_bytes(
        _break_zip_checksums(_zip_of(pickle.dumps(payload, 4), "archive/data.pkl", zipfile.ZIP_DEFLATED))),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_pickle_payload_is_refused_without_running_it(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": "flowcore-checkpoint", "version": 1, "model": {}, "state_dict": {},
               "x": MarkerPickle(str(marker))}
    WRITERS[writer](payload, path)
    for read in (flowcore.load, read_checkpoint, flowcore.load_metadata):
        with pytest.raises(CheckpointError, match=r"refusing to load .*asks for the Python object "
                                                  r"(builtins\.|io\.)?open, .*arbitrary Python objects"):
            read(path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(MarkerPickle(str(marker))))  # the payload is real: unpickling it does run
    assert marker.exists()


def test_a_damaged_legacy_checkpoint_is_corrupted_not_malicious(tmp_path):
    # a legacy torch.save file imports torch's own rebuild functions: allowed ones, not code
    path = tmp_path / "legacy.pt"
    torch.save({"format": "flowcore-checkpoint", "w": torch.arange(1000.0)}, path, _use_new_zipfile_serialization=False)
    data = bytearray(path.read_bytes())
    end = io.BytesIO(bytes(data))
    for _ in range(5):  # magic number, protocol, system info, the payload, the storage keys
        list(pickletools.genops(end))
    for where in (end.tell() - 2, end.tell() + 3):
        damaged = bytearray(data)
        damaged[where] ^= 0xFF
        path.write_bytes(bytes(damaged))
        with pytest.raises(CheckpointError, match="truncated or corrupted"):
            read_checkpoint(path)


def _real_checkpoint(tmp_path) -> os.PathLike:
    return flowcore.save(tiny_flow(), tmp_path / "good.pt")


def _with_data_pkl(checkpoint: bytes, content: bytes) -> bytes:
    """`checkpoint` (a zip torch.save file) with its pickle replaced by `content`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(checkpoint)) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            new.writestr(info, content if info.filename.endswith("/data.pkl") else old.read(info))
    return out.getvalue()


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[: len(b) // 2], "truncated or corrupted"),
    (lambda b: b[:100], "truncated or corrupted"),
    (lambda b: b"", "truncated or corrupted"),
    (lambda b: random.Random(0).randbytes(4096), "truncated or corrupted"),
    (lambda b: b"\x80\x02J\x01", "truncated or corrupted"),  # an int cut short: struct.error inside torch
    (lambda b: _with_data_pkl(b, b"\x80\x02K\x05Q."), "truncated or corrupted"),  # an int as persistent id
    (lambda b: _with_data_pkl(b, b"\x80\x02cos\ngetcwd\n)R."), "asks for the Python object os.getcwd"),
])
def test_damaged_files_are_refused(tmp_path, damage, message):
    path = _real_checkpoint(tmp_path)
    with open(path, "r+b") as f:
        data = damage(f.read())
        f.seek(0)
        f.truncate()
        f.write(data)
    with pytest.raises(CheckpointError, match=message):
        flowcore.load(path)


def test_a_changed_name_is_refused_as_what_it_now_asks_for(tmp_path):
    path = flowcore.save(tiny_flow(), tmp_path / "m.pt")
    path.write_bytes(path.read_bytes().replace(b"FloatStorage", b"GloatStorage"))
    with pytest.raises(CheckpointError, match="asks for the Python object torch.GloatStorage"):
        read_checkpoint(path)


def test_the_legacy_tar_format_is_refused_by_name(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("storages", b"\x80\x02K\x00."), ("tensors", b"\x80\x02K\x00."),
                           ("pickle", b"\x80\x02cos\ngetcwd\n)R.")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "old.pt").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="legacy .tar format, which cannot be read without running code"):
        read_checkpoint(tmp_path / "old.pt")


def test_random_bytes_are_corrupted_not_malicious(tmp_path):
    # Random bytes can start like a pickle that imports something (about 1 file in 80 did, seeds
    # 1958 and 1970 among them); the message must still say "corrupted", not "arbitrary objects".
    path = tmp_path / "noise.pt"
    for seed in [1958, 1970, 2016, 2067, 2240, *range(300)]:
        path.write_bytes(random.Random(seed).randbytes(3000))
        with pytest.raises(CheckpointError, match="truncated or corrupted"):
            read_checkpoint(path)


def test_foreign_and_missing_files_are_refused(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a flowcore checkpoint"):
        flowcore.load(tmp_path / "foreign.pt")
    torch.save({"format": "flowcore-checkpoint", "version": 1, "model": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing state_dict"):
        flowcore.load(tmp_path / "partial.pt")
    torch.save({"format": "flowcore-checkpoint", "version": 99, "model": {}, "state_dict": {}},
               tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        flowcore.load(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        flowcore.load(tmp_path / "nope.pt")


def test_wrong_shapes_are_named(tmp_path):
    path = _real_checkpoint(tmp_path)
    payload = torch.load(path, weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.dim() == 2)
    payload["state_dict"][key] = torch.zeros(3, 3)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"{key} has shape \(3, 3\), the model expects"):
        flowcore.load(path)
    payload["model"]["hidden"] = -4
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="cannot be built: hidden must be a positive integer"):
        flowcore.load(path)


def test_crash_during_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = _real_checkpoint(tmp_path)
    before = path.read_bytes()

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        flowcore.save(tiny_flow("glow"), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert flowcore.load(path).config.hidden == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.pt"]  # no temporary file left


def test_write_is_a_rename_of_a_complete_file(tmp_path, monkeypatch):
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((os.path.dirname(src), os.path.getsize(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    path = write_checkpoint({"model": {}, "state_dict": {"w": torch.zeros(1000)}}, tmp_path / "c.pt")
    assert renames == [(str(tmp_path), path.stat().st_size)]


def test_resume_needs_a_training_checkpoint(tmp_path):
    path = _real_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="weights only"):
        Trainer.resume(path, flowcore.toy_data("moons", 100, 0))


def test_training_checkpoint_holds_optimizer_and_rng_state(tmp_path):
    trainer = Trainer(tiny_flow(), flowcore.toy_data("moons", 200, 0), TrainConfig(steps=3, batch_size=50),
                      out_dir=tmp_path, metadata={"data": {"name": "moons"}})
    list(trainer.run())
    payload = read_checkpoint(tmp_path / "last.pt")
    state = payload["trainer"]
    assert state["step"] == 3 and state["generator"].dtype == torch.uint8
    assert state["pos"] == 150 and state["lr_multiplier"] == 1.0
    assert payload["optimizer"]["state"] and payload["metadata"]["data"] == {"name": "moons"}
    assert flowcore.load(tmp_path / "last.pt").metadata["step"] == 3
