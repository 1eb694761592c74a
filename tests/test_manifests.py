"""The typed manifests: what they write is what they read back, and a document that is not
what this code writes (another kind, a field missing or unknown) is a named error."""

from __future__ import annotations

import json
import math

import pytest

from genre_batch.config import FeatureConfig, ModelConfig, SplitConfig, TrainConfig
from genre_batch.errors import ConfigMismatchError
from genre_batch.manifests import IndexManifest, IngestManifest, ManifestError, RunMetrics, SplitMetrics
from genre_batch.pooling import choose_threshold

INGEST = IngestManifest(
    version="20261202T000000Z-abcdef", catalogue="s3://music/catalogue", labels="folder",
    feature_config=FeatureConfig(tile_hop_frames=128), split_config=SplitConfig(seed=3),
    tiles=("20261202T000000Z-abcdef/tiles/part-1.parquet",), counts={"files": 3, "songs": 2, "tiles": 9,
                                                                    "errors": 1, "labelled": 2},
    splits={"train": 2, "valid": 0, "test": 0}, seconds=1.25,
)
SPLIT = SplitMetrics(songs=0, songs_with_unknown_genre=0, tiles=0, tile_accuracy=float("nan"),
                     song_accuracy=float("nan"), per_genre={"rock": float("nan")}, confusion=[[0, 0]],
                     confusion_columns=["rock", "unknown"])


def through_json(data: dict) -> dict:
    return json.loads(json.dumps(data))


def test_an_ingest_manifest_reads_back_as_written_and_keeps_its_json_shape():
    data = through_json(INGEST.to_dict())
    assert IngestManifest.from_dict(data) == INGEST
    assert data["files"] == {"tiles": list(INGEST.tiles), "songs": "songs.parquet", "errors": "errors.parquet"}
    assert "previous" not in data and data["kind"] == "ingest"  # optional keys are absent, not null


def test_an_index_manifest_reads_back_as_written():
    threshold = choose_threshold([0.9, 0.4], [True, False])
    manifest = IndexManifest(
        version="v", model_run="cnn-v", model_uri="/r/models/cnn-v/model.pt", model_sha256="0" * 64,
        ingest_version="i", labels=("jazz", "rock"), feature_config=FeatureConfig(), model_config=ModelConfig(),
        embedding_dim=128, n_trees=5, songs=2, threshold=threshold,
    )
    data = through_json(manifest.to_dict())
    assert IndexManifest.from_dict(data) == manifest and data["model"] == manifest.model_uri


def test_run_metrics_read_back_with_their_nans():
    metrics = RunMetrics(run="r", ingest_version="i", labels=("rock",), best_epoch=1,
                         history=({"epoch": 1.0, "valid_accuracy": float("nan")},), feature_config=FeatureConfig(),
                         train_config=TrainConfig(use_gpu=False), valid=SPLIT, test=SPLIT)
    back = RunMetrics.from_dict(json.loads(json.dumps(metrics.to_dict())))  # NaN, as json writes it
    assert back.train_config == metrics.train_config and back.epochs == 1
    assert math.isnan(back.valid.song_accuracy) and math.isnan(back.history[0]["valid_accuracy"])


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("counts"), r"missing \['counts'\]"),
    (lambda d: d.update(colour="blue"), r"unknown \['colour'\]"),
    (lambda d: d.update(kind="index"), "is not an ingest manifest"),
    (lambda d: d["files"].update(songs="other.parquet"), "tables named"),
    (lambda d: d["feature_config"].update(n_chroma=12), "unknown FeatureConfig fields"),
])
def test_a_manifest_that_is_not_ours_is_refused_by_name(change, message):
    data = through_json(INGEST.to_dict())
    change(data)
    with pytest.raises(ConfigMismatchError, match=message):  # ManifestError is one
        IngestManifest.from_dict(data, where="s3://b/ingest/v/manifest.json")


def test_the_error_names_the_file(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({**INGEST.to_dict(), "kind": "ingest", "extra": 1}))
    with pytest.raises(ManifestError, match=str(path)):
        IngestManifest.read(str(path))


def test_an_index_manifest_keeps_its_centring_mean_and_reads_old_ones_without():
    threshold = choose_threshold([0.9, 0.4], [True, False])
    manifest = IndexManifest(
        version="v", model_run="cnn-v", model_uri="m", model_sha256="0" * 64, ingest_version="i",
        labels=("jazz", "rock"), feature_config=FeatureConfig(), model_config=ModelConfig(), embedding_dim=2,
        n_trees=5, songs=2, threshold=threshold, embedding_mean=(0.25, -0.5),
    )
    data = through_json(manifest.to_dict())
    assert data["embedding_mean"] == [0.25, -0.5] and IndexManifest.from_dict(data) == manifest
    del data["embedding_mean"]  # an index from before centring
    assert IndexManifest.from_dict(data).embedding_mean is None


def test_an_index_manifest_keeps_its_song_decision_and_reads_old_ones_without():
    from genre_batch.decision import SongDecision

    threshold = choose_threshold([0.9, 0.4], [True, False])
    decision = SongDecision("vote", 0.5, "auto", {"mean": 0.5, "vote": 0.75})
    manifest = IndexManifest(
        version="v", model_run="cnn-v", model_uri="m", model_sha256="0" * 64, ingest_version="i",
        labels=("jazz", "rock"), feature_config=FeatureConfig(), model_config=ModelConfig(), embedding_dim=2,
        n_trees=5, songs=2, threshold=threshold, song_decision=decision,
    )
    data = through_json(manifest.to_dict())
    assert data["song_decision"]["rule"] == "vote" and IndexManifest.from_dict(data) == manifest
    del data["song_decision"]
    assert IndexManifest.from_dict(data).song_decision is None
