"""Self-describing model checkpoints (pure torch, no Ray).

A checkpoint is a plain dict of tensors and Python primitives, so ``torch.load(...,
weights_only=True)`` reads it without unpickling arbitrary objects::

    format           CHECKPOINT_FORMAT (int)
    code_version     genre-batch version that wrote it (str)
    model_config     ModelConfig.to_dict()   -> the model can be rebuilt exactly
    feature_config   FeatureConfig.to_dict() -> readers check the tiles they feed match
    labels           label vocabulary, index = class id (list[str])
    model_state      state_dict of the unwrapped model, on CPU
    optimizer_state  optimizer.state_dict() on CPU, or None
    epoch            index of the epoch just completed (0-based)
    metrics          that epoch's metrics (dict[str, float])
    history          one metrics dict per completed epoch
    extra            caller's own primitives (dict)

Like whisper's ``ModelDimensions(**checkpoint["dims"])``, ``load_model_bundle`` rebuilds the
model from the stored ``model_config`` instead of trusting the caller's.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import pickle
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from genre_batch import code_version
from genre_batch.config import FeatureConfig, ModelConfig, ensure_same_features
from genre_batch.errors import ConfigMismatchError, GenreBatchError
from genre_batch.models import EmbeddingModel, build_model

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1

_REQUIRED_KEYS = (
    "format",
    "code_version",
    "model_config",
    "feature_config",
    "labels",
    "model_state",
    "optimizer_state",
    "epoch",
    "metrics",
    "history",
    "extra",
)
# Prefixes that wrappers add to state_dict keys: DistributedDataParallel / DataParallel
# ("module.") and torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

_PLAIN_TYPES = (bool, int, float, str)
_TORCH_TYPES = (torch.Tensor, torch.dtype, torch.device, torch.Size)

PathOrFile = str | os.PathLike[str] | BinaryIO


class CheckpointError(GenreBatchError):
    """A checkpoint could not be read, or lacks what the caller needs (e.g. optimiser state).

    Weights that do not fit the model raise ``ConfigMismatchError`` instead.
    """


class CheckpointFormatError(CheckpointError, ConfigMismatchError):
    """A checkpoint was written in a format version this code does not understand."""


@dataclass
class ModelBundle:
    """A loaded model with everything needed to use it correctly."""

    model: EmbeddingModel  # in eval mode
    labels: tuple[str, ...]  # label vocabulary, index = class id
    feature_config: FeatureConfig
    model_config: ModelConfig
    epoch: int
    metrics: dict[str, float]
    history: list[dict[str, float]]
    code_version: str = "unknown"
    extra: dict[str, Any] = field(default_factory=dict)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DDP/DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def checkpoint_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    labels: Sequence[str],
    feature_config: FeatureConfig,
    model_config: ModelConfig,
    epoch: int,
    metrics: Mapping[str, float],
    history: Sequence[Mapping[str, float]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Snapshot training state as a plain dict (tensors copied to CPU, primitives only).

    ``epoch`` is the index of the epoch just completed; ``restore_training_state`` returns
    ``epoch + 1``. Metric values are converted to ``float`` (numpy scalars would make the
    checkpoint unloadable with ``weights_only=True``) and labels to ``str``; ``extra`` must
    hold only Python primitives, lists, tuples, dicts with str keys and tensors (numpy
    scalars are refused), else ``TypeError``.
    """
    if len(labels) == 0 or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"labels must be a non-empty sequence of str, got {labels!r}")
    label_list = [str(label) for label in labels]  # numpy.str_ -> str
    if len(set(label_list)) != len(label_list):
        raise ValueError(f"labels must be unique, got {label_list!r}")
    state = {
        "format": CHECKPOINT_FORMAT,
        "code_version": code_version(),
        "model_config": model_config.to_dict(),
        "feature_config": feature_config.to_dict(),
        "labels": label_list,
        "model_state": _to_cpu(unwrap_model(model).state_dict()),
        "optimizer_state": _to_cpu(optimizer.state_dict()) if optimizer is not None else None,
        "epoch": int(epoch),
        "metrics": _float_metrics(metrics),
        "history": [_float_metrics(row) for row in history],
        "extra": _to_cpu(dict(extra or {})),
    }
    _check_plain(state, "checkpoint")
    return state


