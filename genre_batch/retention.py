"""Which versions of ingest and index to keep, and deleting the rest (the nightly's retention).

Never deleted: the published version of an area, the newest ``keep``, and whatever a kept
version still reads (an index's ingest version, an ingest version's tile shards, which may
lie in an earlier version's folder).
"""

from __future__ import annotations

import logging
from typing import Collection

from genre_batch.errors import NotPublishedError
from genre_batch.layout import RootLayout
from genre_batch.manifests import IndexManifest, IngestManifest
from genre_batch.storage import join, latest_version, list_prefix, remove

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
