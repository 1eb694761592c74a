"""Genre tags in audio files, read and written with mutagen (the tag blocks only, never the audio).

| format | genre | provenance |
|---|---|---|
| mp3 (ID3v2, saved as v2.3 for the widest player support) | ``TCON`` | ``TXXX:GENRE_BATCH`` |
| ogg, oga, opus, flac (Vorbis comments) | ``GENRE`` | ``GENRE_BATCH`` |
| m4a, mp4 (MP4 atoms) | ``©gen`` | ``----:com.genre-batch:GENRE_BATCH`` |
| wav, aif, aiff (an ID3 chunk) | ``TCON`` | ``TXXX:GENRE_BATCH`` |

Anything else has no genre tag here: ``UnsupportedTagFormat``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from genre_batch.errors import GenreBatchError

PROVENANCE_KEY = "GENRE_BATCH"
MP4_PROVENANCE = f"----:com.genre-batch:{PROVENANCE_KEY}"
ID3_VERSION = 3  # ID3v2.3: what older players and car stereos read (v2.4 is mutagen's default)

FORMATS = {
    ".mp3": "id3", ".ogg": "vorbis", ".oga": "vorbis", ".opus": "vorbis", ".flac": "vorbis",
    ".m4a": "mp4", ".mp4": "mp4", ".wav": "id3-chunk", ".wave": "id3-chunk", ".aif": "id3-chunk",
    ".aiff": "id3-chunk",
}


class UnsupportedTagFormat(GenreBatchError):
    """A file whose format has no genre tag that this project writes."""


class TagFileError(GenreBatchError):
    """A file whose tags cannot be read or written (damaged, not what its name says)."""


@dataclass(frozen=True)
class FileTags:
    format: str  # id3, vorbis, mp4 or id3-chunk
    genre: str | None
    provenance: str | None  # our provenance tag, when a run of ours wrote the genre


def tag_format(path: str) -> str:
    kind = FORMATS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise UnsupportedTagFormat(f"{os.path.basename(path)}: no genre tag is written to "
                                   f"{os.path.splitext(path)[1] or 'files without an extension'}")
    return kind


def _open(path: str) -> Any:
    import mutagen

    try:
        audio = mutagen.File(path)
    except Exception as exc:  # mutagen raises many types on damaged files
        raise TagFileError(f"{os.path.basename(path)}: its tags cannot be read ({type(exc).__name__}: {exc})") from exc
    if audio is None:
        raise TagFileError(f"{os.path.basename(path)}: mutagen does not recognise the file as {tag_format(path)} audio")
    return audio


def _id3_text(tags: Any, key: str) -> str | None:
    frame = tags.get(key) if tags is not None else None
    return str(frame.text[0]).strip() or None if frame is not None and frame.text else None


def read_file_tags(path: str) -> FileTags:
    kind = tag_format(path)
    audio = _open(path)
    tags = audio.tags
    if kind in ("id3", "id3-chunk"):
        return FileTags(kind, _id3_text(tags, "TCON"), _id3_text(tags, f"TXXX:{PROVENANCE_KEY}"))
    if kind == "vorbis":
        def first(key: str) -> str | None:
            values = tags.get(key) if tags is not None else None
            return str(values[0]).strip() or None if values else None
        return FileTags(kind, first("GENRE"), first(PROVENANCE_KEY))
    genre = (tags or {}).get("\xa9gen")
    provenance = (tags or {}).get(MP4_PROVENANCE)
    return FileTags(kind, str(genre[0]).strip() or None if genre else None,
                    bytes(provenance[0]).decode("utf-8", "replace") if provenance else None)


def write_file_tags(path: str, genre: str | None, provenance: str | None) -> None:
    """Set (or, given None, remove) the genre and provenance tags of the file at ``path`` in place.
    Callers write a copy and rename it over the original (``tagging``)."""
    kind = tag_format(path)
    audio = _open(path)
    if audio.tags is None:
        audio.add_tags()
    tags = audio.tags
    if kind in ("id3", "id3-chunk"):
        from mutagen.id3 import TCON, TXXX

        tags.delall("TCON")
        tags.delall(f"TXXX:{PROVENANCE_KEY}")
        if genre is not None:
            tags.add(TCON(encoding=3, text=[genre]))
        if provenance is not None:
            tags.add(TXXX(encoding=3, desc=PROVENANCE_KEY, text=[provenance]))
        audio.save(v2_version=ID3_VERSION)
        return
    if kind == "vorbis":
        for key, value in (("GENRE", genre), (PROVENANCE_KEY, provenance)):
            if value is None:
                if key in tags:
                    del tags[key]
            else:
                tags[key] = [value]
        audio.save()
        return
    from mutagen.mp4 import MP4FreeForm

    for key, value in (("\xa9gen", genre), (MP4_PROVENANCE, provenance)):
        if value is None:
            if key in tags:
                del tags[key]
        elif key == MP4_PROVENANCE:
            tags[key] = [MP4FreeForm(value.encode("utf-8"))]
        else:
            tags[key] = [value]
    audio.save()
