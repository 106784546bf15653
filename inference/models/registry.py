"""Model registry: a name -> (module class, config dataclass, training recipe).

Why: training, prediction, checkpoints and the CLI refer to models by name and
rebuild them from a plain config dict (checkpoints never pickle objects), so
every model family registers itself once here:

    @dataclass
    class HANConfig(ModelConfig):
        feature_set: str = "vggish"
        hidden: int = 512

    @register_model("han", HANConfig, recipe={"optimizer": "adam", "lr": 3e-4})
    class HAN(AVVPModel):
        def __init__(self, config: HANConfig): ...

`create_model("han", hidden=256)` then builds one. The built-in families live in
`BUILTIN_MODULES` and are imported on first use; a family whose module is not
there (yet) is simply absent from `model_names()`, and one whose module fails to
import is reported, with the reason, when it is asked for.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, TypeVar

from torch import nn

from inference.typed_config import checked_fields

BUILTIN_MODULES: dict[str, str] = {
    "han": "inference.models.han",
    "valor": "inference.models.han",
    "mug": "inference.models.mug",
    "link": "inference.models.link",
    "ear": "inference.models.ear",
    "avs_mamba": "inference.models.avs_mamba",
    "avs_visual_only": "inference.models.avs_mamba",
    "ear_generator": "inference.models.ear_generator",
}


class UnknownModelError(ValueError):
    """A model name that is not registered; the message lists the available ones."""


class ModelConfig:
    """Mixin for model config dataclasses: plain-dict round trip for config.json and checkpoints."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    # option -> (lowest, highest) allowed value; subclasses add theirs (merged along the MRO)
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "ModelConfig":
        """Unknown options, values of the wrong type and values out of range are a ValueError
        naming the option (a checkpoint's config must not allocate 80 GB before failing)."""
        config = cls(**checked_fields(cls, dict(data or {}), cls.__name__))
        config.check()
        return config

    def check(self) -> None:
        ranges = {k: v for klass in reversed(type(self).__mro__) for k, v in vars(klass).get("RANGES", {}).items()}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not low <= value <= high:
                raise ValueError(f"{type(self).__name__}: option {name} is {value}; expected {low}..{high}")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    model_cls: type
    config_cls: type
    recipe: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields from the paper
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # feature set (AVS: subset) -> recipe changes
    task: str = "avvp"

    def recipe_for(self, feature_set: str | None) -> dict[str, Any]:
        """The recipe, with the variant of `feature_set` merged in (model_config merged key by key)."""
        variant = self.variants.get(feature_set or self.recipe.get("model_config", {}).get("feature_set", ""), {})
        merged = {**self.recipe, **variant}
        merged["model_config"] = {**self.recipe.get("model_config", {}), **variant.get("model_config", {})}
        return merged


_REGISTRY: dict[str, ModelEntry] = {}
_IMPORT_ERRORS: dict[str, str] = {}
_loaded = False

M = TypeVar("M", bound=type)


def register_model(name: str, config_cls: type, recipe: dict[str, Any] | None = None,
                   variants: dict[str, dict[str, Any]] | None = None, task: str = "avvp") -> Callable[[M], M]:
    """Class decorator: register `model_cls(config)` under `name` for `task`.

    `recipe` holds the paper's training settings as TrainConfig field names
    (optimizer, lr, weight_decay, scheduler, epochs, batch_size, ...) plus a
    `model_config` dict of the paper's widths; `variants` changes them for a feature
    set (VALOR and VALOR++ train one network with two recipes). The trainer starts
    from them and the user's options override them.
    """
    if not (dataclasses.is_dataclass(config_cls) and issubclass(config_cls, ModelConfig)):
        raise TypeError(f"config of model {name!r} must be a dataclass deriving from ModelConfig")

    def decorate(model_cls: M) -> M:
        old = _REGISTRY.get(name)
        if old is not None and old.model_cls.__qualname__ != model_cls.__qualname__:
            raise ValueError(f"model name {name!r} is already registered by {old.model_cls.__qualname__}")
        _REGISTRY[name] = ModelEntry(name, model_cls, config_cls, dict(recipe or {}), dict(variants or {}), task)
        model_cls.model_name = name
        return model_cls

    return decorate


def _load_builtin() -> None:
    """Import the built-in families once; remember why one could not be imported."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name, module in BUILTIN_MODULES.items():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                _IMPORT_ERRORS[name] = f"{module} failed to import: {exc}"
        except Exception as exc:  # noqa: BLE001 - reported when the model is asked for
            _IMPORT_ERRORS[name] = f"{module} failed to import: {type(exc).__name__}: {exc}"


def model_names(task: str | None = None) -> list[str]:
    _load_builtin()
    return sorted(name for name, entry in _REGISTRY.items() if task is None or entry.task == task)


def get_entry(name: str) -> ModelEntry:
    _load_builtin()
    if name not in _REGISTRY and name in BUILTIN_MODULES and name not in _IMPORT_ERRORS:
        try:  # a family whose module landed after the first look
            importlib.import_module(BUILTIN_MODULES[name])
        except ModuleNotFoundError:
            pass
    entry = _REGISTRY.get(name)
    if entry is None:
        available = ", ".join(sorted(_REGISTRY)) or "none"
        reason = f" ({_IMPORT_ERRORS[name]})" if name in _IMPORT_ERRORS else ""
        raise UnknownModelError(f"unknown model {name!r}{reason}; available models: {available}")
    return entry


def model_config(name: str, **config: Any) -> ModelConfig:
    """The config dataclass of model `name` from keyword options (unknown options are an error)."""
    return get_entry(name).config_cls.from_dict(config)


def create_model(name: str, **config: Any) -> nn.Module:
    """Build model `name` from keyword config options."""
    entry = get_entry(name)
    return entry.model_cls(entry.config_cls.from_dict(config))


def model_recipe(name: str, feature_set: str | None = None) -> dict[str, Any]:
    return get_entry(name).recipe_for(feature_set)
