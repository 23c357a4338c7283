"""The command line's data: the toy split a run trains on, the description it records, and the
same held-out data regenerated from that description for `eval`."""

from __future__ import annotations

import argparse

import pytest
import torch

from flowcore.cli_data import data_spec, heldout_data, load_data
from flowcore.data import toy_data, toy_split


def _flags(data: str | None = None, data_dir: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(data=data, data_dir=data_dir)


def test_toy_data_is_two_independent_draws_and_eval_regenerates_the_held_out_side():
    spec = data_spec(_flags("moons"), {"n_train": 300, "n_eval": 100, "seed": 7}, {})
    train, heldout, desc, labels = load_data(spec)
    assert desc == {"name": "moons", "n_train": 300, "n_eval": 100, "seed": 7, "eval_seed": 8}
    want_train, want_heldout = toy_split("moons", 300, 100, seed=7)
    assert labels is None and torch.equal(train, want_train) and torch.equal(heldout, want_heldout)
    again, split, _ = heldout_data({"data": desc}, None, None)
    assert split == "heldout" and torch.equal(again, heldout)
    again, split, _ = heldout_data({"data": desc}, "train", None)
    assert split == "train" and torch.equal(again, train)


def test_a_given_eval_seed_draws_and_records_the_held_out_points():
    spec = data_spec(_flags(), {"name": "rings", "n_train": 50, "n_eval": 40, "seed": 1, "eval_seed": 11}, {})
    _, heldout, desc, _ = load_data(spec)
    assert desc["eval_seed"] == 11 and torch.equal(heldout, toy_data("rings", 40, 11))


def test_flags_override_the_config_file_which_overrides_the_resumed_run():
    saved = {"name": "moons", "n_train": 10, "n_eval": 20, "seed": 3, "eval_seed": 4}
    spec = data_spec(_flags(), {"n_train": 99}, saved)
    assert spec == {"name": "moons", "n_train": 99, "n_eval": 20, "seed": 3, "eval_seed": 4}
    assert data_spec(_flags("moons"), {}, {}) == {"name": "moons", "n_train": 20000, "n_eval": 5000, "seed": 0}
    assert data_spec(_flags("mnist", "/data"), {"data_dir": "/x"}, {}) == {"name": "mnist", "data_dir": "/data"}


@pytest.mark.parametrize("file, message", [
    ({"n_train": 0}, "data option n_train must be a positive integer, got 0"),
    ({"n_eval": 2.5}, "data option n_eval must be a positive integer, got 2.5"),
    ({"seed": -1}, "data option seed must be a non-negative integer, got -1"),
    ({"eval_seed": True}, "data option eval_seed must be a non-negative integer, got True"),
])
def test_bad_toy_options_name_the_option(file, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        load_data(data_spec(_flags("moons"), file, {}))


@pytest.mark.parametrize("name, file, message", [
    ("moons", {"validation": 5}, r"^unknown data option\(s\) for moons: validation; valid: data_dir, eval_seed, "),
    ("mnist", {"n_train": 5}, r"^unknown data option\(s\) for mnist: n_train; valid: data_dir, name, validation$"),
])
def test_options_of_another_kind_of_data_set_are_refused(name, file, message):
    with pytest.raises(ValueError, match=message):
        data_spec(_flags(name), file, {})


def test_image_validation_split_is_checked_against_the_training_set_size(mnist_dir):
    spec = data_spec(_flags("mnist", str(mnist_dir)), {"validation": 60000}, {})
    with pytest.raises(ValueError, match=r"^data option validation must be an integer in \[0, 59999\], got 60000$"):
        load_data(spec)


@pytest.mark.parametrize("meta, split, message", [
    ({"data": {"name": "moons"}}, "test", "toy data has splits 'heldout' and 'train', got 'test'"),
    ({}, None, "names no known data set"),
])
def test_heldout_data_refuses_what_the_metadata_cannot_give(meta, split, message):
    with pytest.raises(ValueError, match=message):
        heldout_data(meta, split, None)
