"""The HTTP API and the page: a FastAPI app over a followed index (no Ray; Ray Serve runs it).

Every answer is the JSON of the CLI's ``--json`` (``genre_batch.replies``) and comes from the
one index version the request started on. Every error is a JSON body ``{"error": message,
"status": code}``; a traceback never leaves the server (it goes to the log).
"""

from __future__ import annotations

import logging
import mimetypes
import re
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from genre_batch.answers import PublishedIndex
from genre_batch.errors import (
    AudioDecodeError, AudioSilentError, AudioTooShortError, ConfigError, DamagedFileError, GenreBatchError,
    NotPublishedError, StorageError,
)
from genre_batch.index import UnknownSongError
from genre_batch.playlist import HistoryError
from genre_batch.replies import classify_reply, playlist_reply, similar_audio_reply, similar_song_reply, song_rows
from genre_batch.storage import filesystem, storage_errors
from genre_batch.web.follower import IndexFollower

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_K = 1000
FORM_SLACK_BYTES = 64 * 1024  # a multipart body's boundaries, headers and small fields
AUDIO_CHUNK = 256 * 1024
AUDIO_TYPES = {".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
               ".flac": "audio/flac", ".wav": "audio/wav", ".m4a": "audio/mp4", ".aif": "audio/aiff",
               ".aiff": "audio/aiff", ".webm": "audio/webm"}

# Library errors -> HTTP status; the first match wins (subclasses first).
STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (UnknownSongError, 404),
    (AudioDecodeError, 422), (AudioTooShortError, 422), (AudioSilentError, 422),
    (HistoryError, 422), (ConfigError, 422),
    (NotPublishedError, 503),
    (DamagedFileError, 500),
    (StorageError, 503),
    (GenreBatchError, 422),
)


class RequestError(Exception):
    """A request refused before the library sees it (size, form, range)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers


class PlaylistRequest(BaseModel):
    songs: list[str] = Field(min_length=1, max_length=MAX_K, description="song ids (or paths) of the history")
    n: int = Field(20, ge=1, le=MAX_K)
    variety: float = Field(0.3, ge=0.0, le=1.0)


def error_body(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def status_of(exc: Exception) -> int:
    return next(status for kind, status in STATUS_OF if isinstance(exc, kind))


def create_app(follower: IndexFollower, max_upload_mb: float = 50.0) -> FastAPI:
    app = FastAPI(title="genre-batch", docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")
    app.state.follower = follower
    app.state.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
    _add_error_handlers(app)
    _add_answer_routes(app)
    _add_catalogue_routes(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def refused(_: Request, exc: RequestError) -> JSONResponse:
        return error_body(exc.status, str(exc), exc.headers)

    @app.exception_handler(GenreBatchError)
    async def library_error(request: Request, exc: GenreBatchError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            logger.error("%s %s: %s", request.method, request.url.path, exc)
        return error_body(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_body(422, validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error_body(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)  # the traceback stays here
        return error_body(500, f"internal error ({type(exc).__name__}); the server's log has the details")


def validation_message(errors: Any) -> str:
    """FastAPI's validation errors as one line: ``k: Input should be less than or equal to 1000``."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def current(request: Request) -> PublishedIndex:
    """The index this request answers from, to its end (a newer one may be published meanwhile)."""
    follower: IndexFollower = request.app.state.follower
    return follower.current()


def _add_answer_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, Any]:
        index = current(request)
        return {
            "status": "ok",
            "index_version": index.version.version,
            "model_run": index.version.manifest.model_run,
            "songs": len(index.predictions),
            "genres": list(index.version.manifest.labels) if index.version.manifest.genres is None else [],
            "max_upload_mb": request.app.state.max_upload_bytes / 1024 / 1024,
        }

    @app.post("/api/classify")
    async def classify(request: Request) -> dict[str, Any]:
        index = current(request)
        name, data, _ = await read_upload(request)
        answer = await run_in_threadpool(index.analyse_source, data, name)
        return classify_reply(index, name, answer)

    @app.post("/api/similar")
    async def similar_to_upload(request: Request, k: int | None = Query(None, ge=1, le=MAX_K)) -> dict[str, Any]:
        index = current(request)
        name, data, fields = await read_upload(request)
        k = k if k is not None else form_int(fields, "k", 10)

        def answer() -> dict[str, Any]:
            analysed = index.analyse_source(data, name)
            return similar_audio_reply(index, name, analysed, index.similar_to_answer(analysed, k))
        return await run_in_threadpool(answer)

    @app.get("/api/similar")
    def similar_to_song(request: Request, song: str = Query(..., min_length=1, max_length=2000),
                        k: int = Query(10, ge=1, le=MAX_K)) -> dict[str, Any]:
        index = current(request)
        song_id = index.song_id_of(song)
        return similar_song_reply(index, song_id, index.similar_to_song(song_id, k))

    @app.post("/api/playlist")
    def playlist(request: Request, body: PlaylistRequest) -> dict[str, Any]:
        index = current(request)
        made = index.playlist([(song, 1.0) for song in body.songs], n=body.n, variety=body.variety)
        return playlist_reply(index, made)