def save_checkpoint(state: Mapping[str, Any], path_or_file: PathOrFile) -> None:
    """``torch.save`` a checkpoint state to a local path (atomically, parents created) or a binary file."""
    if not isinstance(path_or_file, (str, os.PathLike)):
        torch.save(dict(state), path_or_file)
        return
    path = Path(path_or_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then rename: a reader never sees half a checkpoint.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp_file:
            torch.save(dict(state), tmp_file)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_checkpoint_state(
    path_or_file_or_bytes: PathOrFile | bytes,
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check its format version.

    Raises ``CheckpointFormatError`` (a ``ConfigMismatchError``) for a format this code does
    not know, ``CheckpointError`` for anything that is not a readable checkpoint, and
    ``FileNotFoundError`` for a missing path.
    """
    where = _describe(path_or_file_or_bytes)
    source: Any = path_or_file_or_bytes
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise FileNotFoundError(f"no checkpoint at {where}")
    try:
        state: dict[str, Any] = torch.load(source, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"could not read checkpoint {where}: {e}") from e
    _check_format(state, where)
    return state


# A self-supervised (pretrain) checkpoint: ``extra["kind"]``; its head is a placeholder of one
# class with this label (an encoder has no genres).
KIND_KEY, PRETRAIN_KIND, PRETRAIN_LABEL = "kind", "pretrain", "(self-supervised)"


def is_pretrain(state: Mapping[str, Any]) -> bool:
    return dict(state.get("extra") or {}).get(KIND_KEY) == PRETRAIN_KIND


def load_model_bundle(
    path_or_file_or_bytes: PathOrFile | bytes | Mapping[str, Any],
    expected_features: FeatureConfig | None = None,
    map_location: Any = "cpu",
    allow_pretrain: bool = False,
) -> ModelBundle:
    """Rebuild the model from the checkpoint's own ``ModelConfig``, load its weights, eval mode.

    A pretrain checkpoint (``is_pretrain``) is refused with a ``CheckpointError`` that says what
    it is, unless ``allow_pretrain``. Also accepts a state dict that ``load_checkpoint_state`` already returned. When
    ``expected_features`` is given, a different stored ``FeatureConfig`` raises
    ``ConfigMismatchError`` naming each differing field. If ``map_location`` is a device
    (str or ``torch.device``) the model is moved there.
    """
    where = _describe(path_or_file_or_bytes)
    if isinstance(path_or_file_or_bytes, Mapping):
        state = dict(path_or_file_or_bytes)
        _check_format(state, where)
    else:
        state = load_checkpoint_state(path_or_file_or_bytes, map_location=map_location)

    if is_pretrain(state) and not allow_pretrain:
        raise CheckpointError(
            f"{where} is a self-supervised (pretrain) run: an encoder without genres, not a genre model; "
            "fine-tune it with `genre-batch train --init RUN`"
        )
    feature_config = FeatureConfig.from_dict(state["feature_config"])
    if expected_features is not None:
        ensure_same_features(expected_features, feature_config, where=f"model checkpoint {where}")
    model_config = ModelConfig.from_dict(state["model_config"])
    labels = tuple(state["labels"])
    model = build_model(model_config, n_classes=len(labels))
    _load_weights(model, state, where)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    return ModelBundle(
        model=model,
        labels=labels,
        feature_config=feature_config,
        model_config=model_config,
        epoch=int(state["epoch"]),
        metrics=dict(state["metrics"]),
        history=[dict(row) for row in state["history"]],
        code_version=str(state["code_version"]),
        extra=dict(state["extra"]),
    )


def ensure_resumable(state: Mapping[str, Any], labels: Sequence[str], feature_config: FeatureConfig) -> None:
    """A run resumes only on the same label vocabulary and tiles: class ids are positions in
    the vocabulary, so a grown or reordered one would silently relabel the trained head."""
    stored = [str(label) for label in state["labels"]]
    if stored != list(labels):
        raise CheckpointError(
            f"cannot resume: the run was trained on genres {stored}, the published tiles have {list(labels)}; "
            "start a new run (--run NAME)"
        )
    ensure_same_features(FeatureConfig.from_dict(state["feature_config"]), feature_config, "the published tiles")


def restore_training_state(
    state: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
) -> int:
    """Load weights (and optimiser state, if ``optimizer`` is given) to resume training.

    ``model`` may be wrapped (DDP, torch.compile). Returns the next epoch to run
    (stored ``epoch + 1``). Raises ``CheckpointError`` if an optimiser is given but the
    checkpoint holds no optimiser state: pass ``optimizer=None`` to start a fresh optimiser
    from the stored weights on purpose.
    """
    where = "training checkpoint"
    _load_weights(unwrap_model(model), state, where)
    if optimizer is not None:
        optimizer_state = state.get("optimizer_state")
        if optimizer_state is None:
            raise CheckpointError(
                f"{where} holds no optimizer state; pass optimizer=None to resume from the weights only"
            )
        try:
            optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{where}: optimizer state does not fit this optimizer: {e}") from e
    next_epoch = int(state["epoch"]) + 1
    logger.info("restored training state from epoch %d; next epoch %d", next_epoch - 1, next_epoch)
    return next_epoch


def _check_format(state: Any, where: str) -> None:
    if not isinstance(state, Mapping) or "format" not in state:
        raise CheckpointFormatError(f"{where} is not a genre-batch checkpoint (no 'format' key)")
    found_format = state["format"]
    if found_format != CHECKPOINT_FORMAT:
        raise CheckpointFormatError(
            f"{where} has checkpoint format {found_format!r}; this code (genre-batch {code_version()}) "
            f"reads format {CHECKPOINT_FORMAT} only (written by genre-batch {state.get('code_version', 'unknown')})"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{where} lacks checkpoint fields {missing}")


def _load_weights(model: nn.Module, state: Mapping[str, Any], where: str) -> None:
    weights = _strip_wrapper_prefixes(state["model_state"])
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise ConfigMismatchError(
            f"{where}: stored weights (model_config {state.get('model_config')}, "
            f"{len(state.get('labels', []))} labels) do not fit the model: {e}"
        ) from e


def _strip_wrapper_prefixes(weights: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Drop a ``module.`` / ``_orig_mod.`` prefix that every key carries (a wrapped model saved as is)."""
    stripped_weights: OrderedDict[str, torch.Tensor] = OrderedDict(weights)
    metadata = getattr(weights, "_metadata", None)
    if metadata is not None:  # per-module versions, e.g. BatchNorm's; the caller's copy stays as is
        stripped_weights._metadata = copy.deepcopy(metadata)  # type: ignore[attr-defined]
    stripped = True
    while stripped_weights and stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in stripped_weights):
                consume_prefix_in_state_dict_if_present(stripped_weights, prefix)
                stripped = True
    return stripped_weights


def _to_cpu(value: Any) -> Any:
    """Deep copy of nested dicts/lists/tuples with every tensor detached and copied to CPU.

    An ``OrderedDict`` (a ``state_dict``) stays one and keeps its ``_metadata``.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, OrderedDict):
        copied = OrderedDict((key, _to_cpu(item)) for key, item in value.items())
        metadata = getattr(value, "_metadata", None)
        if metadata is not None:
            copied._metadata = copy.deepcopy(metadata)  # type: ignore[attr-defined]
        return copied
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_cpu(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_to_cpu(item) for item in value)
    return value


def _float_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {str(name): float(value) for name, value in metrics.items()}


def _check_plain(value: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``value`` is loadable with ``torch.load(weights_only=True)``.

    Types are checked exactly: ``numpy.float64`` subclasses ``float`` but pickles as a numpy
    object, which ``weights_only`` refuses.
    """
    if value is None or type(value) in _PLAIN_TYPES or isinstance(value, _TORCH_TYPES):
        return
    if type(value) in (list, tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):  # int keys: optimizer state is keyed by param index
                raise TypeError(f"{where} has a key of type {type(key).__name__}: {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; checkpoints hold only primitives and tensors")


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Mapping):
        return "<state dict>"
    return str(getattr(source, "name", "<file object>"))


