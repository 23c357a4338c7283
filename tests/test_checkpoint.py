"""The checkpoint format: exact round trips, atomic writes, and refusal of anything unsafe or broken."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import random
import struct
import tarfile
import zipfile
from functools import partial
from pathlib import Path

import pytest
import safetensors.torch
import torch

import flowcore
from flowcore.checkpoint import HEADER_KEY, CheckpointError, read_checkpoint, write_checkpoint
from flowcore.train import TrainConfig, Trainer
from tests.helpers import MarkerPickle

READERS = (flowcore.load, read_checkpoint, flowcore.load_metadata)
PICKLE_REFUSAL = r"refusing to load .*: it is a PyTorch pickle checkpoint .*python -m flowcore convert "


def tiny_flow(name: str = "realnvp", **overrides) -> flowcore.Flow:
    torch.manual_seed(0)
    flow = flowcore.build(name, (2,), hidden=16, **overrides)
    with torch.no_grad():  # not the identity it starts as
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return flow


def header_of(path: Path) -> dict:
    """The flowcore payload in the safetensors header of `path`, as JSON."""
    with safetensors.torch.safe_open(path, framework="pt") as f:
        return json.loads(f.metadata()[HEADER_KEY])


def safetensors_file(path: Path, header: dict, data: bytes = b"") -> Path:
    """A file in the safetensors layout: 8-byte little-endian header size, JSON header, data."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_round_trip_restores_the_density_and_metadata_exactly(tmp_path):
    flow = tiny_flow("glow")
    x = flowcore.toy_data("moons", 64, 0)
    flow.train()
    flow.log_prob(x)  # ActNorm initialises from data
    meta = {"data": {"name": "moons", "seed": None}, "note": "hello", "nested": [{"a": [1, 2.5, None]}, []],
            "by_index": {0: "zero", 3: [True, False]}, "third": 1 / 3, "inf": math.inf}
    path = flowcore.save(flow, tmp_path / "sub" / "m.safetensors", **meta)
    loaded = flowcore.load(path)
    assert not loaded.training
    assert loaded.metadata == meta and flowcore.load_metadata(path) == meta
    flow.eval()
    assert torch.equal(loaded.log_prob(x), flow.log_prob(x))
    header = header_of(path)  # the config and metadata as JSON, the weights as tensors
    assert header["format"] == "flowcore-checkpoint" and header["version"] == 2
    assert header["model"] == flowcore.config_dict(flow)
    with safetensors.torch.safe_open(path, framework="pt") as f:
        assert sorted(f.keys()) == sorted(f"model/{k}" for k in flow.state_dict())


def test_weights_are_stored_in_float32(tmp_path):
    flow = tiny_flow().double()
    path = flowcore.save(flow, tmp_path / "m.safetensors")
    with safetensors.torch.safe_open(path, framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}


def test_views_of_one_storage_are_saved_as_separate_tensors(tmp_path):
    whole = torch.arange(12.0)
    payload = {"model": {}, "state_dict": {"a": whole[:4].view(2, 2), "b": whole[4:], "c": whole[::3]},
               "trainer": {"perm": whole.view(3, 4).t()}, "optimizer": {"state": {0: {"m": whole}}}}
    path = write_checkpoint(payload, tmp_path / "v.safetensors")
    back = read_checkpoint(path)
    assert torch.equal(back["state_dict"]["a"], whole[:4].view(2, 2)) and torch.equal(back["state_dict"]["c"],
                                                                                      whole[::3])
    assert torch.equal(back["trainer"]["perm"], whole.view(3, 4).t())
    assert torch.equal(back["optimizer"]["state"][0]["m"], whole)  # int keys come back as ints


