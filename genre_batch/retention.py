"""Which versions of ingest and index to keep, and deleting the rest (the nightly's retention),
and the garbage of dead runs (``collect_garbage``, `genre-batch gc`).

Never deleted: the published version of an area, the newest ``keep``, and whatever a kept
version still reads (an index's ingest version, an ingest version's tile shards, which may
lie in an earlier version's folder).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable, Collection

from genre_batch.errors import NotPublishedError
from genre_batch.layout import RootLayout
from genre_batch.manifests import IndexManifest, IngestManifest
from genre_batch.storage import TIMED_VERSION, exists, join, latest_version, list_prefix, remove

logger = logging.getLogger(__name__)


def version_names(area_uri: str) -> list[str]:
    """Version directories of an area, oldest first (names start with their UTC time)."""
    return sorted(n for n in list_prefix(area_uri) if n[:1].isdigit())


def live_version(area_uri: str) -> str | None:
    try:
        return latest_version(area_uri, "version")
    except NotPublishedError:
        return None


def prune_versions(area_uri: str, keep: int, referenced: Collection[str] = frozenset()) -> list[str]:
    """Delete version directories beyond the newest ``keep``, never the published one nor one
    whose files a kept version still references. Returns what was deleted."""
    live = live_version(area_uri)
    deletable = [n for n in version_names(area_uri)[:-keep] if n != live and n not in referenced] if keep > 0 else []
    for name in deletable:
        remove(join(area_uri, name), recursive=True)
        logger.info("retention: removed %s/%s", area_uri, name)
    return [join(area_uri, n) for n in deletable]


def _with_live(names: list[str], live: str | None) -> set[str]:
    return set(names) | ({live} if live else set())


def referenced_ingest_versions(layout: RootLayout, keep: int) -> set[str]:
    """Ingest versions that must stay: the live one, the newest ``keep``, those that the kept
    index versions were built from (``similar --audio`` and the next nightly read their songs
    tables), and every version whose tile shards one of these uses."""
    needed = _with_live(version_names(layout.ingest_area)[-keep:], live_version(layout.ingest_area))
    kept_indexes = _with_live(version_names(layout.index_area)[-keep:], live_version(layout.index_area))
    for name in kept_indexes:
        try:
            needed.add(IndexManifest.read(layout.index_manifest(name)).ingest_version)
        except FileNotFoundError:  # an interrupted, unpublished version: nothing reads it
            continue
    used: set[str] = set()
    for name in needed:
        try:
            manifest = IngestManifest.read(layout.ingest_manifest(name))
        except FileNotFoundError:
            continue
        used.add(name)
        used.update(path.split("/", 1)[0] for path in manifest.tiles)
    return used


def prune(layout: RootLayout, keep: int) -> list[str]:
    """Retention over both areas (index first: what it keeps decides which ingest versions stay)."""
    return prune_versions(layout.index_area, keep) + prune_versions(
        layout.ingest_area, keep, referenced_ingest_versions(layout, keep))


def version_time(name: str) -> dt.datetime | None:
    """When the run that made a version began (its name's UTC stamp)."""
    if not TIMED_VERSION.fullmatch(name):
        return None
    return dt.datetime.strptime(name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)


def unpublished_versions(area_uri: str, manifest_of: Callable[[str], str], referenced: Collection[str],
                         grace: dt.timedelta, now: dt.datetime) -> list[str]:
    """Versions a dead run left: begun more than ``grace`` ago and never published, i.e. with no
    manifest (the run died before it finished), or newer than the published one (its publish
    was refused, or it died between its manifest and ``LATEST``). Never the published one nor
    a referenced one; the grace leaves running jobs alone."""
    live = live_version(area_uri)
    garbage = []
    for name in version_names(area_uri):
        began = version_time(name)
        if name == live or name in referenced or began is None or now - began < grace:
            continue
        if not exists(manifest_of(name)) or (live is not None and name > live):
            garbage.append(name)
    return garbage


def collect_garbage(layout: RootLayout, grace: dt.timedelta, dry_run: bool = False,
                    now: dt.datetime | None = None) -> list[str]:
    """Remove the unpublished versions of dead runs in ``index/`` and ``ingest/``; every version
    that a published or finished one reads stays. Returns their URIs."""
    now = now or dt.datetime.now(dt.timezone.utc)
    index_garbage = unpublished_versions(layout.index_area, layout.index_manifest, (), grace, now)
    live_ingest = live_version(layout.ingest_area)
    needed = {live_ingest} if live_ingest else set()
    for name in set(version_names(layout.index_area)) - set(index_garbage):
        try:
            needed.add(IndexManifest.read(layout.index_manifest(name)).ingest_version)
        except FileNotFoundError:
            continue
    candidates = unpublished_versions(layout.ingest_area, layout.ingest_manifest, needed, grace, now)
    shard_folders: set[str] = set()  # versions whose tile shards a version that stays uses
    for name in set(version_names(layout.ingest_area)) - set(candidates):
        try:
            shard_folders.update(p.split("/", 1)[0] for p in IngestManifest.read(layout.ingest_manifest(name)).tiles)
        except FileNotFoundError:
            continue
    removed = []
    for area, names in ((layout.index_area, index_garbage),
                        (layout.ingest_area, [n for n in candidates if n not in shard_folders])):
        for name in names:
            uri = join(area, name)
            if not dry_run:
                remove(uri, recursive=True)
            logger.info("gc: %s %s", "would remove" if dry_run else "removed", uri)
            removed.append(uri)
    return removed
