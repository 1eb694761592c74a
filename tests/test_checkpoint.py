"""Checkpoints: round trip, weights_only, feature checks, wrapped models, resuming."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genre_batch.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    CheckpointFormatError,
    ModelBundle,
    checkpoint_state,
    ensure_resumable,
    load_checkpoint_state,
    load_model_bundle,
    restore_training_state,
    save_checkpoint,
)
from genre_batch.config import FeatureConfig, ModelConfig
from genre_batch.errors import ConfigMismatchError, GenreBatchError
from genre_batch.models import build_model

LABELS = ("blues", "jazz", "metal")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL_CONFIG = ModelConfig(channels=(8, 16, 16, 32), stem_stride=4)
FEATURES = FeatureConfig()



class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: holds the real model as ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def tiles(n: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size), dtype=torch.uint8, generator=generator)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, seed: int = 0) -> None:
    torch.manual_seed(seed)  # dropout draws
    model.train()
    x = tiles(8, seed=seed)
    y = torch.arange(8) % len(LABELS)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.fixture
def trained() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = build_model(MODEL_CONFIG, len(LABELS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_steps(model, optimizer, steps=2)
    return model, optimizer


def make_state(model: nn.Module, optimizer: torch.optim.Optimizer | None, **overrides) -> dict:
    arguments = dict(
        model=model,
        optimizer=optimizer,
        labels=LABELS,
        feature_config=FEATURES,
        model_config=MODEL_CONFIG,
        epoch=4,
        metrics={"val_accuracy": np.float32(0.75), "val_loss": 0.6},
        history=[{"train_loss": 1.2}, {"train_loss": 0.9}],
        extra={"run": "unit", "seed": 0},
    )
    arguments.update(overrides)
    return checkpoint_state(**arguments)


def test_round_trip_gives_identical_logits(trained, tmp_path: Path) -> None:
    model, optimizer = trained
    model.eval()
    with torch.no_grad():
        expected_logits, expected_embedding = model.forward_with_embedding(tiles())
    path = tmp_path / "nested" / "model.pt"
    save_checkpoint(make_state(model, optimizer), path)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left behind

    bundle = load_model_bundle(path, expected_features=FeatureConfig())
    assert isinstance(bundle, ModelBundle)
    assert not bundle.model.training
    assert bundle.labels == LABELS
    assert bundle.model_config == MODEL_CONFIG
    assert bundle.feature_config == FEATURES
    assert bundle.epoch == 4
    assert bundle.metrics == {"val_accuracy": 0.75, "val_loss": 0.6}
    assert bundle.history == [{"train_loss": 1.2}, {"train_loss": 0.9}]
    assert bundle.extra == {"run": "unit", "seed": 0}
    assert bundle.code_version
    with torch.no_grad():
        logits, embedding = bundle.model.forward_with_embedding(tiles())
    torch.testing.assert_close(logits, expected_logits, rtol=0, atol=0)
    torch.testing.assert_close(embedding, expected_embedding, rtol=0, atol=0)


def test_bytes_and_file_objects(trained) -> None:
    model, _ = trained
    buffer = io.BytesIO()
    save_checkpoint(make_state(model, None), buffer)
    from_bytes = load_model_bundle(buffer.getvalue())
    buffer.seek(0)
    from_file = load_model_bundle(buffer)
    with torch.no_grad():
        torch.testing.assert_close(from_bytes.model(tiles()), from_file.model(tiles()))


def test_state_is_plain_and_loads_with_weights_only(trained, tmp_path: Path) -> None:
    model, optimizer = trained
    path = tmp_path / "model.pt"
    save_checkpoint(make_state(model, optimizer), path)
    raw = torch.load(path, weights_only=True)  # raises if anything but tensors/primitives was pickled
    assert raw["format"] == CHECKPOINT_FORMAT
    assert raw["labels"] == list(LABELS)
    assert raw["model_config"] == MODEL_CONFIG.to_dict()
    assert raw["feature_config"] == FEATURES.to_dict()
    assert type(raw["metrics"]["val_accuracy"]) is float
    assert all(tensor.device.type == "cpu" for tensor in raw["model_state"].values())
    assert isinstance(raw["code_version"], str)
    assert raw["model_state"]._metadata[""] == model.state_dict()._metadata[""]  # BatchNorm versions kept


def test_extra_must_be_plain(trained) -> None:
    model, _ = trained
    with pytest.raises(TypeError, match="extra"):
        make_state(model, None, extra={"path": Path("/tmp")})
    with pytest.raises(TypeError, match="float64"):  # subclasses float, yet weights_only refuses it
        make_state(model, None, extra={"threshold": np.float64(0.5)})


def test_numpy_labels_and_metrics_become_python_types(trained) -> None:
    model, _ = trained
    state = make_state(
        model,
        None,
        labels=np.array(LABELS),  # numpy.str_ items
        metrics={"val_accuracy": np.float64(0.5)},
        history=[{"train_loss": np.float32(1.0)}],
    )
    buffer = io.BytesIO()
    save_checkpoint(state, buffer)
    bundle = load_model_bundle(buffer.getvalue())
    assert bundle.labels == LABELS and type(bundle.labels[0]) is str
    assert bundle.metrics == {"val_accuracy": 0.5}


def test_arbitrary_pickles_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": Path("/tmp")}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint_state(path)
    with pytest.raises(CheckpointError):
        load_checkpoint_state(b"not a checkpoint at all")


def test_unknown_format_is_a_config_mismatch(trained, tmp_path: Path) -> None:
    model, _ = trained
    state = make_state(model, None)
    state["format"] = CHECKPOINT_FORMAT + 1
    path = tmp_path / "future.pt"
    save_checkpoint(state, path)
    with pytest.raises(CheckpointFormatError, match="format 2") as caught:
        load_model_bundle(path)
    assert isinstance(caught.value, ConfigMismatchError)
    assert isinstance(caught.value, GenreBatchError)
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(1)}, buffer)
    with pytest.raises(CheckpointFormatError, match="not a genre-batch checkpoint"):
        load_checkpoint_state(buffer.getvalue())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_checkpoint_state(tmp_path / "absent.pt")


def test_feature_mismatch_names_the_field(trained) -> None:
    model, _ = trained
    buffer = io.BytesIO()
    save_checkpoint(make_state(model, None), buffer)
    with pytest.raises(ConfigMismatchError, match=r"hop_length: expected 256, found 512"):
        load_model_bundle(buffer.getvalue(), expected_features=FeatureConfig(hop_length=256))


def test_wrapped_model_is_unwrapped(trained) -> None:
    model, optimizer = trained
    state = make_state(Wrapper(model), optimizer)
    assert not any(key.startswith("module.") for key in state["model_state"])
    assert set(state["model_state"]) == set(model.state_dict())
    # A state_dict saved from the wrapper itself (keys prefixed "module.") loads too.
    state["model_state"] = {k: v.clone() for k, v in Wrapper(model).state_dict().items()}
    assert all(key.startswith("module.") for key in state["model_state"])
    bundle = load_model_bundle(state)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(tiles()), model(tiles()))
    # And restoring into a wrapped model works.
    fresh = Wrapper(build_model(MODEL_CONFIG, len(LABELS)))
    assert restore_training_state(state, fresh, None) == 5
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(tiles()), model(tiles()))


def test_snapshot_is_a_copy(trained) -> None:
    model, optimizer = trained
    state = make_state(model, optimizer)
    before = {k: v.clone() for k, v in state["model_state"].items()}
    train_steps(model, optimizer, steps=1)
    for key, value in state["model_state"].items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_restore_training_state_resumes_optimizer(trained, tmp_path: Path) -> None:
    model, optimizer = trained
    path = tmp_path / "resume.pt"
    save_checkpoint(make_state(model, optimizer), path)
    train_steps(model, optimizer, steps=2, seed=1)  # the uninterrupted run goes on

    torch.manual_seed(123)
    resumed_model = build_model(MODEL_CONFIG, len(LABELS))
    resumed_optimizer = torch.optim.AdamW(resumed_model.parameters(), lr=1e-3)
    next_epoch = restore_training_state(load_checkpoint_state(path), resumed_model, resumed_optimizer)
    assert next_epoch == 5
    assert float(resumed_optimizer.state_dict()["state"][0]["step"]) == 2.0
    train_steps(resumed_model, resumed_optimizer, steps=2, seed=1)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[name], tensor, msg=name)


def test_restore_without_optimizer_state_is_explicit(trained) -> None:
    model, optimizer = trained
    state = make_state(model, None)
    with pytest.raises(CheckpointError, match="optimizer=None"):
        restore_training_state(state, build_model(MODEL_CONFIG, len(LABELS)), optimizer)
    assert restore_training_state(state, build_model(MODEL_CONFIG, len(LABELS)), None) == 5


def test_model_config_mismatch_on_restore(trained) -> None:
    model, _ = trained
    state = make_state(model, None)
    other = build_model(ModelConfig(channels=(8, 16, 32, 32)), len(LABELS))
    with pytest.raises(ConfigMismatchError, match="do not fit"):
        restore_training_state(state, other, None)


def test_resume_needs_the_same_genres_and_tiles(trained) -> None:
    model, _ = trained
    state = make_state(model, None)
    ensure_resumable(state, LABELS, FEATURES)  # the same run, nothing changed
    with pytest.raises(CheckpointError, match="cannot resume.*--run"):
        ensure_resumable(state, ("blues", "metal", "jazz"), FEATURES)  # reordered: ids would shift
    with pytest.raises(CheckpointError, match="cannot resume"):
        ensure_resumable(state, LABELS + ("pop",), FEATURES)  # grown
    with pytest.raises(ConfigMismatchError, match="hop_length"):
        ensure_resumable(state, LABELS, FeatureConfig(hop_length=256))
