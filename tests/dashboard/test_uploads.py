"""Hostile and corrupt uploads through the app: one clear message each, nothing run, nothing lost.

The CSV uploader of Train live is the app's only upload path (no page takes a checkpoint from
the browser; pretrained checkpoints come from the server's disk, see `test_sample.py`). A
pickle payload that would create a marker file when unpickled, a torch checkpoint carrying
one, and every kind of broken CSV are uploaded in turn into a session that already trains on
its own uploaded points: each is refused with one message, the marker never appears, and
the session keeps its data and its run.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from dashboard.services import limits
from tests.dashboard.conftest import click, open_page, shown_step, texts
from tests.helpers import MarkerPickle

PAGES = ("views/home.py", "views/train.py", "views/interpolate.py", "views/compare.py", "views/sample.py")
GOOD = "\n".join(f"{i % 7},{(i * 3) % 11}" for i in range(100))


def lines(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode()


def bad_inputs(marker: Path) -> list[tuple[str, bytes, str]]:
    """(file name, content, a fragment of the message it must get)."""
    checkpoint = io.BytesIO()
    torch.save({"format": "flowcore-checkpoint", "version": 1, "model": {}, "state_dict": {},
                "x": MarkerPickle(marker)}, checkpoint)
    rows = GOOD.splitlines()
    return [
        ("pickle0.csv", pickle.dumps(MarkerPickle(marker), protocol=0), "1 column(s)"),  # text-only pickle
        ("pickle5.csv", pickle.dumps(MarkerPickle(marker), protocol=5), "binary data"),
        ("headed-pickle.csv", b"x,y\n" + pickle.dumps(MarkerPickle(marker), protocol=0), "not a number"),
        ("model.csv", checkpoint.getvalue(), "binary data"),  # a checkpoint renamed: .pt never gets here
        ("empty.csv", b"", "empty"),
        ("blank.csv", b"\n  \n\n", "empty"),
        ("bytes.csv", bytes(range(256)) * 16, "binary data"),
        ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", "binary data"),
        ("utf16.csv", "x,y\n1,2\n".encode("utf-16"), "binary data"),
        ("huge.csv", b"1,2\n" * 300_000, "the limit is 1 MB"),
        ("words.csv", lines("x,y", *rows[:50], "1,banana", *rows[50:]), "'banana', which is not a number"),
        ("nan.csv", lines(*rows, "nan,1"), "NaN or infinite"),
        ("inf.csv", lines(*rows, "1,-inf"), "NaN or infinite"),
        ("gap.csv", lines(*rows, "1,"), "NaN or infinite"),
        ("three.csv", lines(*(f"{r},0" for r in rows)), "3 column(s)"),
        ("one.csv", lines(*(r.split(",")[0] for r in rows)), "1 column(s)"),
        ("ragged.csv", lines("a,b", "1,2", "3,4,5,6"), "could not be read as CSV"),
        ("few.csv", lines(*rows[:5]), f"at least {limits.MIN_POINTS} are needed"),
        ("many.csv", lines(*["1,2"] * (limits.MAX_POINTS + 1)), f"the limit is {limits.MAX_POINTS:,}"),
        ("far.csv", lines(*rows, "1e300,1"), "larger than a million"),
        ("same.csv", lines(*["3,4"] * 50), "All points are the same"),
    ]


def test_the_only_upload_takes_one_csv_file() -> None:
    uploaders = {}
    for page in PAGES:
        at = open_page(page)
        assert not at.exception
        uploaders[page] = [(u.key, u.allowed_type, u.accept_multiple_files) for u in at.get("file_uploader")]
    assert uploaders == {**dict.fromkeys(PAGES, []), "views/train.py": [("upload_csv_0", [".csv"], False)]}


def uploader(at):
    (widget,) = at.get("file_uploader")
    return widget


def test_hostile_and_corrupt_uploads_are_refused_and_the_session_keeps_its_data(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    at = open_page("views/train.py")
    uploader(at).set_value(("good.csv", GOOD.encode(), "text/csv")).run()
    click(at, "step")
    assert "good.csv, 100 points" in texts(at) and shown_step(at) == 1
    cases = bad_inputs(marker)
    for name, content, fragment in cases:
        key = uploader(at).key
        uploader(at).set_value((name, content, "text/csv")).run()
        assert not at.exception, name
        assert len(at.error) == 1, [e.value for e in at.error]
        message = at.error[0].value
        assert message.startswith(f"{name} was not used: ") and fragment in message, message
        assert message.endswith("The previous data stays."), message
        assert "Traceback" not in texts(at)
        assert at.selectbox(key="data").value == "upload", name
        assert "good.csv, 100 points" in texts(at), name
        assert uploader(at).key != key, f"the uploader still shows {name}, which is not in use"
        assert "In use: good.csv, 100 points" in texts(at), name
        assert shown_step(at) == 1, f"{name} reset the run"
        assert not marker.exists(), f"{name} ran code"
    click(at, "step")  # the run goes on where it was
    assert shown_step(at) == 2 and "good.csv, 100 points" in texts(at)
    print(f"\n{len(cases)} hostile or corrupt uploads refused")
    pickle.loads(cases[0][1])  # the payloads are real: unpickling one does create the marker
    assert marker.exists()