def init_from_pretrain(model: nn.Module, state: Mapping[str, Any], feature_config: FeatureConfig) -> None:
    """Start a genre model from a pretrain run's encoder: every weight but the head's (which is
    the model's own, new). The pretrain run must be of the model's family and sizes and of
    these tiles, else ``CheckpointError`` / ``ConfigMismatchError`` naming what differs."""
    if not is_pretrain(state):
        raise CheckpointError("--init takes a pretrain run (genre-batch pretrain); this checkpoint is a genre model")
    ensure_same_features(FeatureConfig.from_dict(state["feature_config"]), feature_config, "the pretrain run's tiles")
    target = unwrap_model(model)
    stored = ModelConfig.from_dict(state["model_config"])
    own = getattr(target, "config", None)
    if own is not None and (stored.name, stored.channels, stored.embedding_dim) != (own.name, own.channels, own.embedding_dim):
        raise CheckpointError(f"--init: the pretrain run is a {stored.name} {stored.channels}, the model to train a "
                              f"{own.name} {own.channels}: pretrain the family you train (--model)")
    encoder = {key: value for key, value in state["model_state"].items() if not key.startswith("head.")}
    missing, unexpected = target.load_state_dict(encoder, strict=False)
    if unexpected or any(not key.startswith("head.") for key in missing):
        raise CheckpointError(f"--init: the pretrain weights do not fit the model (missing {missing}, unexpected {unexpected})")
