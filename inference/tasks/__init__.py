"""Tasks: what the training engine (`inference.train`) needs from a learning problem.

The engine owns the loop, callbacks, checkpoints, resume, cancellation, DDP and
devices; a task owns its data, the check of its inputs, its metrics and which
number picks the best checkpoint. A new task (AVS segmentation, a pseudo-label
generator) is a new module here implementing `Task`; no engine code changes.

Contract (duck-typed; `AVVPTask` in `inference.tasks.avvp` is the reference):

    name: str                        the registry's task name of the models it trains
    selection: str                   what the best checkpoint maximises, for people ("val segment Type@AV")
    build_model(config) -> nn.Module the model of `config.model` (registered for this task), its
                                     inputs completed from the data; it has `config`, `loss(out, batch)`
    prepare(model) -> list[str]      before the first epoch: refuse what cannot work, check every input
                                     file the run will read; returns notes for the user
    train_dataset(config) -> Dataset the training items (task options from `config.task_options`)
    collate(items) -> dict           a batch of items (dict of tensors; the first dimension is the batch)
    split_sizes() -> dict            {"val": n, "test": n}
    evaluate(model, split, device, batch_size) -> dict | None
                                     the split's metrics, None when the split has no truth
    selection_score(metrics) -> float, describe(metrics) -> str
"""
from __future__ import annotations

from typing import Any, Protocol

from torch import nn
from torch.utils.data import Dataset


class Task(Protocol):
    name: str
    selection: str

    def build_model(self, config: Any) -> nn.Module: ...

    def prepare(self, model: nn.Module) -> list[str]: ...

    def train_dataset(self, config: Any) -> Dataset: ...

    def collate(self, items: list[dict]) -> dict: ...

    def split_sizes(self) -> dict[str, int]: ...

    def evaluate(self, model: nn.Module, split: str, device: Any, batch_size: int) -> dict | None: ...

    def selection_score(self, metrics: dict) -> float: ...

    def describe(self, metrics: dict) -> str: ...