def _zip_of(content: bytes, name: str = "archive/data.pkl", compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        z.writestr(name, content)
    return buf.getvalue()


def _dump(payload: dict, path: os.PathLike, protocol: int) -> None:
    Path(path).write_bytes(pickle.dumps(payload, protocol))


WRITERS = {  # ways of writing a hostile pickle, all named as what they are
    "torch.save": lambda payload, path: torch.save(payload, path),
    "legacy torch.save": lambda payload, path: torch.save(payload, path, _use_new_zipfile_serialization=False),
    **{f"pickle protocol {n}": partial(_dump, protocol=n) for n in range(2, pickle.HIGHEST_PROTOCOL + 1)},
    "pickle + junk": lambda payload, path: path.write_bytes(pickle.dumps(payload) + random.Random(0).randbytes(500)),
    "zip, deflated": lambda payload, path: path.write_bytes(_zip_of(pickle.dumps(payload, 4))),
}
ODD_WRITERS = {  # pickles that do not start like one: unreadable, never unpickled
    **{f"pickle protocol {n}": partial(_dump, protocol=n) for n in range(2)},
    "protocol 0, an int first": lambda payload, path: path.write_bytes(
        b"I0\n" + pickle.dumps(payload["x"], 0).replace(b"c__builtin__", b"cbuiltins")),
    "a CSV header, then a pickle": lambda payload, path: path.write_bytes(b"x,y\n" + pickle.dumps(payload)),
}


def _evil(tmp_path: Path, writer, name: str = "evil.safetensors") -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / name  # the name says safetensors; the content is a pickle
    writer({"format": "flowcore-checkpoint", "version": 1, "model": {}, "state_dict": {},
            "x": MarkerPickle(str(marker))}, path)
    return path, marker


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_pickle_is_refused_as_what_it_is_without_running_it(tmp_path, writer):
    path, marker = _evil(tmp_path, WRITERS[writer])
    for read in READERS:
        with pytest.raises(CheckpointError, match=PICKLE_REFUSAL + rf".*{path.name}") as refused:
            read(path)
        assert "\n" not in str(refused.value)
    assert not marker.exists()
    pickle.loads(pickle.dumps(MarkerPickle(str(marker))))  # the payload is real: unpickling it does run
    assert marker.exists()


@pytest.mark.parametrize("writer", list(ODD_WRITERS))
def test_other_pickles_are_unreadable_and_never_run(tmp_path, writer):
    path, marker = _evil(tmp_path, ODD_WRITERS[writer])
    for read in READERS:
        with pytest.raises(CheckpointError, match="truncated or corrupted"):
            read(path)
    assert not marker.exists()


def test_the_legacy_tar_format_is_refused_by_name(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("storages", b"\x80\x02K\x00."), ("tensors", b"\x80\x02K\x00."),
                           ("pickle", b"\x80\x02cos\ngetcwd\n)R.")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "old.pt").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match=PICKLE_REFUSAL):
        read_checkpoint(tmp_path / "old.pt")


def _real_checkpoint(tmp_path) -> Path:
    return flowcore.save(tiny_flow(), tmp_path / "good.safetensors")


def _header_size(data: bytes) -> int:
    return struct.unpack("<Q", data[:8])[0]


def _edit_header(data: bytes, edit) -> bytes:
    """`data` (a safetensors file) with `edit` applied to its header's JSON text."""
    n = _header_size(data)
    raw = edit(data[8 : 8 + n].decode()).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def _edit_payload(data: bytes, edit) -> bytes:
    """`data` with `edit` applied to the flowcore payload (a dict) inside the header."""
    def change(text: str) -> str:
        header = json.loads(text)
        payload = json.loads(header["__metadata__"][HEADER_KEY])
        edit(payload)
        header["__metadata__"][HEADER_KEY] = json.dumps(payload)
        return json.dumps(header)
    return _edit_header(data, change)


