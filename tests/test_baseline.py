"""The MFCC + logistic-regression yardstick: librosa's MFCCs from the stored tiles, statistics
streamed shard by shard, a deterministic L-BFGS fit, and the `baseline` command."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from genre_batch.artifacts import publish_ingest_version, published_ingest
from genre_batch.baseline import LogisticRegression, mfcc_frames, song_features
from genre_batch.catalogue import list_catalogue
from genre_batch.cli import main
from genre_batch.config import FeatureConfig, SplitConfig
from genre_batch.features import dequantise
from genre_batch.ingest import ingest_group
from genre_batch.layout import RootLayout
from genre_batch.storage import new_version
from tests.audio_helpers import noisy_sine, write_audio

FEATURES = FeatureConfig()


def test_mfccs_are_librosas_of_the_tiles_log_mel():
    import librosa

    tiles = np.random.default_rng(0).integers(0, 256, (2, 256, 256), dtype=np.uint8)
    db = np.concatenate(list(dequantise(tiles, FEATURES)), axis=1)
    expected = librosa.feature.mfcc(S=db, n_mfcc=20)
    np.testing.assert_allclose(mfcc_frames(tiles, FEATURES), expected, rtol=1e-4, atol=1e-3)
    assert mfcc_frames(tiles, FEATURES, n_mfcc=13).shape == (13, 512)


def blobs(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = np.array([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    return centres[y] + rng.normal(size=(n, 2)) + np.array([100.0, -50.0]), y  # offset: standardising matters


def test_logistic_regression_separates_blobs_and_is_deterministic():
    x, y = blobs(0)
    first = LogisticRegression().fit(x, y, 3)
    second = LogisticRegression().fit(x, y, 3)
    np.testing.assert_array_equal(first.weights, second.weights)
    x_test, y_test = blobs(1)
    probs = first.predict_proba(x_test)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == y_test).mean() >= 0.95


def test_a_larger_penalty_gives_smaller_weights():
    x, y = blobs(0)
    loose, tight = LogisticRegression(l2=1e-3).fit(x, y, 3), LogisticRegression(l2=10.0).fit(x, y, 3)
    assert np.abs(tight.weights).sum() < 0.2 * np.abs(loose.weights).sum()
    with pytest.raises(ValueError):
        LogisticRegression(l2=-1.0)


GENRES = {"low": 150.0, "mid": 600.0, "high": 2400.0}  # one pitch per genre: MFCCs tell them apart
SIDES = ("train", "train", "valid", "test")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    """A published ingest of 12 songs, made without Ray, in 3 tile shards (a song's tiles in
    one shard each, as ingest writes them)."""
    tmp = tmp_path_factory.mktemp("baseline")
    catalogue = tmp / "music"
    for genre, hz in GENRES.items():
        for index, _ in enumerate(SIDES):
            write_audio(catalogue / genre / f"{genre}-{index}.wav", noisy_sine(hz * (1 + 0.03 * index), 7.0, 22_050,
                                                                               seed=index), 22_050, "WAV")
    side_of = {f"{genre}/{genre}-{i}.wav": side for genre in GENRES for i, side in enumerate(SIDES)}
    files = [dataclasses.replace(f, split_override=side_of[f.relative_path]) for f in list_catalogue(str(catalogue))]
    root = str(tmp / "root")
    layout, version = RootLayout(root), new_version()
    songs, errors = [], []
    for group in (files[:4], files[4:8], files[8:]):
        more, failed = ingest_group(group, layout.tiles_dir(version), layout.tiles_prefix(version), FEATURES, SplitConfig())
        songs, errors = songs + more, errors + failed
    publish_ingest_version(layout, version, catalogue=str(catalogue), labels="folder", features=FEATURES,
                           splits=SplitConfig(), songs=songs, errors=errors, extra_counts={"files": len(files)})
    return root


def test_song_statistics_do_not_depend_on_how_songs_are_sharded(root):
    ingest = published_ingest(root)
    ids = set(pd.read_parquet(ingest.songs_uri)["song_id"])
    together = song_features(ingest.tile_uris, ids, FEATURES)
    one_by_one = {}
    for uri in ingest.tile_uris:
        one_by_one.update(song_features([uri], ids, FEATURES))
    assert set(together) == ids and all(vector.shape == (40,) for vector in together.values())
    for song_id in ids:
        np.testing.assert_allclose(together[song_id], one_by_one[song_id])


def test_the_baseline_command_tells_the_genres_apart(root, capsys):
    assert main(["baseline", "--root", root, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["train_songs"], report["valid_songs"], report["test_songs"]) == (6, 3, 3)
    assert report["valid_song_accuracy"] == report["test_song_accuracy"] == 1.0
    assert report["per_genre_test"] == {genre: 1.0 for genre in sorted(GENRES)}
    assert report["ingest_version"] == published_ingest(root).version
    assert main(["baseline", "--root", root]) == 0
    assert "MFCC(20) mean/std + logistic regression" in capsys.readouterr().out


def test_the_baseline_refuses_tiles_made_differently(root, capsys, tmp_path):
    import shutil

    from tests.test_tile_shard_checks import restamp

    copy = str(tmp_path / "root")
    shutil.copytree(root, copy)
    shard = published_ingest(copy).tile_uris[0]
    restamp(shard, FeatureConfig(top_db=60.0))
    assert main(["baseline", "--root", copy]) == 1
    assert "was featurised differently: top_db: expected 80.0, found 60.0" in capsys.readouterr().err
