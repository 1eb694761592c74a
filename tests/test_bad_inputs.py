"""The bad-input zoo: every kind of file a real catalogue holds, odd or broken, through the
per-file ingest core (what each Ray task runs), each with its expected outcome: a song, or an
error row with its stage and reason. Nothing is lost and nothing raises."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile

from genre_batch.catalogue import list_catalogue
from genre_batch.config import FeatureConfig, SplitConfig
from genre_batch.ingest import read_and_ingest
from tests.audio_helpers import encode, encode_aac_m4a, noisy_sine

FEATURES = FeatureConfig()
SR = 44_100


def tone(seconds: float, rate: int = SR, channels: int = 1, seed: int = 0) -> np.ndarray:
    mono = noisy_sine(440.0, seconds, rate, seed)
    return mono if channels == 1 else np.stack([mono * (1 - 0.1 * c) for c in range(channels)], axis=1)


def mp3(seconds: float = 8.0, rate: int = SR, channels: int = 1, **options: object) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(seconds, rate, channels), rate, format="MP3", **options)
    return buffer.getvalue()


def with_picture(data: bytes, picture_bytes: int) -> bytes:
    """An mp3 whose ID3 tag carries a big embedded picture (cover art), and a title."""
    from mutagen.id3 import APIC, ID3, TIT2

    path = Path(os.environ["ZOO_TMP"]) / "picture.mp3"
    path.write_bytes(data)
    tags = ID3()
    tags.add(TIT2(encoding=3, text="Cover Art"))
    tags.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="cover", data=os.urandom(picture_bytes)))
    tags.save(str(path))
    return path.read_bytes()


def corrupt_middle(data: bytes, seed: int) -> bytes:
    middle = len(data) // 2
    return data[:middle] + np.random.default_rng(seed).bytes(4096) + data[middle + 4096 :]


def wav_header_only() -> bytes:
    return encode(np.zeros((0, 1), np.float32), SR, "WAV")


def truncated_wav() -> bytes:
    data = encode(tone(10.0), SR, "WAV")
    return data[: len(data) * 6 // 10]  # the header promises more than is there


def png_bytes() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    plt.imsave(buffer, np.random.default_rng(0).random((16, 16)), format="png")
    return buffer.getvalue()


# name -> (file name, how to make its bytes, expected: ("song", n_tiles at least) or (stage, reason))
SONG, ERROR = "song", "error"
ZOO: dict[str, tuple[str, Callable[[], bytes], tuple[str, str]]] = {
    "plain mp3": ("plain.mp3", lambda: mp3(), (SONG, "")),
    "mp3 named .wav": ("named-wrong.wav", lambda: mp3(), (SONG, "")),
    "wav named .mp3": ("named-wrong.mp3", lambda: encode(tone(8.0), SR, "WAV"), (SONG, "")),
    "ogg named .opus": ("vorbis.opus", lambda: encode(tone(8.0), SR, "OGG", "VORBIS"), (SONG, "")),
    "huge ID3 tag with a picture": ("cover.mp3", lambda: with_picture(mp3(), 3 * 2**20), (SONG, "")),
    "VBR mp3": ("vbr.mp3", lambda: mp3(bitrate_mode="VARIABLE", compression_level=0.3), (SONG, "")),
    "8 kHz mono mp3": ("phone.mp3", lambda: mp3(rate=8_000), (SONG, "")),
    **{f"mp3 with a corrupted middle ({seed})": (f"scratched-{seed}.mp3", lambda seed=seed: corrupt_middle(
        mp3(seconds=20.0), seed), (SONG, "")) for seed in range(3)},
    "truncated mp3": ("cut.mp3", lambda: mp3(seconds=20.0)[:60_000], (SONG, "")),
    "AIFF": ("tone.aiff", lambda: encode(tone(8.0), SR, "AIFF"), (SONG, "")),
    "Opus": ("tone.opus", lambda: encode(tone(8.0, 48_000), 48_000, "OGG", "OPUS"), (SONG, "")),
    "FLAC 96 kHz 24-bit": ("hires.flac", lambda: encode(tone(8.0, 96_000), 96_000, "FLAC", "PCM_24"), (SONG, "")),
    "6-channel WAV": ("surround.wav", lambda: encode(tone(8.0, channels=6), SR, "WAV"), (SONG, "")),
    "AAC in m4a": ("tone.m4a", lambda: encode_aac_m4a(tone(8.0), SR), (SONG, "")),
    "20-minute 8 kHz WAV": ("long.wav", lambda: encode(tone(1200.0, 8_000), 8_000, "WAV"), (SONG, "")),
    "exactly the minimum length": ("short-ok.wav", lambda: encode(tone(3.05), SR, "WAV"), (SONG, "")),
    "truncated WAV header": ("cut.wav", truncated_wav, (SONG, "")),
    "empty file": ("empty.mp3", lambda: b"", ("decode", "file is empty")),
    "random bytes": ("noise.mp3", lambda: np.random.default_rng(7).bytes(50_000), ("decode", "could not decode")),
    "text with an audio name": ("notes.flac", lambda: b"just some text\n" * 200, ("decode", "could not decode")),
    "a PNG with an audio name": ("image.ogg", png_bytes, ("decode", "could not decode")),
    "WAV with no frames": ("no-frames.wav", wav_header_only, ("decode", "no samples")),
    "NaN samples": ("nan.wav", lambda: encode(np.full((SR * 5, 1), np.nan, np.float32), SR, "WAV", "FLOAT"),
                    ("decode", "non-finite samples")),
    "too short": ("blip.wav", lambda: encode(tone(1.0), SR, "WAV"), ("featurise", "shorter than the minimum")),
    "digital silence": ("silence.wav", lambda: encode(np.zeros((SR * 8, 1), np.float32), SR, "WAV"),
                        ("featurise", "silence")),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Every file of the zoo in one catalogue, plus what a listing meets that is not a file:
    a directory with an audio name, a broken link, a symlink loop."""
    root = tmp_path_factory.mktemp("zoo")
    os.environ["ZOO_TMP"] = str(tmp_path_factory.mktemp("zoo-work"))
    for file_name, make, _ in ZOO.values():
        (root / file_name).write_bytes(make())
    (root / "folder.mp3").mkdir()  # a directory named like a song: not listed as one
    (root / "dangling.mp3").symlink_to(root / "gone.mp3")
    (root / "loop-a.mp3").symlink_to(root / "loop-b.mp3")
    (root / "loop-b.mp3").symlink_to(root / "loop-a.mp3")
    files = {file.relative_path: file for file in list_catalogue(str(root), "none")}
    outcomes = {path: read_and_ingest(file, FEATURES, SplitConfig()) for path, file in files.items()}
    return files, outcomes


