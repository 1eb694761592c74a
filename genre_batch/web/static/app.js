// The page: plain JavaScript over the JSON API (no build step).
"use strict";

const $ = (id) => document.getElementById(id);
const picked = new Map(); // song_id -> label shown
let maxUploadMb = 50;

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new Error(`${response.status}: the server's answer was not JSON`);
  }
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

function percent(x) {
  return `${Math.round(x * 100)} %`;
}

// One song of a list: pick box, name, genre, score, a player that loads on demand.
function songItem(song, score) {
  const item = document.createElement("li");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.id = `pick-${song.song_id}-${Math.random().toString(36).slice(2, 8)}`;
  box.checked = picked.has(song.song_id);
  const name = song.title || song.path.split("/").pop();
  box.addEventListener("change", () => {
    if (box.checked) picked.set(song.song_id, name);
    else picked.delete(song.song_id);
    showPicked();
  });
  const label = document.createElement("label");
  label.htmlFor = box.id;
  const genre = song.genre_source === "label" ? song.genre : `${song.genre} (predicted)`;
  label.textContent = `${name} · ${song.artist || "unknown artist"} · ${genre}` +
    (score === undefined ? "" : ` · similarity ${score.toFixed(2)}`);
  const player = document.createElement("audio");
  player.controls = true;
  player.preload = "none";
  player.src = `/api/audio/${encodeURIComponent(song.song_id)}`;
  player.setAttribute("aria-label", `play ${name}`);
  item.append(box, label, player);
  return item;
}

function showPicked() {
  $("picked").textContent = picked.size ? [...picked.values()].join(", ") : "none";
}

function showAnswer(reply) {
  const query = reply.query;
  const unknown = query.genre === "unknown";
  $("genre").textContent = unknown ? `unknown (the model is not sure; best guess ${query.predicted})` : query.genre;
  $("confidence").textContent = `confidence ${percent(query.confidence)}`;
  $("top").replaceChildren(...query.top.map(([genre, p]) => {
    const li = document.createElement("li");
    li.textContent = `${genre} ${percent(p)}`;
    return li;
  }));
  $("similar").replaceChildren(...reply.neighbours.map((n) => songItem(n, n.similarity)));
  $("answer").hidden = false;
}

async function ask(blob, name) {
  if (blob.size > maxUploadMb * 1024 * 1024) {
    setStatus(`${name} is over the server's limit of ${maxUploadMb} MB`, true);
    return;
  }
  const form = new FormData();
  form.append("file", blob, name);
  form.append("k", "10");
  setStatus(`analysing ${name}…`);
  try {
    const reply = await api("/api/similar", { method: "POST", body: form });
    showAnswer(reply);
    setStatus(`${name}: ${reply.query.n_tiles} tiles analysed (index ${reply.index_version})`);
  } catch (e) {
    $("answer").hidden = true;
    setStatus(`${name}: ${e.message}`, true);
  }
}

async function record() {
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    setStatus("this browser cannot record audio here (it needs https or localhost)", true);
    return;
  }
  const seconds = Math.max(4, Math.min(60, Number($("record-seconds").value) || 8));
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    setStatus(`no microphone: ${e.message}`, true);
    return;
  }
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((track) => track.stop());
    const type = recorder.mimeType || "audio/webm";
    const extension = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
    $("record").disabled = false;
    ask(new Blob(chunks, { type }), `recording.${extension}`);
  };
  $("record").disabled = true;
  setStatus(`recording ${seconds} s…`);
  recorder.start();
  setTimeout(() => recorder.stop(), seconds * 1000);
}

async function search(event) {
  event.preventDefault();
  const q = $("query").value;
  try {
    const reply = await api(`/api/songs?q=${encodeURIComponent(q)}&limit=50`);
    const items = reply.songs.map((song) => songItem(song));
    if (!items.length) {
      const none = document.createElement("li");
      none.textContent = `no song matches "${q}"`;
      items.push(none);
    }
    $("results").replaceChildren(...items);
  } catch (e) {
    $("results").replaceChildren(Object.assign(document.createElement("li"), { textContent: e.message }));
  }
}

async function makePlaylist(event) {
  event.preventDefault();
  if (!picked.size) {
    $("playlist-mix").textContent = "pick at least one song first";
    return;
  }
  const body = { songs: [...picked.keys()], n: Number($("length").value) || 20, variety: Number($("variety").value) };
  try {
    const reply = await api("/api/playlist", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const shares = (mix) => Object.entries(mix).sort((a, b) => b[1] - a[1]).map(([g, w]) => `${g} ${percent(w)}`).join(", ");
    $("playlist-mix").textContent = `history: ${shares(reply.history_mix)}; playlist aims at: ${shares(reply.target_mix)}`;
    $("playlist").replaceChildren(...reply.entries.map((e) => songItem(e, e.relevance)));
  } catch (e) {
    $("playlist-mix").textContent = e.message;
  }
}

async function health() {
  try {
    const h = await api("/healthz");
    maxUploadMb = h.max_upload_mb;
    $("health").textContent = `index ${h.index_version} · model ${h.model_run} · ${h.songs} songs`;
  } catch (e) {
    $("health").textContent = `not ready: ${e.message}`;
  }
}

window.addEventListener("DOMContentLoaded", () => {
  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = $("file").files[0];
    if (file) ask(file, file.name);
  });
  $("record").addEventListener("click", record);
  $("search-form").addEventListener("submit", search);
  $("playlist-form").addEventListener("submit", makePlaylist);
  $("variety").addEventListener("input", () => { $("variety-value").textContent = Number($("variety").value).toFixed(2); });
  health();
});
