"""AVVP models (HAN, VALOR, MUG, LINK, EAR) behind one registry and one interface.

The contract every model implements (subclass `AVVPModel`, register with
`register_model(name, ConfigDataclass, recipe={...}, variants={...})`):

Construction
    `Model(config)` where `config` is the model's dataclass (deriving from
    `AVVPInputs`, so `to_dict()`/`from_dict()` round-trip it through JSON and
    checkpoints, with range checks). Its `feature_set` and input shapes say what it
    reads (`inference.data.FEATURE_SETS`); the trainer fills the shapes from the data.
    Class attribute `uses_pseudo_labels` and property `needs_priors` tell the task
    what to load and check.

`forward(batch: dict) -> dict`
    `batch` is the dict of tensors of `inference.data.AVVPDataset` (B clips): the
    INPUTS audio (B, Ta, Da), visual (B, Tv, Dv), motion (B, 10, 512) where the
    feature set has it, prior_audio / prior_visual (B, 10, 25) for models that
    read priors, index (B,); in training also the TARGETS label (B, 25),
    pseudo_audio / pseudo_visual (B, 10, 25), has_pseudo (B,). Forward must read
    inputs only: evaluation batches hold nothing else. Returns at least:
        global          (B, 25)      video-level probabilities
        audio, visual   (B, 25)      modality video-level probabilities
        segment_audio   (B, 10, 25)  segment (frame-level) probabilities
        segment_visual  (B, 10, 25)
    all in [0, 1], plus whatever its loss needs (HAN: logits_audio/logits_visual
    (B, 10, 25), feat_audio/feat_visual (B, 10, hidden)). Prediction binarises
    with the published rule: segment prob >= 0.5 AND global prob >= 0.5.

`loss(outputs, batch) -> (total, parts)`
    `total` a scalar tensor to backpropagate, `parts` a dict of floats for the
    log (e.g. {"video": .., "segment_audio": .., "segment_visual": ..}).
    `inference.models.base.pseudo_label_loss` is the shared VALOR/LINK term.

`fit_train_labels(pseudo_audio, pseudo_visual) -> str` (optional)
    For a loss that needs statistics of the training targets (EAR's class-balance
    weights): the AVVP task calls it before the first epoch with the TRAIN clips'
    segment pseudo-labels (N, 10, 25) (those that have them) and logs the note it
    returns; the model keeps the statistics as buffers, so they are in checkpoints.

Reusable pieces: `inference.models.han.HybridAttentionEncoder` and
`MMILPooling` (the HAN tail), `inference.models.base.check_outputs` (tests).
"""
from inference.models.base import OUTPUT_KEYS, AVVPModel, check_outputs, pseudo_label_loss
from inference.models.registry import (
    ModelConfig,
    UnknownModelError,
    create_model,
    get_entry,
    model_config,
    model_names,
    model_recipe,
    register_model,
)

__all__ = [
    "OUTPUT_KEYS", "AVVPModel", "check_outputs", "pseudo_label_loss", "ModelConfig", "UnknownModelError",
    "create_model", "get_entry", "model_config", "model_names", "model_recipe", "register_model",
]
