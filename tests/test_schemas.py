"""Output schemas: every column documented, docs/SCHEMAS.md generated from them, configs in metadata."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from genre_batch import schemas
from genre_batch.config import FeatureConfig, ModelConfig

SCHEMAS_MD = Path(__file__).resolve().parents[1] / "docs" / "SCHEMAS.md"


@pytest.mark.parametrize("table", sorted(schemas.TABLES))
def test_every_field_has_a_doc(table: str) -> None:
    schema, where = schemas.TABLES[table]
    assert where.strip()
    for field in schema:
        doc = (field.metadata or {}).get(b"doc", b"").decode()
        assert doc.strip(), f"{table}.{field.name} has no doc"


def test_field_names_are_unique_per_table() -> None:
    for table, (schema, _) in schemas.TABLES.items():
        assert len(set(schema.names)) == len(schema.names), table


def test_docs_schemas_md_is_generated_from_the_code() -> None:
    assert SCHEMAS_MD.exists(), "run: python -m genre_batch.schemas > docs/SCHEMAS.md"
    assert SCHEMAS_MD.read_text(encoding="utf-8") == schemas.render_markdown(), (
        "docs/SCHEMAS.md is stale; run: python -m genre_batch.schemas > docs/SCHEMAS.md"
    )


def test_markdown_lists_every_column_of_every_table() -> None:
    text = schemas.render_markdown()
    for table, (schema, _) in schemas.TABLES.items():
        section = text.split(f"## {table}\n", 1)[1].split("\n## ", 1)[0]
        for field in schema:
            assert f"| `{field.name}` | `{field.type}` |" in section, (table, field.name)


def test_feature_config_round_trips_through_schema_metadata() -> None:
    config = FeatureConfig(n_mels=128, tile_hop_frames=128)
    schema = schemas.with_metadata(schemas.TILES, {"feature_config": config.to_dict(), "labels": ["a", "b"]})

    assert schemas.feature_config_of(schema) == config
    assert schemas.read_metadata(schema)["labels"] == ["a", "b"]
    assert schema.equals(schemas.TILES, check_metadata=False)


def test_schema_without_metadata_has_no_feature_config() -> None:
    assert schemas.read_metadata(schemas.TILES) == {}
    assert schemas.feature_config_of(schemas.TILES) is None
    assert schemas.feature_config_of(schemas.with_metadata(schemas.TILES, {"labels": []})) is None


def test_predictions_embedding_width_follows_the_model() -> None:
    assert schemas.predictions_schema(64).field("embedding").type == pa.list_(pa.float32(), 64)
    default_dim = ModelConfig().embedding_dim
    assert schemas.PREDICTIONS.field("embedding").type == pa.list_(pa.float32(), default_dim)
