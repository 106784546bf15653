"""TrainConfig: everything a training run depends on, as plain data (config.json, checkpoints, the CLI).

Kept apart from the loop so the CLI, prediction and the window read and check a
run's options without importing the trainer. Values read from JSON are
type-checked (`"eval_batch_size": "abc"` is refused, not replaced by a default).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from inference.checkpoint import RunError, checked_train_values
from inference.devices import check_device_name
from inference.models import model_recipe


@dataclass
class TrainConfig:
    """Everything a run depends on; the model's paper recipe fills what the user leaves out."""

    model: str = "han"
    model_config: dict[str, Any] = field(default_factory=dict)
    feature_set: str = "vggish"
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
    cmrc: int = 0  # cross-modal random combination clips added to the train split (0 = off)
    cmrc_min_label_count: int = 50  # label sets must be seen more often than this (MUG: 50; tiny data: 0)
    eval_batch_size: int = 64

    @classmethod
    def for_model(cls, model: str, **overrides: Any) -> "TrainConfig":
        """Defaults, then the registered model's recipe, then `overrides` (None values ignored)."""
        values = {**model_recipe(model), **{k: v for k, v in overrides.items() if v is not None}, "model": model}
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """From plain data: unknown options and values of the wrong type are a RunError."""
        config = cls(**checked_train_values(cls, data))
        config.validate()
        return config

    def validate(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise RunError(f"optimizer {self.optimizer!r}; expected adam or adamw")
        if self.scheduler not in ("step", "cosine", "warmup_cosine", "none"):
            raise RunError(f"scheduler {self.scheduler!r}; expected step, cosine, warmup_cosine or none")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise RunError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise RunError(f"lr must be positive, got {self.lr}")
        if self.cmrc < 0 or self.num_workers < 0 or self.cmrc_min_label_count < 0:
            raise RunError("cmrc, cmrc_min_label_count and num_workers must be >= 0")
        try:
            check_device_name(self.device)
        except ValueError as exc:
            raise RunError(str(exc)) from None
