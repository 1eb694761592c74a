"""The pure core of ingest: one file -> a song row and its tiles, or an error row; a group
of files -> one tile shard and their rows (``ingest_group``).

A file up to ``IN_MEMORY_BYTES`` is read whole (one request to the store); a bigger one is
read twice as a stream, once for its content hash and once through the decoder, so that an
hours-long file never sits in memory as bytes or samples (``decode.stream_audio``,
``features.MelStream``).

Ray glue (``pipelines/ingest.py``) only hands each task its group of files; the nightly job
calls ``ingest_group`` in its own process for a handful of new files.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass
from typing import IO, Any, Callable, Sequence

import numpy as np
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from genre_batch import schemas
from genre_batch.catalogue import CatalogueFile
from genre_batch.config import FeatureConfig, IngestConfig, SplitConfig
from genre_batch.decode import AudioInfo, Opener, stream_audio
from genre_batch.errors import AudioDecodeError, AudioSilentError, AudioTooShortError, StorageError
from genre_batch.features import MelStream, SongTiles, tiles_of_stream
from genre_batch.labels import read_tags
from genre_batch.splits import assign_split, split_key
from genre_batch.storage import FileSum, filesystem, is_local, join, store_failure, sum_of_stream
from genre_batch.tables import read_table, write_table
from genre_batch.tiles import TILES_SUM

logger = logging.getLogger(__name__)


@dataclass
class FileOutcome:
    """What became of one file: a song (row + tiles) or an error row, never both."""

    song: dict[str, Any] | None = None
    tiles: SongTiles | None = None
    error: dict[str, Any] | None = None


def error_row(file: CatalogueFile, stage: str, exc: BaseException, content_hash: str | None) -> dict[str, Any]:
    return {
        "path": file.uri,
        "relative_path": file.relative_path,
        "size_bytes": file.size_bytes,
        "mtime": file.mtime,
        "etag": file.etag,
        "content_hash": content_hash,
        "stage": stage,
        "error_type": type(exc).__name__,
        "message": str(exc)[:2000],
    }


# Files up to this size are read in one request and decoded from memory; bigger ones stream.
IN_MEMORY_BYTES = 32 * 2**20
DEFAULT_MAX_DURATION_S = IngestConfig.max_duration_s

FileSource = bytes | Opener  # the file's bytes, or a function that opens it


def opener_of(source: FileSource) -> Opener:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        return lambda: io.BytesIO(data)
    return source


def content_hash_of_source(source: FileSource) -> str:
    """sha256 of the file's bytes (a block at a time when it is streamed)."""
    if isinstance(source, (bytes, bytearray)):
        return hashlib.sha256(source).hexdigest()
    with source() as handle:
        return sum_of_stream(handle).sha256


def tiles_of_file(opener: Opener, features: FeatureConfig, name: str,
                  max_duration_s: float = DEFAULT_MAX_DURATION_S) -> tuple[AudioInfo, SongTiles]:
    """The one path from a file to its tiles (ingest, ``classify``, ``similar --audio``): streamed
    decoding of its first ``max_duration_s`` into a ``MelStream``, then tiles. Raises
    ``AudioDecodeError`` (no decoder reads it), ``AudioTooShortError`` / ``AudioSilentError``."""
    audio, mel = stream_audio(opener, name=name, target_sample_rate=features.sample_rate,
                              sink=lambda: MelStream(features), max_samples=round(max_duration_s * features.sample_rate))
    return audio, tiles_of_stream(mel.finish(), features, name=name)


