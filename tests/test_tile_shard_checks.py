"""Every reader of tiles checks the feature config each shard carries against its ingest
version's: a shard made differently makes `train`, `index` and `nightly` fail at once, in one
line that names the shard and the fields, before any Ray work and with nothing published."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from genre_batch import schemas
from genre_batch.artifacts import published_ingest, publish_ingest_version
from genre_batch.catalogue import list_catalogue
from genre_batch.cli import main
from genre_batch.config import FeatureConfig, SplitConfig
from genre_batch.errors import ConfigMismatchError
from genre_batch.ingest import ingest_group
from genre_batch.layout import RootLayout
from genre_batch.storage import latest_version, new_version
from genre_batch.tiles import check_tile_shards
from tests.audio_helpers import noisy_sine, write_audio
from tests.model_helpers import publish_untrained_model

OTHER = FeatureConfig(n_mels=128)


def small_root(tmp_path: Path) -> tuple[str, str]:
    """A published ingest of two songs (two genres, both train) and an untrained model,
    made without Ray; returns (catalogue, root)."""
    catalogue = tmp_path / "music"
    for genre, freq in (("rock", 220.0), ("jazz", 330.0)):
        write_audio(catalogue / genre / f"{genre}.wav", noisy_sine(freq, 7.0, 22_050), 22_050, "WAV")
    files = [dataclasses.replace(f, split_override="train") for f in list_catalogue(str(catalogue))]
    root = str(tmp_path / "root")
    layout, version = RootLayout(root), new_version()
    songs, errors = ingest_group(files, layout.tiles_dir(version), layout.tiles_prefix(version),
                                 FeatureConfig(), SplitConfig())
    publish_ingest_version(layout, version, catalogue=str(catalogue), labels="folder", features=FeatureConfig(),
                           splits=SplitConfig(), songs=songs, errors=errors, extra_counts={"files": len(files)})
    publish_untrained_model(root, "untrained")
    return str(catalogue), root


def restamp(shard: str, features: FeatureConfig | None) -> None:
    """Rewrite a shard's footer with another feature config (or none); the tiles stay. The
    manifest's checksum follows, as from a writer that made a whole shard the wrong way: the
    config check, not the size check, is what must catch it."""
    import json
    from pathlib import Path

    from genre_batch.storage import FileSum

    table = pq.read_table(shard)
    metadata = {} if features is None else {"feature_config": features.to_dict()}
    pq.write_table(table.cast(schemas.with_metadata(schemas.TILES, metadata)), shard)
    ingest_area = Path(shard).parents[2]
    manifest_path = ingest_area / (ingest_area / "LATEST").read_text().strip() / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["checksums"][str(Path(shard).relative_to(ingest_area))] = FileSum.of_local(shard).to_dict()
    manifest_path.write_text(json.dumps(manifest))


@pytest.fixture
def tampered(tmp_path):
    catalogue, root = small_root(tmp_path)
    shard = published_ingest(root).tile_uris[0]
    restamp(shard, OTHER)
    return {"catalogue": catalogue, "root": root, "shard": shard}


@pytest.mark.parametrize("command", ["train", "index", "nightly"])
def test_a_shard_made_differently_fails_the_job_in_one_line(tampered, command, capsys):
    import ray

    root = tampered["root"]
    args = {"train": ["train", "--root", root, "--epochs", "1"],
            "index": ["index", "--root", root],
            "nightly": ["nightly", "--catalogue", tampered["catalogue"], "--root", root]}[command]
    layout = RootLayout(root)
    before = [latest_version(area, "x") for area in (layout.ingest_area, layout.models_area)]

    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"error: tile shard {tampered['shard']} was featurised differently: "
                   f"n_mels: expected 256, found 128")
    assert not ray.is_initialized()  # failed before any Ray work
    assert [latest_version(area, "x") for area in (layout.ingest_area, layout.models_area)] == before
    assert not (Path(root) / "index").exists()


def test_the_check_names_the_shard_and_every_differing_field(tmp_path):
    _, root = small_root(tmp_path)
    ingest = published_ingest(root)
    check_tile_shards(ingest.tile_uris, ingest.feature_config)  # as written: passes
    restamp(ingest.tile_uris[-1], dataclasses.replace(OTHER, top_db=60.0))
    with pytest.raises(ConfigMismatchError, match="n_mels: expected 256, found 128; top_db: expected 80.0, found 60.0"):
        published_ingest(root).check_tiles()


def test_a_shard_without_a_feature_config_is_refused(tmp_path):
    _, root = small_root(tmp_path)
    ingest = published_ingest(root)
    restamp(ingest.tile_uris[0], None)
    with pytest.raises(ConfigMismatchError, match="carries no feature config"):
        published_ingest(root).check_tiles()