def _add_catalogue_routes(app: FastAPI) -> None:
    @app.get("/api/songs")
    def songs(request: Request, q: str = Query("", max_length=200),
              limit: int = Query(50, ge=1, le=MAX_K)) -> dict[str, Any]:
        index = current(request)
        return {"query": q, "songs": song_rows(index, q, limit), "index_version": index.version.version}

    @app.get("/api/audio/{song_id}")
    def audio(request: Request, song_id: str) -> StreamingResponse:
        index = current(request)
        if song_id not in index.by_song.index:  # by id only: no request text ever becomes a path
            raise UnknownSongError(f"song {song_id!r} is not in index {index.version.version}")
        return audio_response(str(index.by_song.loc[song_id, "path"]), request.headers.get("range"))


# ------------------------------------------------------------------ uploads
async def read_upload(request: Request) -> tuple[str, bytes, dict[str, str]]:
    """The one file of a multipart form (field ``file``), its name and the form's other fields.
    Refused with 413 past the limit, counted as the body arrives (a missing or false
    Content-Length does not get past it); the parser's temporary file is removed at the end."""
    limit: int = request.app.state.max_upload_bytes
    too_large = RequestError(413, f"upload over the limit of {limit / 1024 / 1024:g} MB (--max-upload-mb)")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + FORM_SLACK_BYTES:
        raise too_large
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise RequestError(422, "send the audio as a multipart form with a field named 'file'")

    async def counted() -> AsyncGenerator[bytes, None]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit + FORM_SLACK_BYTES:
                raise too_large
            yield chunk

    try:
        form = await MultiPartParser(request.headers, counted(), max_files=1, max_fields=20).parse()
    except MultiPartException as exc:
        raise RequestError(422, f"not a readable multipart form: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestError(422, "the form has no file: send the audio in a field named 'file'")
        data = await upload.read()
        if len(data) > limit:
            raise too_large
        if not data:
            raise RequestError(422, f"{upload.filename or 'the upload'} is empty")
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        return upload.filename or "upload", data, fields
    finally:
        await form.close()


def form_int(fields: dict[str, str], name: str, default: int) -> int:
    text = fields.get(name)
    if text is None or text == "":
        return default
    if not re.fullmatch(r"\d{1,7}", text.strip()) or not 1 <= int(text) <= MAX_K:
        raise RequestError(422, f"{name}: must be a whole number from 1 to {MAX_K}, got {text[:20]!r}")
    return int(text)


# ------------------------------------------------------------------ a song's own file
RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``Range: bytes=a-b`` (one range) -> inclusive (first, last), None for the whole file;
    a range that cannot be served is a 416."""
    if not header:
        return None
    match = RANGE.fullmatch(header.strip())
    if not match or match.groups() == ("", ""):
        raise RequestError(416, f"unsupported range {header[:40]!r}: one 'bytes=first-last' range",
                           {"Content-Range": f"bytes */{size}"})
    first_text, last_text = match.groups()
    if first_text:
        first, last = int(first_text), min(int(last_text) if last_text else size - 1, size - 1)
    else:  # the last N bytes
        first, last = max(0, size - int(last_text)), size - 1
    if first > last or first >= size:
        raise RequestError(416, f"range {header[:40]!r} is outside the file's {size} bytes",
                           {"Content-Range": f"bytes */{size}"})
    return first, last


def audio_response(uri: str, range_header: str | None) -> StreamingResponse:
    fs, path = filesystem(uri)
    with storage_errors("read", uri):
        size = int(fs.size(path))
    wanted = byte_range(range_header, size)
    first, last = wanted or (0, size - 1)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(last - first + 1)}
    if wanted:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"

    def chunks() -> Iterator[bytes]:
        with storage_errors("read", uri), fs.open(path, "rb") as handle:
            handle.seek(first)
            left = last - first + 1
            while left > 0:
                block = handle.read(min(AUDIO_CHUNK, left))
                if not block:
                    break
                left -= len(block)
                yield block

    media = AUDIO_TYPES.get(Path(path).suffix.lower()) or mimetypes.guess_type(path)[0] or "application/octet-stream"
    return StreamingResponse(chunks(), status_code=206 if wanted else 200, headers=headers, media_type=media)
