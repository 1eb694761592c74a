"""The schema of every Parquet output, in one place, each field documented for analysts.

``python -m genre_batch.schemas`` prints docs/SCHEMAS.md from these definitions and from the
typed manifests (``genre_batch.manifests``); a test checks the two agree, so the
documentation cannot drift from the code.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import pyarrow as pa

from genre_batch.config import FeatureConfig

# Key under which every Parquet file carries the JSON of the configs it was made with.
METADATA_KEY = b"genre_batch"


def _field(name: str, type_: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


TILES = pa.schema(
    [
        _field("song_id", pa.string(), "Stable id of the song (hash of its catalogue-relative path).", False),
        _field("tile_index", pa.int32(), "Position of the tile in the song, 0-based.", False),
        _field("start_s", pa.float32(), "Start of the tile in the song, seconds.", False),
        _field(
            "tile",
            pa.binary(),
            "n_mels x tile_frames uint8 log-mel image, row-major (mel bin, frame); "
            "0 = top_db below the song's loudest bin, 255 = loudest.",
            False,
        ),
        _field("label", pa.string(), "Genre label of the song, null when unlabelled."),
        _field("split", pa.string(), "train / valid / test, inherited from the song.", False),
    ]
)

SONGS = pa.schema(
    [
        _field("song_id", pa.string(), "Stable id of the song (hash of its catalogue-relative path).", False),
        _field("path", pa.string(), "Full URI of the audio file.", False),
        _field("relative_path", pa.string(), "Path relative to the catalogue root.", False),
        _field("size_bytes", pa.int64(), "File size in bytes.", False),
        _field("mtime", pa.string(), "Modification time seen when listed (ISO 8601, UTC).", False),
        _field("etag", pa.string(), "Object store ETag seen when listed; null on local disks."),
        _field("content_hash", pa.string(), "SHA-256 of the file's bytes.", False),
        _field("duration_s", pa.float64(), "Decoded duration, seconds.", False),
        _field("sample_rate", pa.int32(), "Sample rate of the file before resampling, Hz.", False),
        _field("channels", pa.int16(), "Channels in the file before down-mixing to mono.", False),
        _field("decoder", pa.string(), "Decoder that read the file (soundfile or pyav).", False),
        _field("title", pa.string(), "Title tag, if any."),
        _field("artist", pa.string(), "Artist from the labels CSV or tags, if any."),
        _field("label", pa.string(), "Genre label, null when unlabelled."),
        _field("label_source", pa.string(), "Where the label came from: folder, csv, tags or none.", False),
        _field("split", pa.string(), "train / valid / test: a pure function of the artist, else the song id.", False),
        _field("n_tiles", pa.int32(), "Number of tiles cut from the song.", False),
        _field("tiles_file", pa.string(), "Tile shard holding this song's tiles, relative to `<root>/ingest/` (it may belong to an earlier version).", False),
    ]
)

ERRORS = pa.schema(
    [
        _field("path", pa.string(), "Full URI of the file that failed.", False),
        _field("relative_path", pa.string(), "Path relative to the catalogue root.", False),
        _field("size_bytes", pa.int64(), "File size in bytes.", False),
        _field("mtime", pa.string(), "Modification time seen when listed (ISO 8601, UTC).", False),
        _field("etag", pa.string(), "Object store ETag seen when listed; null on local disks."),
        _field("content_hash", pa.string(), "SHA-256 of the bytes, when they could be read."),
        _field("stage", pa.string(), "Where it failed: read, decode, featurise, or worker (its Ray task died every retry, e.g. killed for memory).", False),
        _field("error_type", pa.string(), "Exception class name.", False),
        _field("message", pa.string(), "What went wrong.", False),
    ]
)


def predictions_schema(embedding_dim: int = 128) -> pa.Schema:
    return pa.schema(
        [
            _field("item_id", pa.int32(), "Dense Annoy item id (row number); songs.ann is keyed by it.", False),
            _field("song_id", pa.string(), "Song id (joins songs.parquet).", False),
            _field("path", pa.string(), "Full URI of the audio file.", False),
            _field("label", pa.string(), "Known genre label, null when unlabelled."),
            _field("split", pa.string(), "train / valid / test.", False),
            _field("artist", pa.string(), "Artist, if known."),
            _field("n_tiles", pa.int32(), "Tiles pooled for this song.", False),
            _field(
                "tiles_correct",
                pa.int32(),
                "Tiles whose own top genre equals the label (tile accuracy); null when unlabelled "
                "or the label is a genre the model was not trained on.",
            ),
            _field("predicted", pa.string(), "The song's top genre by the index's song decision (manifest: song_decision).", False),
            _field("genre", pa.string(), "predicted, or 'unknown' when confidence < threshold.", False),
            _field("confidence", pa.float32(), "Its score: mean tile probability, or share of the tiles' votes.", False),
            _field("top_genres", pa.list_(pa.string()), "Top-3 genres by the index's song decision, best first.", False),
            _field("top_probs", pa.list_(pa.float32()),
                   "Their scores: mean tile probabilities (decision mean) or shares of the tiles' votes (vote).", False),
            _field("probs", pa.list_(pa.float32()), "Mean tile probability per genre, in the model's label order.", False),
            _field("votes", pa.list_(pa.float32()),
                   "Tiles voting for each genre (their top genre at a probability >= the vote floor), label order.", False),
            _field(
                "embedding",
                pa.list_(pa.float32(), embedding_dim),
                "Mean of the tile embeddings, L2-normalised.",
                False,
            ),
        ]
    )


PREDICTIONS = predictions_schema()

RUNS = pa.schema(
    [
        _field("run_id", pa.string(), "Id of the nightly run (also the name of its JSON report).", False),
        _field("started", pa.string(), "UTC start time, ISO 8601.", False),
        _field("catalogue", pa.string(), "Catalogue URI that was compared.", False),
        _field("new", pa.int32(), "Files not seen before, ingested.", False),
        _field("changed", pa.int32(), "Files whose bytes changed, re-ingested.", False),
        _field("removed", pa.int32(), "Songs whose file is gone, dropped from the published outputs.", False),
        _field("failed", pa.int32(), "Files that failed this run, plus earlier failures kept as they were.", False),
        _field("retried", pa.int32(), "Earlier failures decoded again (changed, or --retry-failed).", False),
        _field("unchanged", pa.int32(), "Songs kept as they were (nothing decoded).", False),
        _field("tiles_written", pa.int64(), "Tiles decoded and written this run.", False),
        _field("ingest_version", pa.string(), "Ingest version published by (or in force after) the run."),
        _field("model_run", pa.string(), "Model run in force after the run."),
        _field("index_version", pa.string(), "Index version published by (or in force after) the run."),
        _field("published", pa.list_(pa.string()), "What the run published: ingest, model, index.", False),
        _field("retrain", pa.string(), "Outcome of --retrain, or null when not asked."),
        _field("seconds", pa.map_(pa.string(), pa.float64()), "Wall time per stage.", False),
    ]
)

TAGS = pa.schema(
    [
        _field("path", pa.string(), "Full path of the file whose tags were written.", False),
        _field("relative_path", pa.string(), "Path relative to the catalogue root.", False),
        _field("song_id", pa.string(), "Song id (joins songs.parquet).", False),
        _field("format", pa.string(), "Tag format: id3 (mp3), vorbis (ogg, opus, flac), mp4 (m4a) or id3-chunk "
               "(wav, aiff).", False),
        _field("old_genre", pa.string(), "Genre tag before the run, null when there was none."),
        _field("new_genre", pa.string(), "Genre tag the run wrote (after --genre-map); null when an undo removed it."),
        _field("old_provenance", pa.string(), "GENRE_BATCH provenance tag before the run, if any."),
        _field("new_provenance", pa.string(), "GENRE_BATCH provenance tag written: run, model, index, source, "
               "confidence."),
        _field("source", pa.string(), "label (the song's own label from a CSV or folder), predicted (the model), "
               "or undo.", False),
        _field("confidence", pa.float32(), "The index's confidence in a predicted genre; null for labels."),
        _field("old_content_hash", pa.string(), "SHA-256 of the file's bytes before the write.", False),
        _field("new_content_hash", pa.string(), "SHA-256 after: nightly reads these to know a tag-only change.", False),
        _field("new_size_bytes", pa.int64(), "File size after the write.", False),
    ]
)

TABLES: Mapping[str, tuple[pa.Schema, str]] = {
    "tiles": (TILES, "`ingest/<version>/tiles/part-*.parquet`: one row per 256x256 tile."),
    "songs": (SONGS, "`ingest/<version>/songs.parquet`: one row per decoded song."),
    "errors": (ERRORS, "`ingest/<version>/errors.parquet`: one row per file that could not be ingested."),
    "predictions": (
        PREDICTIONS,
        "`index/<version>/predictions.parquet`: one row per song: embedding, genre, confidence, Annoy item id.",
    ),
    "runs": (RUNS, "`runs/<run_id>.parquet`: one row per nightly run (read `runs/*.parquet` as one table)."),
    "tags": (TAGS, "`tags/<run>.parquet`: one row per file whose tags a `tag --write` (or `--undo`) run changed."),
}


def with_metadata(schema: pa.Schema, payload: Mapping[str, Any]) -> pa.Schema:
    """Attach the configs an output was made with (feature config, label vocabulary, ...)."""
    return schema.with_metadata({METADATA_KEY: json.dumps(payload, sort_keys=True).encode()})


def read_metadata(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def feature_config_of(schema: pa.Schema) -> FeatureConfig | None:
    payload = read_metadata(schema).get("feature_config")
    return FeatureConfig.from_dict(payload) if payload else None


def render_markdown() -> str:
    lines = [
        "# Output tables",
        "",
        "Generated by `python -m genre_batch.schemas` from `genre_batch/schemas.py`; do not edit by hand.",
        "Every file also carries, in its Parquet key-value metadata under `genre_batch`, the JSON of the",
        "configs it was made with (feature config, and for predictions the label vocabulary and model run).",
        "",
    ]
    for name, (schema, where) in TABLES.items():
        lines += [f"## {name}", "", where, "", "| column | type | nullable | meaning |", "|---|---|---|---|"]
        for fld in schema:
            doc = (fld.metadata or {}).get(b"doc", b"").decode()
            lines.append(f"| `{fld.name}` | `{fld.type}` | {'yes' if fld.nullable else 'no'} | {doc} |")
        lines.append("")
    from genre_batch import manifests  # the JSON documents beside the tables

    return "\n".join(lines + manifests.render_markdown())


if __name__ == "__main__":
    print(render_markdown(), end="")
