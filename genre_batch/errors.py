"""Named errors: every failure a user can meet says what, where and why."""

from __future__ import annotations


class GenreBatchError(Exception):
    """Base class of every error this package raises on purpose: its message is what a user
    reads (``genre_batch.entry.known_cause`` looks for ``user_facing``), never a traceback."""

    user_facing = True


class AudioDecodeError(GenreBatchError):
    """A file could not be decoded into audio samples."""


class AudioTooShortError(GenreBatchError):
    """Decoded audio is shorter than the configured minimum duration."""


class AudioSilentError(GenreBatchError):
    """Decoded audio holds no signal to classify (digital silence)."""


class ConfigError(GenreBatchError, ValueError):
    """A configuration value is out of its range (a flag, or a config built in code)."""


class ConfigMismatchError(GenreBatchError):
    """Two artifacts were made with different featurisation (or model) configs."""


class StorageError(GenreBatchError):
    """A storage URI could not be read or written."""


class DamagedFileError(StorageError):
    """A published file is not what its version's manifest says (size, checksum) or not
    readable as what it should be (truncated Parquet, JSON, Annoy); the message names it."""


class NotPublishedError(GenreBatchError):
    """An output that a step needs (tiles, model, index) has not been published yet."""


class LabelError(GenreBatchError):
    """A labels file is malformed or names files that do not exist."""
