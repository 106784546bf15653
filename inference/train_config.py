"""TrainConfig: everything a training run depends on, as plain data (config.json, checkpoints, the CLI).

Kept apart from the loop so the CLI, prediction and the window read and check a
run's options without importing the trainer. Values read from JSON are
type-checked (`"eval_batch_size": "abc"` is refused, not replaced by a default).

The fields are the engine's (optimiser, schedule, epochs, devices); what a model
reads lives in `model_config` (the AVVP models' feature set and input shapes
included), and what only one task understands in `task_options` (AVVP: CMRC),
which the task checks itself.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from inference.checkpoint import RunError, checked_train_values
from inference.devices import check_device_name
from inference.models import get_entry

OPTIMIZERS = ("adam", "adamw")
LIMITS = {"epochs": (1, 100_000), "batch_size": (1, 2**20), "eval_batch_size": (1, 2**20), "step_size": (1, 100_000),
          "warmup_epochs": (0, 100_000), "num_workers": (0, 256), "seed": (0, 2**63 - 1), "gamma": (0.0, 1.0),
          "lr": (0.0, 1e3), "lr_min": (0.0, 1e3), "weight_decay": (0.0, 1e3), "grad_clip": (0.0, 1e9)}
SCHEDULERS = ("step", "cosine", "warmup_cosine", "none")


@dataclass
class TrainConfig:
    """Everything a run depends on; the model's paper recipe fills what the user leaves out."""

    model: str = "han"
    model_config: dict[str, Any] = field(default_factory=dict)
    task: str = "avvp"
    task_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 40
    batch_size: int = 16  # per process in distributed runs
    lr: float = 3e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: str = "step"  # step | cosine | warmup_cosine | none (stepped once per epoch)
    step_size: int = 10
    gamma: float = 0.1
    warmup_epochs: int = 0
    lr_min: float = 0.0
    grad_clip: float = 0.0  # max gradient norm, 0 = off
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0
    eval_batch_size: int = 64

    @classmethod
    def for_model(cls, model: str, model_config: dict[str, Any] | None = None,
                  task_options: dict[str, Any] | None = None, variant: str | None = None,
                  **overrides: Any) -> "TrainConfig":
        """Defaults, then the registered model's recipe (its variant for `variant`, else for the feature
        set asked for), then `model_config`, `task_options` and `overrides` (None values ignored)."""
        entry = get_entry(model)
        given = dict(model_config or {})
        recipe = copy.deepcopy(entry.recipe_for(variant or given.get("feature_set")))
        values = {**recipe, **{k: v for k, v in overrides.items() if v is not None}, "model": model,
                  "task": entry.task, "task_options": dict(task_options or {}),
                  "model_config": {**recipe.pop("model_config", {}), **given}}
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """From plain data: unknown options and values of the wrong type are a RunError."""
        config = cls(**checked_train_values(cls, _upgrade(data)))
        config.validate()
        return config

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise RunError(f"optimizer {self.optimizer!r}; expected adam or adamw")
        if self.scheduler not in SCHEDULERS:
            raise RunError(f"scheduler {self.scheduler!r}; expected step, cosine, warmup_cosine or none")
        for name, (low, high) in LIMITS.items():
            if not low <= getattr(self, name) <= high:
                raise RunError(f"{name} is {getattr(self, name)}; expected {low}..{high}")
        if not self.lr > 0:
            raise RunError(f"lr must be positive, got {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            raise RunError(f"betas must be in [0, 1), got {list(self.betas)}")
        try:
            check_device_name(self.device)
        except ValueError as exc:
            raise RunError(str(exc)) from None


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Configs written before the engine/task split kept the AVVP options at the top level."""
    data = dict(data)
    if "feature_set" in data:
        data["model_config"] = {"feature_set": data.pop("feature_set"), **(data.get("model_config") or {})}
    moved = {k: data.pop(k) for k in ("cmrc", "cmrc_min_label_count") if k in data}
    if moved:
        data["task_options"] = {**moved, **(data.get("task_options") or {})}
    return data
