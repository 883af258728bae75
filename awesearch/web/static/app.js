// awesearch page: search by text or example, list hits with waveforms, play, export. No build step.
const CONTEXT_S = 1.0;   // seconds of waveform either side of a hit
const PLAY_PAD_S = 0.5;  // seconds played before and after a hit
const PEAKS_N = 110;     // waveform columns per hit

const $ = (id) => document.getElementById(id);
const audio = $("audio");
let hits = [];           // the current results (API hit objects)
let selected = -1;
let lastRequest = null;  // {method, params, body, type, label}: repeated with format= to export
let clipEnd = null;      // seconds: pause here (playing one hit)
let formats = [];

function fmtTime(seconds) {
  const tenths = Math.round(seconds * 10);
  const h = Math.floor(tenths / 36000), m = Math.floor((tenths % 36000) / 600), s = (tenths % 600) / 10;
  return `${h}:${String(m).padStart(2, "0")}:${s.toFixed(1).padStart(4, "0")}`;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function options() {
  const params = new URLSearchParams();
  const k = $("k").value.trim(), t = $("threshold").value.trim(), w = $("within").value.trim();
  if (k) params.set("k", k);
  if (t) params.set("threshold", t);
  if (w) params.set("within", w);
  if ($("voice").value) params.set("speaker", $("voice").value);
  return params;
}

async function request(req, format) {
  const params = new URLSearchParams(req.params);
  if (format) params.set("format", format);
  const init = req.method === "POST" ? {method: "POST", body: req.body, headers: {"Content-Type": req.type}} : {};
  const response = await fetch(`/api/search?${params}`, init);
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message = (await response.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

async function run(req) {
  lastRequest = req;
  setStatus(`searching for ${req.label}…`);
  try {
    const data = await (await request(req)).json();
    hits = data.hits;
    render();
    setStatus(`${hits.length} hit${hits.length === 1 ? "" : "s"} for ${req.label} in ${data.elapsed_ms} ms`);
  } catch (e) {
    hits = [];
    render();
    setStatus(e.message, true);
  }
}

function searchText(text) {
  const params = options();
  params.set("text", text);
  const url = new URLSearchParams({q: text});
  for (const key of ["k", "threshold", "within", "speaker"]) if (params.has(key)) url.set(key, params.get(key));
  history.replaceState(null, "", `/?${url}`);
  return run({method: "GET", params, label: `"${text}"`});
}

function searchLike(hit) {
  const params = options();
  params.set("file", hit.file_id);
  params.set("start", hit.start);
  params.set("end", hit.end);
  $("q").value = "";
  return run({method: "GET", params, label: `${baseName(hit.path)} ${fmtTime(hit.start)}`});
}

function searchClip(blob, name) {
  const params = options();
  if (name) params.set("filename", name);
  return run({method: "POST", params, body: blob, type: blob.type || "application/octet-stream", label: name || "the recorded clip"});
}

const baseName = (path) => path.split(/[\\/]/).pop();

function render() {
  const list = $("hits");
  list.replaceChildren();
  hits.forEach((hit, i) => {
    const li = document.createElement("li");
    li.className = "hit";
    li.dataset.index = i;
    li.innerHTML = `<span class="rank"></span><span class="file"></span><span class="time"></span><span class="score"></span>
      <canvas width="440" height="72"></canvas>
      <span class="actions"><button class="play">play</button><button class="like">more like this</button><button class="open">open</button></span>`;
    li.querySelector(".rank").textContent = i + 1;
    li.querySelector(".file").textContent = baseName(hit.path);
    li.querySelector(".file").title = hit.path;
    li.querySelector(".time").textContent = `${fmtTime(hit.start)}–${fmtTime(hit.end)}`;
    li.querySelector(".score").textContent = hit.score.toFixed(3);
    if (hit.speaker_score !== undefined) {
      li.querySelector(".score").textContent += ` · voice ${hit.speaker_score.toFixed(2)}`;
      li.querySelector(".score").title = "score; probability that the chosen voice says it";
    }
    li.querySelector(".play").onclick = () => { select(i); playHit(hit); };
    li.querySelector(".like").onclick = () => searchLike(hit);
    li.querySelector(".open").onclick = () => { select(i); openFile(hit); };
    li.onclick = (ev) => { if (ev.target.tagName !== "BUTTON") select(i); };
    list.appendChild(li);
    drawWaveform(li.querySelector("canvas"), hit);
  });
  $("exports").hidden = hits.length === 0;
  selected = -1;
  if (hits.length) select(0);
}

async function drawWaveform(canvas, hit) {
  const start = Math.max(0, hit.start - CONTEXT_S), end = hit.end + CONTEXT_S;
  const response = await fetch(`/api/peaks/${hit.file_id}?start=${start}&end=${end}&n=${PEAKS_N}`);
  if (!response.ok) return;
  const {peaks} = await response.json();
  const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  const x = (t) => ((t - start) / (end - start)) * w;
  g.fillStyle = "rgba(37, 99, 168, 0.15)";
  g.fillRect(x(hit.start), 0, x(hit.end) - x(hit.start), h);
  const peak = Math.max(1e-3, ...peaks.map(([lo, hi]) => Math.max(-lo, hi)));
  const col = w / peaks.length;
  peaks.forEach(([lo, hi], i) => {
    const t = start + ((i + 0.5) / peaks.length) * (end - start);
    g.fillStyle = t >= hit.start && t <= hit.end ? "#2563a8" : "#9aa6b5";
    const top = h / 2 - (hi / peak) * (h / 2 - 2), bottom = h / 2 - (lo / peak) * (h / 2 - 2);
    g.fillRect(i * col, top, Math.max(1, col - 1), Math.max(1, bottom - top));
  });
}

function select(i) {
  if (i < 0 || i >= hits.length) return;
  document.querySelectorAll(".hit.selected").forEach((el) => el.classList.remove("selected"));
  const el = $("hits").children[i];
  el.classList.add("selected");
  el.scrollIntoView({block: "nearest"});
  selected = i;
}

function load(hit) {
  const url = new URL(hit.audio_url, location.href).href;
  if (audio.src !== url) {
    audio.dataset.transcoded = "";
    audio.src = url;
  }
  $("player").hidden = false;
  $("player-name").textContent = baseName(hit.path);
  const mine = hits.filter((h) => h.file_id === hit.file_id);
  $("player-hits").textContent = `${mine.length} hit${mine.length === 1 ? "" : "s"} of this query`;
  drawTimeline(hit);
}

function drawTimeline(hit) {
  const timeline = $("timeline");
  timeline.querySelectorAll(".mark").forEach((m) => m.remove());
  const duration = audio.duration || Math.max(...hits.map((h) => h.end));
  for (const h of hits.filter((x) => x.file_id === hit.file_id)) {
    const mark = document.createElement("div");
    mark.className = "mark";
    mark.style.left = `${(100 * h.start) / duration}%`;
    mark.style.width = `${(100 * (h.end - h.start)) / duration}%`;
    mark.title = `${fmtTime(h.start)} score ${h.score.toFixed(3)}`;
    mark.onclick = (ev) => { ev.stopPropagation(); playHit(h); };
    timeline.appendChild(mark);
  }
  timeline.dataset.fileId = hit.file_id;
}

function playHit(hit) {
  load(hit);
  clipEnd = hit.end + PLAY_PAD_S;
  const begin = () => { audio.currentTime = Math.max(0, hit.start - PLAY_PAD_S); audio.play().catch((e) => setStatus(`cannot play: ${e.message}`, true)); };
  if (audio.readyState >= 1) begin(); else audio.addEventListener("loadedmetadata", begin, {once: true});
}

function openFile(hit) {
  load(hit);
  clipEnd = null;
  const begin = () => { audio.currentTime = Math.max(0, hit.start - PLAY_PAD_S); audio.play().catch(() => {}); };
  if (audio.readyState >= 1) begin(); else audio.addEventListener("loadedmetadata", begin, {once: true});
}

audio.addEventListener("timeupdate", () => {
  if (clipEnd !== null && audio.currentTime >= clipEnd) { audio.pause(); clipEnd = null; }
  if (audio.duration) $("cursor").style.left = `${(100 * audio.currentTime) / audio.duration}%`;
});
audio.addEventListener("loadedmetadata", () => {
  const fid = Number($("timeline").dataset.fileId);
  const hit = hits.find((h) => h.file_id === fid);
  if (hit) drawTimeline(hit);
});
audio.addEventListener("error", () => {
  // a codec this browser lacks: ask the server for the 16 kHz WAV it transcodes on the fly
  if (audio.dataset.transcoded || !audio.src) return;
  const t = audio.currentTime;
  audio.dataset.transcoded = "1";
  audio.src = `${audio.src.split("?")[0]}?transcode=1`;
  audio.addEventListener("loadedmetadata", () => { audio.currentTime = t; }, {once: true});
});
$("timeline").addEventListener("click", (ev) => {
  if (!audio.duration) return;
  const box = ev.currentTarget.getBoundingClientRect();
  clipEnd = null;
  audio.currentTime = ((ev.clientX - box.left) / box.width) * audio.duration;
});

async function exportAs(format) {
  if (!lastRequest) return;
  try {
    const response = await request(lastRequest, format);
    const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/)?.[1] || `awesearch.${format}`;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await response.blob());
    a.download = name;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    setStatus(`export failed: ${e.message}`, true);
  }
}

function renderExports() {
  const names = {csv: "CSV", json: "JSON", vtt: "WebVTT", audacity: "Audacity labels", textgrid: "Praat TextGrid", eaf: "ELAN"};
  $("export-links").replaceChildren(...formats.map((f) => {
    const a = document.createElement("a");
    a.textContent = names[f] || f;
    a.dataset.format = f;
    a.onclick = () => exportAs(f);
    return a;
  }));
}

async function loadInfo() {
  const response = await fetch("/api/info");
  const data = await response.json();
  if (!response.ok) { $("info-body").textContent = data.error; return; }
  formats = data.formats;
  renderExports();
  renderVoices(data.speakers);
  const rows = [["recordings", `${data.files} (${data.hours.toFixed(2)} h)`], ["windows", data.windows], ["encoder", data.encoder], ["index", data.index], ["updated", data.updated]];
  const table = document.createElement("table");
  for (const [k, v] of rows) {
    const tr = table.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
  const body = [table];
  if (data.skipped.length) {
    const p = document.createElement("p");
    p.textContent = `${data.skipped.length} skipped:`;
    const ul = document.createElement("ul");
    for (const s of data.skipped) {
      const li = document.createElement("li");
      li.textContent = `${s.path}: ${s.error}`;
      ul.appendChild(li);
    }
    body.push(p, ul);
  }
  $("info-body").replaceChildren(...body);
}

function renderVoices(speakers) {
  // the voices of `awesearch speakers`, when the index has any: filter the hits by one of them
  const select = $("voice");
  for (const v of speakers.voices) {
    const option = document.createElement("option");
    option.value = v.id;
    option.textContent = v.name ? `${v.id} ${v.name}` : v.id;
    select.appendChild(option);
  }
  const wanted = new URLSearchParams(location.search).get("speaker");
  if (wanted && [...select.options].some((o) => o.value === wanted)) select.value = wanted;
  $("voice-label").hidden = speakers.voices.length === 0;
}

let recorder = null;
async function toggleRecord() {
  const button = $("record");
  if (recorder) { recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) { setStatus("this browser cannot record here", true); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true});
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (ev) => chunks.push(ev.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      button.textContent = "record";
      button.classList.remove("recording");
      const blob = new Blob(chunks, {type: recorder.mimeType});
      recorder = null;
      searchClip(blob, null);
    };
    recorder.start();
    button.textContent = "stop";
    button.classList.add("recording");
    setStatus("recording: say the word, then press stop");
  } catch (e) {
    setStatus(`cannot record: ${e.message}`, true);
  }
}

document.addEventListener("keydown", (ev) => {
  if (ev.target.matches("input, textarea, select") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "j") select(selected + 1);
  else if (ev.key === "k") select(selected - 1);
  else if (ev.key === " " && selected >= 0) playHit(hits[selected]);
  else if (ev.key === "Enter" && selected >= 0) openFile(hits[selected]);
  else return;
  ev.preventDefault();
});

$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("q").value.trim();
  if (text) searchText(text); else setStatus("type a word or phrase", true);
});
$("clip").addEventListener("change", (ev) => {
  const file = ev.target.files[0];
  if (file) searchClip(file, file.name);
  ev.target.value = "";
});
$("record").addEventListener("click", toggleRecord);

const initial = new URLSearchParams(location.search);
if (initial.get("k")) $("k").value = initial.get("k");
if (initial.get("threshold")) $("threshold").value = initial.get("threshold");
if (initial.get("within")) $("within").value = initial.get("within");
loadInfo().then(() => {  // after the voices are known, so /?q=...&speaker=S1 searches in that voice
  if (initial.get("q")) {
    $("q").value = initial.get("q");
    searchText(initial.get("q"));
  }
});
