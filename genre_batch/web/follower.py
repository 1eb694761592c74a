"""The published index of a root, followed while a server runs.

A thread polls ``index/LATEST``; when it names a new version, that version is loaded in full
(predictions, Annoy file, model) *before* it replaces the old one, so no request waits for a
load and none sees half of one. A request takes the current ``PublishedIndex`` once and answers
from it to the end, so requests in flight finish on the version they started on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from genre_batch.answers import PublishedIndex
from genre_batch.artifacts import load_index_version
from genre_batch.errors import GenreBatchError, NotPublishedError
from genre_batch.layout import RootLayout
from genre_batch.storage import latest_version

logger = logging.getLogger(__name__)

POLL_S = 2.0
RETRY_FAILED_S = 60.0  # a version that failed to load (a store that timed out) is tried again after this


def load_warm(root: str, version: str) -> PublishedIndex:
    """An index version with everything a request reads already loaded."""
    index = PublishedIndex(root, load_index_version(RootLayout(root), version))
    index.by_song, index.index, index.titles  # noqa: B018 - loads them
    index.model  # noqa: B018
    return index


class IndexFollower:
    """``current()``: the newest published index that loaded whole."""

    def __init__(self, root: str, poll_s: float = POLL_S,
                 load: Callable[[str, str], PublishedIndex] = load_warm) -> None:
        self.root = root
        self.poll_s = poll_s
        self._load = load
        self._area = RootLayout(root).index_area
        self._lock = threading.Lock()
        self._current: PublishedIndex | None = None
        self._failed: dict[str, tuple[float, str]] = {}  # version -> (when, why) it did not load
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    def current(self) -> PublishedIndex:
        index = self._current
        if index is None:
            raise NotPublishedError(self._why_none())
        return index

    @property
    def version(self) -> str | None:
        index = self._current
        return None if index is None else index.version.version

    def refresh(self) -> bool:
        """Load the version ``LATEST`` names if it is new; True when it replaced the current one.
        A version that fails to load is logged once and the current one kept."""
        with self._lock:  # one load at a time; readers never wait for this lock
            try:
                name = latest_version(self._area, "index", "run `genre-batch index` first")
            except GenreBatchError as exc:
                self._failed["LATEST"] = (time.monotonic(), str(exc))
                return False
            self._failed.pop("LATEST", None)
            failed_at = self._failed.get(name, (-RETRY_FAILED_S, ""))[0]
            if name == self.version or time.monotonic() - failed_at < RETRY_FAILED_S:
                return False
            try:
                index = self._load(self.root, name)
            except (GenreBatchError, OSError) as exc:
                self._failed[name] = (time.monotonic(), str(exc))
                logger.warning("index %s not loaded, still serving %s: %s", name, self.version or "nothing", exc)
                return False
            self._failed.pop(name, None)
            previous, self._current = self.version, index
            logger.info("serving index %s (was %s)", name, previous or "none")
            return True

    def start(self) -> "IndexFollower":
        self._thread = threading.Thread(target=self._poll, name="index-follower", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_s + 5)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the poller must outlive any one bad poll
                logger.exception("polling %s/LATEST failed; trying again in %.0f s", self._area, self.poll_s)

    def _why_none(self) -> str:
        reasons = "; ".join(why for _, why in self._failed.values())
        return reasons or f"no index published under {self.root} yet; run `genre-batch index` first"
