"""`genre-batch serve`: the real server process (Ray Serve on its own local Ray) on loopback,
every endpoint and every error over HTTP (httpx), a reload while LATEST moves, and the page in
a real headless Chromium (selenium), with its fake microphone."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from genre_batch.answers import PublishedIndex
from genre_batch.artifacts import load_index_version
from genre_batch.cli import main
from genre_batch.commands import write_demo_catalogue
from genre_batch.layout import RootLayout
from genre_batch.replies import similar_song_reply
from genre_batch.storage import latest_version, write_bytes
from tests.audio_helpers import encode, noisy_sine
from tests.model_helpers import publish_untrained_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
MAX_UPLOAD_MB = 1
POLL_S = 0.5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli_json(*argv: str) -> object:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(list(argv)) == 0
    return json.loads(printed.getvalue())


@pytest.fixture(scope="module")
def catalogue_root(tmp_path_factory, ray_local):
    """A root with two index versions (two untrained models: different neighbours), LATEST on
    the first; training is proven elsewhere (test_chain)."""
    base = tmp_path_factory.mktemp("serve")
    catalogue, root = base / "catalogue", str(base / "root")
    write_demo_catalogue(catalogue, n_songs=10, seed=5, min_duration_s=7.0, max_duration_s=8.0, processes=1)
    assert main(["ingest", "--catalogue", str(catalogue), "--root", root, "--files-per-task", "5"]) == 0
    layout = RootLayout(root)
    versions = []
    for seed, run in enumerate(("untrained-a", "untrained-b")):
        publish_untrained_model(root, run, seed=seed)
        assert main(["index", "--root", root, "--n-trees", "5"]) == 0
        versions.append(latest_version(layout.index_area, "index"))
    write_bytes(f"{layout.index_area}/LATEST", f"{versions[0]}\n".encode())  # the server starts on the first
    songs = pd.read_parquet(layout.songs_table(latest_version(layout.ingest_area, "ingest")))
    return {"root": root, "catalogue": catalogue, "versions": versions, "songs": songs, "base": base}


@pytest.fixture(scope="module")
def server(catalogue_root):
    """`genre-batch serve` as a user starts it, in its own process with its own Ray."""
    port = free_port()
    home = tempfile.mkdtemp(prefix="gb-serve-home-")
    log = open(catalogue_root["base"] / "serve.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "genre_batch.cli", "serve", "--root", catalogue_root["root"], "--port", str(port),
         "--max-upload-mb", str(MAX_UPLOAD_MB), "--poll", str(POLL_S)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HOME": home},
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited {process.returncode}:\n{Path(log.name).read_text()}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                break
        time.sleep(1)
    else:
        process.kill()
        pytest.fail(f"serve did not answer /healthz in 180 s:\n{Path(log.name).read_text()}")
    with httpx.Client(base_url=base_url, timeout=120) as client:
        yield {"client": client, "url": base_url, "log": Path(log.name), "process": process}
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
    shutil.rmtree(home, ignore_errors=True)
    output = Path(log.name).read_text()
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    assert "stopped" in output


@pytest.fixture()
def on_first_version(catalogue_root, server):
    """LATEST on the first version and the server serving it (the reload test moves it)."""
    layout = RootLayout(catalogue_root["root"])
    write_bytes(f"{layout.index_area}/LATEST", f"{catalogue_root['versions'][0]}\n".encode())
    wait_for_version(server["client"], catalogue_root["versions"][0])
    return server["client"]


def wait_for_version(client: httpx.Client, version: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/healthz").json()["index_version"] != version:
        assert time.monotonic() < deadline, f"the server did not move to index {version}"
        time.sleep(0.2)


def song_file(catalogue_root, n: int = 0) -> Path:
    return Path(catalogue_root["songs"].sort_values("path")["path"].iloc[n])


def upload(path: Path, data: bytes | None = None, name: str | None = None) -> dict:
    return {"file": (name or path.name, data if data is not None else path.read_bytes(), "audio/mpeg")}


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in response.text
    for word in words:
        assert word in body["error"], body["error"]


# ------------------------------------------------------------------ answers, as the CLI gives them
def test_health_and_the_page(catalogue_root, on_first_version):
    health = on_first_version.get("/healthz").json()
    assert health["status"] == "ok" and health["index_version"] == catalogue_root["versions"][0]
    assert health["model_run"] == "untrained-a" and health["songs"] == len(catalogue_root["songs"])
    page = on_first_version.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="upload-form"' in page.text and 'id="record"' in page.text
    assert on_first_version.get("/static/app.js").status_code == 200


def test_classify_and_similar_uploads_answer_as_the_cli_does(catalogue_root, on_first_version):
    root, path = catalogue_root["root"], song_file(catalogue_root)
    (expected,) = cli_json("classify", "--root", root, "--json", str(path))
    got = on_first_version.post("/api/classify", files=upload(path)).json()
    assert {**got, "file": None} == {**expected, "file": None} and got["file"] == path.name

    expected = cli_json("similar", "--root", root, "--audio", str(path), "-k", "3", "--json")
    got = on_first_version.post("/api/similar", files=upload(path), data={"k": "3"}).json()
    assert got["neighbours"] == expected["neighbours"] and len(got["neighbours"]) == 3
    assert {**got["query"], "audio": None} == {**expected["query"], "audio": None}
    # The upload is a catalogue song: excluded from its own neighbours by its bytes.
    assert str(path) not in [n["path"] for n in got["neighbours"]]


def test_similar_song_playlist_and_search_answer_as_the_cli_does(catalogue_root, on_first_version):
    root, songs = catalogue_root["root"], catalogue_root["songs"]
    song_id = songs["song_id"].iloc[0]
    expected = cli_json("similar", "--root", root, "--song", song_id, "-k", "4", "--json")
    assert on_first_version.get("/api/similar", params={"song": song_id, "k": 4}).json() == expected

    history = songs["song_id"].iloc[:2].tolist()
    expected = cli_json("playlist", "--root", root, "--song", history[0], "--song", history[1], "-n", "5",
                        "--variety", "0.5", "--json")
    got = on_first_version.post("/api/playlist", json={"songs": history, "n": 5, "variety": 0.5}).json()
    assert got == expected and len(got["entries"]) == 5

    artist = songs["artist"].dropna().iloc[0]
    found = on_first_version.get("/api/songs", params={"q": artist.upper()[:6], "limit": 100}).json()["songs"]
    assert found and all(artist.upper()[:6].casefold() in " ".join(
        str(s[c] or "") for c in ("path", "artist", "title")).casefold() for s in found)
    assert {s["song_id"] for s in found} >= set(songs.loc[songs["artist"] == artist, "song_id"])
    everything = on_first_version.get("/api/songs", params={"limit": 3}).json()["songs"]
    assert len(everything) == 3 and set(everything[0]) >= {"song_id", "path", "title", "artist", "genre"}
    assert on_first_version.get("/api/songs", params={"q": "no-such-song-anywhere"}).json()["songs"] == []


def test_audio_is_the_songs_own_file_with_ranges(catalogue_root, on_first_version):
    song = catalogue_root["songs"].iloc[0]
    data = Path(song["path"]).read_bytes()
    whole = on_first_version.get(f"/api/audio/{song['song_id']}")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "audio/mpeg" and whole.headers["accept-ranges"] == "bytes"
    part = on_first_version.get(f"/api/audio/{song['song_id']}", headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == data[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(data)}"
    tail = on_first_version.get(f"/api/audio/{song['song_id']}", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    assert_error(on_first_version.get(f"/api/audio/{song['song_id']}", headers={"Range": f"bytes={len(data)}-"}),
                 416, "outside")
    # By id only: a path, or a path climbing out of the catalogue, is an unknown id.
    for not_an_id in ("..%2F..%2Fetc%2Fpasswd", song["path"].lstrip("/")):
        assert on_first_version.get(f"/api/audio/{not_an_id}").status_code == 404


# ------------------------------------------------------------------ bad requests
def test_bad_uploads_get_413_or_422_with_the_clis_reason(catalogue_root, on_first_version, tmp_path):
    path = song_file(catalogue_root)
    big = os.urandom(int(1.5 * 1024 * 1024))
    assert_error(on_first_version.post("/api/classify", files=upload(path, big)), 413, f"{MAX_UPLOAD_MB} MB")
    assert_error(on_first_version.post("/api/similar", files=upload(path, big)), 413)

    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all\n" * 200)
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed), contextlib.redirect_stdout(io.StringIO()):
        assert main(["classify", "--root", catalogue_root["root"], str(text)]) == 1
    reason = printed.getvalue().strip().splitlines()[-1].split(f"{text}: ", 1)[1]
    assert_error(on_first_version.post("/api/classify", files=upload(text)), 422,
                 reason.replace(str(text), "notes.mp3"))

    short = encode(noisy_sine(440.0, 1.0, 22050), 22050, "WAV")
    assert_error(on_first_version.post("/api/classify", files=upload(path, short, "short.wav")), 422, "shorter than")
    assert_error(on_first_version.post("/api/classify", files=upload(path, b"", "empty.mp3")), 422, "empty")
    assert_error(on_first_version.post("/api/classify", data={"k": "3"}, files={"other": ("x", b"x")}), 422, "file")
    assert_error(on_first_version.post("/api/classify", content=b"raw bytes"), 422, "multipart")


@pytest.mark.parametrize("path, params, status, words", [
    ("/api/similar", {"song": "SONG", "k": 0}, 422, ("k",)),
    ("/api/similar", {"song": "SONG", "k": 1001}, 422, ("k",)),
    ("/api/similar", {"song": "SONG", "k": "many"}, 422, ("k",)),
    ("/api/similar", {"k": 3}, 422, ("song",)),
    ("/api/similar", {"song": "no-such-song"}, 404, ("no-such-song",)),
    ("/api/songs", {"limit": 0}, 422, ("limit",)),
    ("/api/audio/no-such-song", {}, 404, ("no-such-song",)),
    ("/no/such/page", {}, 404, ()),
])
def test_bad_parameters_get_a_status_and_a_message(catalogue_root, on_first_version, path, params, status, words):
    params = {key: catalogue_root["songs"]["song_id"].iloc[0] if value == "SONG" else value
              for key, value in params.items()}
    assert_error(on_first_version.get(path, params=params), status, *words)


def test_bad_playlists_and_upload_k_get_422(catalogue_root, on_first_version):
    song_id = catalogue_root["songs"]["song_id"].iloc[0]
    for body, words in [
        ({"songs": [song_id], "variety": 1.5}, ("variety",)),
        ({"songs": [song_id], "variety": -0.1}, ("variety",)),
        ({"songs": [song_id], "n": 0}, ("n",)),
        ({"songs": []}, ("songs",)),
        ({"songs": ["nobody-knows-this-song"]}, ("nobody-knows-this-song",)),
    ]:
        assert_error(on_first_version.post("/api/playlist", json=body), 422, *words)
    assert_error(on_first_version.post("/api/playlist", content=b"{not json", headers={"content-type": "application/json"}),
                 422)
    path = song_file(catalogue_root)
    assert_error(on_first_version.post("/api/similar", files=upload(path), data={"k": "0"}), 422, "k")
    assert_error(on_first_version.post("/api/similar", files=upload(path), params={"k": 5000}), 422, "k")


def test_uploads_leave_nothing_under_the_root_or_the_catalogue(catalogue_root, on_first_version):
    def listing() -> set[Path]:
        return {p for top in (Path(catalogue_root["root"]), catalogue_root["catalogue"]) for p in top.rglob("*")}
    before = listing()
    path = song_file(catalogue_root)
    assert on_first_version.post("/api/classify", files=upload(path)).status_code == 200
    assert on_first_version.post("/api/classify", files=upload(path, os.urandom(2 * 1024 * 1024))).status_code == 413
    assert listing() == before


# ------------------------------------------------------------------ a new index while requests run
def test_a_new_index_is_served_without_a_restart_and_no_answer_is_mixed(catalogue_root, on_first_version):
    root, versions = catalogue_root["root"], catalogue_root["versions"]
    song_id = catalogue_root["songs"]["song_id"].iloc[0]
    expected = {}
    for version in versions:
        index = PublishedIndex(root, load_index_version(RootLayout(root), version))
        expected[version] = similar_song_reply(index, song_id, index.similar_to_song(song_id, 5))
    assert expected[versions[0]]["neighbours"] != expected[versions[1]]["neighbours"], "versions must differ"

    answers: list[httpx.Response] = []
    stop = threading.Event()

    def ask() -> None:
        with httpx.Client(base_url=str(on_first_version.base_url), timeout=60) as client:
            while not stop.is_set():
                answers.append(client.get("/api/similar", params={"song": song_id, "k": 5}))

    askers = [threading.Thread(target=ask) for _ in range(3)]
    for asker in askers:
        asker.start()
    time.sleep(1.0)
    write_bytes(f"{RootLayout(root).index_area}/LATEST", f"{versions[1]}\n".encode())
    wait_for_version(on_first_version, versions[1])
    time.sleep(1.0)
    stop.set()
    for asker in askers:
        asker.join()
    assert answers and all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    seen = [a.json()["index_version"] for a in answers]
    assert set(seen) == set(versions), "the requests should span both versions"
    for answer in answers:
        body = answer.json()
        assert body == expected[body["index_version"]]
    assert seen.index(versions[1]) > 0 and seen[-1] == versions[1]


# ------------------------------------------------------------------ the page in a real browser
def chromium_driver(tmp_path: Path):
    """Headless Chromium (Debian's chromium + chromium-driver) with a fake microphone."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (binary and driver):
        message = ("the page test needs Debian's chromium and chromium-driver (the README's test command "
                   "installs them when run as root): apt-get install -y chromium chromium-driver")
        if os.environ.get("GENRE_BATCH_NO_BROWSER") == "1":
            pytest.skip(message)
        pytest.fail(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1000,1400",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.browser
def test_the_page_in_a_real_browser_uploads_records_and_answers(catalogue_root, on_first_version, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium_driver(tmp_path)
    try:
        wait = WebDriverWait(browser, 90)
        browser.get(server["url"] + "/")
        wait.until(lambda b: "songs" in b.find_element(By.ID, "health").text)

        # Upload a catalogue mp3: genre, confidence, top-3 and the similar list appear.
        browser.find_element(By.ID, "file").send_keys(str(song_file(catalogue_root, 1)))
        browser.find_element(By.ID, "upload").click()
        wait.until(lambda b: "tiles analysed" in b.find_element(By.ID, "status").text
                   or "error" in b.find_element(By.ID, "status").get_attribute("class"))
        assert "tiles analysed" in browser.find_element(By.ID, "status").text, \
            browser.find_element(By.ID, "status").text
        assert browser.find_element(By.ID, "genre").text
        assert len(browser.find_elements(By.CSS_SELECTOR, "#top li")) == 3
        similar = browser.find_elements(By.CSS_SELECTOR, "#similar li")
        assert len(similar) == 10 - 1 and similar[0].find_element(By.TAG_NAME, "audio")
        browser.save_screenshot(str(tmp_path / "page-upload.png"))

        # Record 5 s from Chromium's fake microphone (a beep): an answer, not an error.
        seconds = browser.find_element(By.ID, "record-seconds")
        seconds.clear()
        seconds.send_keys("5")
        browser.find_element(By.ID, "record").click()
        wait.until(lambda b: "recording." in b.find_element(By.ID, "status").text
                   and "…" not in b.find_element(By.ID, "status").text)
        status = browser.find_element(By.ID, "status").text
        assert "tiles analysed" in status, status
        assert browser.find_element(By.ID, "genre").text

        # Search, pick two songs, make a playlist with the keyboard-reachable form.
        browser.find_element(By.ID, "query").send_keys("mp3")
        browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results li input")) >= 2)
        for box in browser.find_elements(By.CSS_SELECTOR, "#results li input")[:2]:
            box.click()
        browser.find_element(By.ID, "make-playlist").click()
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#playlist li"))
        assert "history:" in browser.find_element(By.ID, "playlist-mix").text
        # A phone's width: one column, nothing wider than the screen.
        browser.set_window_size(390, 844)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        path = tmp_path / "page.png"
        browser.save_screenshot(str(path))
        assert path.stat().st_size > 10_000
        if os.environ.get("GENRE_BATCH_SCREENSHOT"):
            shutil.copy(path, os.environ["GENRE_BATCH_SCREENSHOT"])
    finally:
        browser.quit()
