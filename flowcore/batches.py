"""Where a trainer's batches come from: a tensor of examples in seeded, shuffled epochs (`Points`,
`Images`), or a function that draws a fresh batch every step (`Fresh`).

A source takes all its randomness from the generator the trainer passes in (seeded by
`TrainConfig.seed` and saved in checkpoints) and keeps in `state_dict()` whatever else decides its
next batch (the position in an epoch), so a run is a function of its seed and a resumed run
continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from flowcore.conditional import check_labels
from flowcore.data import toy_data
from flowcore.preprocess import dequantize

Batch = tuple[Tensor, Tensor | None]  # examples and their class labels (None: unlabelled)


class BatchSource(ABC):
    """Batches of training examples, on demand."""

    data: Tensor | None = None  # the examples drawn from, when they are one tensor
    labels: Tensor | None = None  # their integer class labels (class-conditional flows)
    size: int | None = None  # examples per epoch; None: no epochs, every batch is new
    is_image: bool = False  # 8-bit images: losses are also reported in bits/dim

    @abstractmethod
    def batch(self, n: int, generator: torch.Generator) -> Batch:
        """The next `n` examples (every process's share together) and their labels."""

    @abstractmethod
    def check(self, shape: tuple[int, ...], classes: int, batch_size: int) -> None:
        """A ValueError unless the examples have `shape`, carry labels exactly when `classes` > 0
        (a class-conditional flow), and batches of `batch_size` can be drawn."""

    def to(self, device: torch.device) -> BatchSource:
        """Keep the examples on `device` (labels as int64); returns the source itself."""
        return self

    def state_dict(self) -> dict[str, Any]:
        """What decides the next batch besides the generator (plain types and tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`; keys of other sources are ignored."""
        return None


def check_examples(data: Any, shape: tuple[int, ...], what: str) -> Tensor:
    """`data` if it is a non-empty `(N, *shape)` tensor of floats or 8-bit images, else a ValueError."""
    if not isinstance(data, Tensor) or tuple(data.shape[1:]) != tuple(shape) or len(data) == 0:
        got = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
        raise ValueError(f"{what} must have shape (N, {', '.join(map(str, shape))}), got {got}")
    if data.dtype != torch.uint8 and not data.is_floating_point():
        raise ValueError(f"{what} must be float vectors or uint8 images, got {data.dtype}")
    return data


class Points(BatchSource):
    """Continuous examples `(N, *shape)` (e.g. 2-D points), optionally with labels `(N,)`.

    An epoch is one seeded permutation; a batch is its next `n` indices, and a batch that would
    run past the end starts the next epoch instead (the few examples left over sit that one out).
    The tensor is read at every batch, so writing into `data` in place changes what comes next.
    """

    def __init__(self, data: Tensor, labels: Tensor | None = None) -> None:
        self.data = data
        self.labels = None if labels is None else torch.as_tensor(labels)
        self.size = len(data)
        self.perm: Tensor | None = None  # this epoch's order of the examples
        self.pos = 0  # examples of `perm` used so far
        self.epoch = 0  # index of the current permutation

    def batch(self, n: int, generator: torch.Generator) -> Batch:
        if self.perm is None or self.pos + n > self.size:
            if self.perm is not None:
                self.epoch += 1
            self.perm = torch.randperm(self.size, generator=generator)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + n].to(self.data.device)
        self.pos += n
        return self._examples(self.data[idx], generator), None if self.labels is None else self.labels[idx]

    def _examples(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return x

    def check(self, shape: tuple[int, ...], classes: int, batch_size: int) -> None:
        check_examples(self.data, shape, "train_data")
        if (self.data.dtype == torch.uint8) != self.is_image:
            raise ValueError(f"{type(self).__name__} takes {'uint8 images' if self.is_image else 'float examples'}, "
                             f"got {self.data.dtype}: use {'Points' if self.is_image else 'Images'}")
        if classes and self.labels is None:
            raise ValueError(f"a class-conditional flow ({classes} classes) trains on labelled data: "
                             "pass train_labels")
        if classes:
            check_labels(self.labels, classes, self.size)
        elif self.labels is not None:
            raise ValueError("labels were given, but the flow is not class-conditional")
        if batch_size > self.size:
            raise ValueError(f"batch_size {batch_size} is larger than the training set ({self.size})")

    def to(self, device: torch.device) -> Points:
        self.data = self.data.to(device)
        self.labels = None if self.labels is None else torch.as_tensor(self.labels).to(device, torch.long)
        return self

    def state_dict(self) -> dict[str, Any]:
        perm = None if self.perm is None else self.perm.clone()
        return {"epoch": self.epoch, "pos": self.pos, "perm": perm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.perm, self.pos, self.epoch = state.get("perm"), int(state.get("pos", 0)), int(state.get("epoch", 0))


class Images(Points):
    """8-bit images `(N, C, H, W)` as `Points`, each batch dequantised with uniform noise from
    the trainer's generator: pixel values on `[0, 256)` (`flowcore.preprocess.dequantize`)."""

    is_image = True

    def _examples(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return dequantize(x, generator)


class Fresh(BatchSource):
    """A new batch at every step: `draw(n, generator)` returns `n` float examples `(n, *shape)`,
    taking all its randomness from `generator` (the trainer's, a CPU `torch.Generator`).

    No example is seen twice and there are no epochs. Unlabelled."""

    def __init__(self, draw: Callable[[int, torch.Generator], Tensor]) -> None:
        self.draw = draw

    def batch(self, n: int, generator: torch.Generator) -> Batch:
        return self.draw(n, generator), None

    def check(self, shape: tuple[int, ...], classes: int, batch_size: int) -> None:
        if classes:
            raise ValueError(f"a class-conditional flow ({classes} classes) trains on labelled data; "
                             "fresh batches are unlabelled")
        probe = self.draw(2, torch.Generator().manual_seed(0))  # a generator of its own: the run's is untouched
        if len(check_examples(probe, shape, "a fresh batch")) != 2 or not probe.is_floating_point():
            raise ValueError(f"draw(2, generator) must return 2 float examples, got {tuple(probe.shape)} "
                             f"of {probe.dtype}")


def fresh_toy(name: str) -> Fresh:
    """Fresh batches of the 2-D toy set `name` (`flowcore.data.TOY_SETS`): each is `toy_data`
    with a seed drawn from the trainer's generator."""
    toy_data(name, 1)  # an unknown name fails here, with the list of known ones
    return Fresh(lambda n, generator: toy_data(name, n, int(torch.randint(2**62, (), generator=generator))))


def as_source(data: Tensor | BatchSource, labels: Tensor | None, shape: tuple[int, ...], classes: int) -> BatchSource:
    """`data` as a batch source: a source as it is; uint8 images `(N, *shape)` as `Images`, floats
    as `Points`, with `labels` kept for a class-conditional flow (`classes` > 0), dropped otherwise."""
    if isinstance(data, BatchSource):
        if labels is not None:
            raise ValueError("give the labels to the batch source, not as train_labels")
        return data
    check_examples(data, shape, "train_data")
    labels = labels if classes else None
    return Images(data, labels) if data.dtype == torch.uint8 else Points(data, labels)
