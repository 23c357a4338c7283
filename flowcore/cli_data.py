"""The command line's data: which set a run trains on, loading it, and regenerating what a
checkpoint was measured on.

A run's data spec is a dict: `name`, `data_dir`, and for toy sets `n_train`, `n_eval`, `seed`
(and optionally `eval_seed`), for image sets `validation` (hold out the last N training images
instead of the test set). The description `load_data` returns goes into the run's metadata, and
`heldout_data` rebuilds the same data from it.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from flowcore.checkpoint import CheckpointError
from flowcore.data import IMAGE_SETS, TOY_SETS, heldout_seed_for, load_images, toy_data, toy_split
from flowcore.validate import check_int, reject_unknown

DATA_SETS = (*TOY_SETS, *IMAGE_SETS)
TOY_DEFAULTS = {"n_train": 20000, "n_eval": 5000, "seed": 0}


def data_spec(args: argparse.Namespace, file: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """The data set to train on: flags over the config file over the resumed run's settings."""
    name = args.data or file.get("name") or saved.get("name")
    if name is None:
        raise ValueError("no data set: pass --data or give data.name in the config file")
    if name not in DATA_SETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATA_SETS)}")
    if saved and saved.get("name") != name:
        raise CheckpointError(f"the run to resume was trained on {saved.get('name')}, not the requested {name}")
    allowed = {"name", "data_dir"} | ({*TOY_DEFAULTS, "eval_seed"} if name in TOY_SETS else {"validation"})
    reject_unknown(file, allowed, f"data option(s) for {name}")
    spec = {k: v for k, v in saved.items() if k in allowed and v != ""}
    spec.update(file)
    spec["name"] = name
    if args.data_dir is not None:
        spec["data_dir"] = args.data_dir
    return {**TOY_DEFAULTS, **spec} if name in TOY_SETS else spec


def load_data(spec: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], torch.Tensor | None]:
    """Training data, held-out data, their description for the metadata, and the training labels
    (image sets; None for toy data).

    Image sets hold out the test set, or with `validation: N` the last N training images (for
    choosing settings without looking at the test set). Toy sets draw `n_train` points with
    `seed` and `n_eval` held-out points with `eval_seed` (`flowcore.data.toy_split`)."""
    if spec["name"] in IMAGE_SETS:
        train, labels = load_images(spec["name"], "train", spec.get("data_dir"), download=False)
        validation = check_int("data option validation", spec.get("validation", 0), 0, len(train) - 1)
        if validation:
            train, heldout, labels = train[:-validation], train[-validation:], labels[:-validation]
        else:
            heldout, _ = load_images(spec["name"], "test", spec.get("data_dir"), download=False)
        desc = {"name": spec["name"], "eval_split": "validation" if validation else "test",
                "n_train": len(train), "n_eval": len(heldout), "validation": validation,
                "data_dir": str(spec.get("data_dir") or "")}
        return train, heldout, desc, labels
    for key in TOY_DEFAULTS:
        check_int(f"data option {key}", spec[key], minimum=0 if key == "seed" else 1)
    # written out because the metadata records it
    eval_seed = check_int("data option eval_seed", spec.get("eval_seed", heldout_seed_for(spec["seed"])), minimum=0)
    train, heldout = toy_split(spec["name"], spec["n_train"], spec["n_eval"], spec["seed"], eval_seed)
    desc = {"name": spec["name"], "n_train": spec["n_train"], "n_eval": spec["n_eval"],
            "seed": spec["seed"], "eval_seed": eval_seed}
    return train, heldout, desc, None


def preprocessing(name: str, dequantizer: str = "uniform") -> str:
    """How the data set's examples reach the flow, in words for the run's metadata."""
    if name in IMAGE_SETS:
        layers = ("a learned variational dequantiser q(u|x) that reshapes the noise in each pixel's cell, then "
                  "logit" if dequantizer == "variational" else "logit")
        return ("8-bit pixels + uniform noise U[0,1) per pixel (dequantisation) -> [0, 256); the flow's "
                f"own layers ({layers}) do the rest and are counted in its log-det")
    return "none: 2-D float32 points as generated"


def heldout_data(meta: dict[str, Any], split: str | None,
                 data_dir: str | None) -> tuple[torch.Tensor, str, torch.Tensor | None]:
    """The held-out (or training) data a checkpoint was trained against, from its metadata, with
    labels for image sets (None for toy data)."""
    data = meta.get("data") or {}
    name = data.get("name")
    if name in IMAGE_SETS:
        split = split or "test"
        if split not in ("test", "train", "validation"):
            raise ValueError(f"image sets have splits 'test', 'train' and 'validation', got {split!r}")
        folder = data_dir or data.get("data_dir") or None
        images, labels = load_images(name, "test" if split == "test" else "train", folder, download=False)
        n_val = int(data.get("validation") or 0)
        if split == "validation":
            if not n_val:
                raise ValueError("this model was trained on the whole training set: it has no validation split")
            images, labels = images[-n_val:], labels[-n_val:]
        elif split == "train" and n_val:
            images, labels = images[:-n_val], labels[:-n_val]
        return images, split, labels
    if name in TOY_SETS:
        split = split or "heldout"
        if split not in ("heldout", "train"):
            raise ValueError(f"toy data has splits 'heldout' and 'train', got {split!r}")
        # one side of the split, regenerated from the seed the metadata records for it
        n, seed = (data["n_eval"], data["eval_seed"]) if split == "heldout" else (data["n_train"], data["seed"])
        return toy_data(name, n, seed), split, None
    raise ValueError("the checkpoint's metadata names no known data set, so there is nothing to evaluate on")