def ingest_file(
    file: CatalogueFile,
    data: FileSource,
    features: FeatureConfig,
    splits: SplitConfig,
    labels_from_tags: bool = False,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> FileOutcome:
    """Decode, featurise and label one file (its bytes, or an opener that streams it): the
    first ``max_duration_s`` seconds of it. Expected failures become an error row; a failure to
    read the file (``OSError``) propagates."""
    content_hash = content_hash_of_source(data)
    opener = opener_of(data)
    try:
        audio, song_tiles = tiles_of_file(opener, features, file.relative_path, max_duration_s)
    except AudioDecodeError as exc:
        return FileOutcome(error=error_row(file, "decode", exc, content_hash))
    except (AudioTooShortError, AudioSilentError) as exc:
        return FileOutcome(error=error_row(file, "featurise", exc, content_hash))
    if audio.truncated:
        logger.warning("%s: analysed its first %.0f s of %s", file.relative_path, max_duration_s,
                       f"{audio.source_duration_s:.0f} s" if audio.source_duration_s else "more")

    tags = read_tags(opener)
    label, label_source = file.label, file.label_source
    if labels_from_tags:
        label, label_source = tags.genre, ("tags" if tags.genre else "none")
    artist = file.artist or tags.artist
    split = file.split_override or assign_split(split_key(file.song_id, artist), splits)
    song = {
        "song_id": file.song_id,
        "path": file.uri,
        "relative_path": file.relative_path,
        "size_bytes": file.size_bytes,
        "mtime": file.mtime,
        "etag": file.etag,
        "content_hash": content_hash,
        "duration_s": audio.duration_s,
        "sample_rate": audio.source_sample_rate,
        "channels": audio.source_channels,
        "decoder": audio.decoder,
        "title": tags.title,
        "artist": artist,
        "label": label,
        "label_source": label_source,
        "split": split,
        "n_tiles": len(song_tiles),
        "tiles_file": "",
    }
    return FileOutcome(song=song, tiles=song_tiles)


def _explain_missing(path: str, fs: Any) -> None:
    # The listing keeps broken links (storage.walk_files): say what is broken.
    if isinstance(fs, LocalFileSystem) and os.path.islink(path):
        raise FileNotFoundError(f"broken link: {path} points to {os.readlink(path)}, which does not exist") from None


def _explain_loop(path: str, exc: OSError) -> None:
    if exc.errno == errno.ELOOP:
        raise OSError(exc.errno, f"a loop of symbolic links: {path} leads back to itself") from None


def read_catalogue_file(file: CatalogueFile) -> FileSource:
    """A catalogue file: its bytes when it is small (``IN_MEMORY_BYTES``), else an opener that
    streams it. A read failure is the file's (an error row), not a ``StorageError`` that would
    fail the job: hence fsspec directly, not ``storage.read_bytes``."""
    fs, path = filesystem(file.uri)
    try:
        size = file.size_bytes if file.size_bytes is not None else fs.size(path)
        if size > IN_MEMORY_BYTES:
            if fs.isdir(path):
                raise IsADirectoryError(f"{path} is a directory")

            def open_file() -> IO[bytes]:
                return fs.open(path, "rb")
            return open_file
        with fs.open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        _explain_missing(path, fs)
        raise
    except OSError as exc:
        _explain_loop(path, exc)
        raise


def read_and_ingest(file: CatalogueFile, features: FeatureConfig, splits: SplitConfig, labels_from_tags: bool = False,
                    read: Callable[[CatalogueFile], FileSource] = read_catalogue_file,
                    max_duration_s: float = DEFAULT_MAX_DURATION_S) -> FileOutcome:
    """Read one catalogue file (with ``read``) and ingest it; whatever goes wrong with the file
    becomes its error row. A failure of the store itself (unreachable, throttled, denied) is a
    ``StorageError``: it fails the job rather than turn every file into an error row."""
    try:
        data = read(file)
        return ingest_file(file, data, features, splits, labels_from_tags, max_duration_s)
    except Exception as exc:
        failure = store_failure(exc) if not is_local(file.uri) else None
        if failure is not None:  # the store, not this file: the job fails in one line, nothing published
            raise StorageError(f"could not read {file.uri}: {failure}") from exc
        if isinstance(exc, OSError):
            return FileOutcome(error=error_row(file, "read", exc, None))
        # One bad file must not drop the others (a Ray block is all or nothing).
        logger.exception("unexpected failure on %s", file.uri)
        return FileOutcome(error=error_row(file, "featurise", exc, None))


def ingest_group(
    files: Sequence[CatalogueFile],
    tiles_dir_uri: str,
    shard_prefix: str,
    features: FeatureConfig,
    splits: SplitConfig,
    labels_from_tags: bool = False,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ingest these files into one tile shard under ``tiles_dir_uri``; returns (song rows,
    error rows). Storage errors writing the shard propagate: they fail the job, not a file."""
    outcomes = [read_and_ingest(file, features, splits, labels_from_tags, max_duration_s=max_duration_s)
                for file in files]
    write_tile_shard(outcomes, tiles_dir_uri, features, shard_prefix)
    return ([o.song for o in outcomes if o.song is not None],
            [o.error for o in outcomes if o.error is not None])


def tiles_table(outcomes: Sequence[FileOutcome], features: FeatureConfig) -> pa.Table:
    """One Arrow table of every tile of the given songs, in the TILES schema."""
    songs = [o for o in outcomes if o.song is not None and o.tiles is not None]
    counts = [len(o.tiles) for o in songs]  # type: ignore[arg-type]
    total = int(sum(counts))
    if total * features.tile_bytes >= 2**31:
        raise ValueError(f"{total} tiles do not fit one shard (2 GiB); use fewer files per task")
    if total:
        stacked = np.concatenate([o.tiles.tiles for o in songs]).reshape(total, -1)  # type: ignore[union-attr]
        # One contiguous buffer + offsets: no per-tile Python bytes objects.
        offsets = np.arange(0, (total + 1) * features.tile_bytes, features.tile_bytes, dtype=np.int32)
        tile_column = pa.BinaryArray.from_buffers(
            pa.binary(), total, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(stacked))]
        )
    else:
        tile_column = pa.array([], type=pa.binary())
    columns = {
        "song_id": pa.array(np.repeat([o.song["song_id"] for o in songs], counts).tolist(), pa.string()),  # type: ignore[index]
        "tile_index": pa.array(np.concatenate([np.arange(c) for c in counts]) if songs else [], pa.int32()),
        "start_s": pa.array(np.concatenate([o.tiles.start_s for o in songs]) if songs else [], pa.float32()),  # type: ignore[union-attr]
        "tile": tile_column,
        "label": pa.array(np.repeat([o.song["label"] for o in songs], counts).tolist(), pa.string()),  # type: ignore[index]
        "split": pa.array(np.repeat([o.song["split"] for o in songs], counts).tolist(), pa.string()),  # type: ignore[index]
    }
    schema = schemas.with_metadata(schemas.TILES, {"feature_config": features.to_dict()})
    return pa.Table.from_pydict(columns, schema=schema)


def write_tile_shard(
    outcomes: Sequence[FileOutcome], tiles_dir_uri: str, features: FeatureConfig, shard_prefix: str = ""
) -> str | None:
    """Write the tiles of these songs as one Parquet shard; returns its file name (or None).

    Each song row's ``tiles_file`` becomes ``shard_prefix + name``: the caller's prefix makes it
    relative to the ingest area, so a later version can keep referring to the same shard. Each
    row also gets the shard's size and checksum (``TILES_SUM``) for the manifest.
    """
    table = tiles_table(outcomes, features)
    if table.num_rows == 0:
        return None
    name = f"part-{uuid.uuid4().hex[:16]}.parquet"
    uri = join(tiles_dir_uri, name)
    started = time.perf_counter()
    # Tiles are already uint8 images; zstd level 3 shrinks them ~25% at little CPU cost.
    written = write_shard(table, uri)
    logger.debug("wrote %s (%d tiles) in %.2fs", name, table.num_rows, time.perf_counter() - started)
    for outcome in outcomes:
        if outcome.song is not None:
            outcome.song["tiles_file"] = f"{shard_prefix}{name}"
            outcome.song[TILES_SUM] = written.to_dict()
    return name


def catalogue_file_from_record(record: dict[str, Any]) -> CatalogueFile:
    return CatalogueFile(**{k: record[k] for k in CatalogueFile.__dataclass_fields__})


def catalogue_record(file: CatalogueFile) -> dict[str, Any]:
    return asdict(file)


def rewrite_shard_without(
    source_uri: str, tiles_dir_uri: str, drop_song_ids: set[str], shard_prefix: str
) -> tuple[str | None, FileSum | None]:
    """Copy a tile shard without the tiles of some songs (removed or replaced ones).

    Returns (the new shard's ``tiles_file`` and its size and checksum, or None twice when
    nothing is left). The old shard is left alone: earlier versions that still reference it
    stay readable.
    """
    import pyarrow.compute as pc

    table = read_table(source_uri)
    kept = table.filter(pc.invert(pc.is_in(table["song_id"], pa.array(sorted(drop_song_ids), pa.string()))))
    if kept.num_rows == 0:
        return None, None
    name = f"part-{uuid.uuid4().hex[:16]}.parquet"
    return f"{shard_prefix}{name}", write_shard(kept, join(tiles_dir_uri, name))


def write_shard(table: pa.Table, uri: str) -> FileSum:
    """A tile shard: zstd, row groups of 256 tiles (~16 MiB) so readers can stream it."""
    return write_table(table, uri, row_group_size=256)