def test_the_zoo_has_at_least_25_kinds():
    assert len(ZOO) + 3 >= 25  # + the directory, the broken link, the loop
    assert len({name for name, _, _ in ZOO.values()}) == len(ZOO)


@pytest.mark.parametrize("kind", list(ZOO))
def test_each_kind_has_its_outcome(zoo, kind):
    _, outcomes = zoo
    file_name, _, (expected, reason) = ZOO[kind]
    outcome = outcomes[file_name]
    assert (outcome.song is None) != (outcome.error is None), "a song or an error row, never both"
    if expected == SONG:
        assert outcome.song is not None, f"{kind}: {outcome.error}"
        assert outcome.song["n_tiles"] >= 1 and outcome.song["content_hash"]
        assert outcome.tiles is not None and len(outcome.tiles) == outcome.song["n_tiles"]
    else:
        assert outcome.error is not None, f"{kind} became a song"
        assert outcome.error["stage"] == expected and reason in outcome.error["message"], outcome.error
        assert outcome.error["path"].endswith(file_name)


def test_what_each_odd_file_became(zoo):
    _, outcomes = zoo
    assert outcomes["long.wav"].song["n_tiles"] == int(1200.0 // (256 * 512 / 22_050))  # every tile of 20 min
    assert outcomes["long.wav"].song["duration_s"] == pytest.approx(1200.0, abs=0.01)
    assert outcomes["cover.mp3"].song["title"] == "Cover Art"  # the tag is read past the picture
    assert outcomes["surround.wav"].song["channels"] == 6
    assert outcomes["tone.m4a"].song["decoder"] == "pyav"
    assert outcomes["hires.flac"].song["sample_rate"] == 96_000
    assert outcomes["short-ok.wav"].song["n_tiles"] == 1  # padded to one tile


def test_what_a_listing_meets_that_is_not_a_song(zoo):
    files, outcomes = zoo
    assert "folder.mp3" not in files  # a directory is walked, not read
    for name, reason in (("dangling.mp3", "broken link"), ("loop-a.mp3", "a loop of symbolic links"),
                         ("loop-b.mp3", "a loop of symbolic links")):
        error = outcomes[name].error  # listed, so reported, not dropped
        assert error is not None and error["stage"] == "read" and reason in error["message"], error
    accounted = {path for path, o in outcomes.items() if o.song or o.error}
    assert accounted == set(files)  # every file listed is a song or an error row