def _claim_huge(text: str) -> str:
    header = json.loads(text)
    name = next(k for k in header if k != "__metadata__")
    start = header[name]["data_offsets"][0]
    header[name].update(shape=[2**40], data_offsets=[start, start + 2**42])  # 4 TiB of float32
    return json.dumps(header)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[: len(b) // 2], "truncated or corrupted"),
    (lambda b: b[: len(b) - 1], "truncated or corrupted"),
    (lambda b: b[:100], "truncated or corrupted"),
    (lambda b: b[:7], "truncated or corrupted"),
    (lambda b: b"", "truncated or corrupted"),
    (lambda b: b + b"\0", "truncated or corrupted"),
    (lambda b: random.Random(0).randbytes(4096), "truncated or corrupted"),
    (lambda b: struct.pack("<Q", 2**62) + b[8:], "truncated or corrupted"),  # header size beyond the file
    (lambda b: struct.pack("<Q", _header_size(b) - 1) + b[8:], "truncated or corrupted"),
    (lambda b: _edit_header(b, lambda t: t.replace('"F32"', '"Q99"', 1)), "truncated or corrupted"),
    (lambda b: _edit_header(b, lambda t: t.rstrip()[:-1]), "truncated or corrupted"),  # JSON cut short
    (lambda b: _edit_header(b, _claim_huge), "truncated or corrupted"),
    (lambda b: _edit_header(b, lambda t: t.replace(HEADER_KEY, "other", 1)), "not a flowcore checkpoint"),
    (lambda b: _edit_payload(b, lambda p: p.update(format="something else")), "not a flowcore checkpoint"),
    (lambda b: _edit_payload(b, lambda p: p.update(version=99)), "version 99"),
    (lambda b: _edit_payload(b, lambda p: p.pop("state_dict")), "missing state_dict"),
    (lambda b: _edit_payload(b, lambda p: p["state_dict"].update(w=3)), "not a tensor"),
    (lambda b: _edit_payload(b, lambda p: p["metadata"].update(x={"$tensor": "nowhere"})), "truncated or corrupted"),
])
def test_damaged_files_are_refused_in_one_line(tmp_path, damage, message):
    path = _real_checkpoint(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    for read in (flowcore.load, read_checkpoint):
        with pytest.raises(CheckpointError, match=message) as refused:
            read(path)
        assert "\n" not in str(refused.value)


def test_a_header_that_claims_huge_tensors_is_refused_before_allocating(tmp_path):
    path = safetensors_file(tmp_path / "huge.safetensors",
                            {"__metadata__": {HEADER_KEY: json.dumps({"format": "flowcore-checkpoint"})},
                             "model/w": {"dtype": "F64", "shape": [2**31, 2**31], "data_offsets": [0, 2**65]}},
                            b"\0" * 64)
    for read in READERS:  # 32 EiB: an attempt to allocate it would fail with MemoryError, not this
        with pytest.raises(CheckpointError, match="truncated or corrupted"):
            read(path)


def test_every_damaged_header_byte_is_refused_or_harmless(tmp_path):
    path = _real_checkpoint(tmp_path)
    data = path.read_bytes()
    end = 8 + _header_size(data)
    rng = random.Random(0)
    outcomes = {"refused": 0, "loaded": 0}
    for where in rng.sample(range(end), 300):
        damaged = bytearray(data)
        damaged[where] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        try:
            flowcore.load(path)
            outcomes["loaded"] += 1  # a flipped digit of a number in the metadata, say
        except CheckpointError as err:
            assert "\n" not in str(err)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 250, outcomes


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.safetensors"
    for seed in range(300):
        rng = random.Random(seed)
        path.write_bytes(rng.randbytes(rng.choice([1, 9, 3000])))
        with pytest.raises(CheckpointError, match="truncated or corrupted"):
            read_checkpoint(path)


def test_foreign_and_missing_files_are_refused(tmp_path):
    safetensors.torch.save_file({"weights": torch.zeros(3)}, tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="not a flowcore checkpoint"):
        flowcore.load(tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        flowcore.load(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="is a folder"):
        flowcore.load(tmp_path)


def test_wrong_shapes_are_named(tmp_path):
    path = _real_checkpoint(tmp_path)
    payload = read_checkpoint(path)
    key = next(k for k, v in payload["state_dict"].items() if v.dim() == 2)
    payload["state_dict"][key] = torch.zeros(3, 3)
    write_checkpoint(payload, path)
    with pytest.raises(CheckpointError, match=rf"{key} has shape \(3, 3\), the model expects"):
        flowcore.load(path)
    payload["model"]["hidden"] = -4
    write_checkpoint(payload, path)
    with pytest.raises(CheckpointError, match="cannot be built: hidden must be a positive integer"):
        flowcore.load(path)


@pytest.mark.parametrize("where", ["serialise", "fsync"])
def test_crash_during_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, where):
    path = _real_checkpoint(tmp_path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(*((safetensors.torch, "save") if where == "serialise" else (os, "fsync")), crash)
    with pytest.raises(OSError, match="disk full"):
        flowcore.save(tiny_flow("glow"), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert flowcore.load(path).config.hidden == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.safetensors"]  # no temporary file left


def test_write_is_a_rename_of_a_complete_file(tmp_path, monkeypatch):
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((os.path.dirname(src), os.path.getsize(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    path = write_checkpoint({"model": {}, "state_dict": {"w": torch.zeros(1000)}}, tmp_path / "c.safetensors")
    assert renames == [(str(tmp_path), path.stat().st_size)]


def test_resume_needs_a_training_checkpoint(tmp_path):
    path = _real_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="weights only"):
        Trainer.resume(path, flowcore.toy_data("moons", 100, 0))


def test_training_checkpoint_holds_optimizer_rng_and_guard_state(tmp_path):
    trainer = Trainer(tiny_flow(), flowcore.toy_data("moons", 200, 0),
                      TrainConfig(steps=3, batch_size=50, spike_guard=3.0),
                      out_dir=tmp_path, metadata={"data": {"name": "moons"}})
    list(trainer.run())
    path = tmp_path / "last.safetensors"
    payload = read_checkpoint(path)
    state = payload["trainer"]
    assert state["step"] == 3 and torch.equal(state["generator"], trainer.generator.get_state())
    assert state["pos"] == 150 and state["lr_multiplier"] == 1.0 and state["loss_stats"] == trainer.loss_stats
    assert state["history"]["loss"].tolist() == [r.loss for r in trainer.history]
    moments = payload["optimizer"]["state"]
    params = list(trainer.flow.parameters())
    assert sorted(moments) == list(range(len(params)))  # one entry per parameter, by index
    assert [moments[i]["exp_avg"].shape for i in moments] == [p.shape for p in params]
    assert payload["metadata"]["data"] == {"name": "moons"}
    assert flowcore.load(path).metadata["step"] == 3
    with safetensors.torch.safe_open(path, framework="pt") as f:  # the tensors, by prefix
        assert {k.split("/")[0] for k in f.keys()} == {"model", "optimizer", "trainer"}


def test_a_flow_composed_by_hand_saves_and_loads_into_the_same_structure(tmp_path):
    from functools import partial

    import flowcore

    def hand_built() -> flowcore.Flow:
        torch.manual_seed(0)
        net = partial(flowcore.MLP, hidden=8)
        layers = [flowcore.ActNorm(2), flowcore.InvertibleLinear(2, seed=1),
                  flowcore.AffineCoupling(flowcore.HalfMask(2), net), flowcore.Reverse(2),
                  flowcore.AdditiveCoupling(flowcore.HalfMask(2, swap=True), net)]
        return flowcore.Flow(flowcore.Compose(layers), flowcore.StandardNormal(2), (2,), name="my-flow",
                             metadata={"note": "by hand"})

    flow = hand_built()
    x = torch.randn(64, 2)
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        (-flow.log_prob(x).mean()).backward()
        optimizer.step()
    path = flowcore.save(flow, tmp_path / "mine.safetensors", steps=3)
    with pytest.raises(flowcore.CheckpointError, match="hand-built flow .*into=flow"):
        flowcore.load(path)
    loaded = flowcore.load(path, into=hand_built())
    assert loaded.name == "my-flow" and loaded.metadata == {"note": "by hand", "steps": 3}
    flow.eval()
    assert torch.allclose(loaded.log_prob(x), flow.log_prob(x), atol=1e-6)
    other = flowcore.Flow(flowcore.Compose([flowcore.ActNorm(2)]), flowcore.StandardNormal(2), (2,))
    with pytest.raises(flowcore.CheckpointError, match="does not match its model"):
        flowcore.load(path, into=other)


def test_built_flows_carry_their_name_and_metadata_through_save_and_load(tmp_path):
    import flowcore

    flow = flowcore.build("realnvp", (2,), hidden=8, couplings=2)
    assert flow.name == "realnvp" and flow.metadata == {}
    flow.metadata["data"] = "moons"
    loaded = flowcore.load(flowcore.save(flow, tmp_path / "f.safetensors", seed=1))
    assert loaded.name == "realnvp" and loaded.metadata == {"data": "moons", "seed": 1}


def test_the_readme_example_of_a_flow_composed_by_hand_runs(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    block = next(b for b in blocks if "into=my_flow()" in b)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - the project's own README
    again, flow = scope["again"], scope["flow"]
    assert again.name == "my-glow" and again.metadata == {"data": "moons"}
    x = torch.randn(32, 2)
    flow.eval()
    assert torch.allclose(again.log_prob(x), flow.log_prob(x), atol=1e-5)
