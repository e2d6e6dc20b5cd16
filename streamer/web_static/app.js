// cadenza's page: a scrolling piano roll of what is played (WebSocket /ws) and a control for each
// setting (POST /api/controls). No libraries, nothing from a CDN.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => token ? `${path}?token=${encodeURIComponent(token)}` : path;
const WINDOW_SECONDS = 10;  // the roll shows the last ten seconds
const LOW_PITCH = 21, HIGH_PITCH = 108;  // the piano's keys
const COLOURS = { cadenza: "#5aa9ff", player: "#ffa24a" };

const notes = [];  // {onset, pitch, velocity, duration, source}, onset in stream seconds
let state = {};
let clockOffset = null;  // stream seconds minus page seconds, from each state message's "now"
let editing = null;  // the control being dragged: the state must not move it back meanwhile

const canvas = document.getElementById("roll");
const context = canvas.getContext("2d");

function streamNow() {
  return clockOffset === null ? 0 : performance.now() / 1000 + clockOffset;
}

function draw() {
  const width = canvas.width = canvas.clientWidth * devicePixelRatio;
  const height = canvas.height = canvas.clientHeight * devicePixelRatio;
  const now = streamNow();
  const x = (t) => width - (now - t) / WINDOW_SECONDS * width;
  const keyHeight = height / (HIGH_PITCH - LOW_PITCH + 1);
  context.clearRect(0, 0, width, height);
  if (state.bpm && state.beat_zero !== null) {  // beat and bar lines of the clock
    const beat = 60 / state.bpm;
    const first = Math.ceil((now - WINDOW_SECONDS - state.beat_zero) / beat);
    for (let index = first; state.beat_zero + index * beat <= now; index++) {
      context.fillStyle = index % 4 === 0 ? "#3a3f4b" : "#22252d";
      context.fillRect(x(state.beat_zero + index * beat), 0, index % 4 === 0 ? 2 : 1, height);
    }
  }
  for (const note of notes) {
    if (note.onset + note.duration < now - WINDOW_SECONDS || note.onset > now) continue;
    context.globalAlpha = 0.35 + 0.65 * note.velocity / 127;
    context.fillStyle = COLOURS[note.source] || "#ccc";
    const left = x(note.onset), right = Math.min(x(note.onset + note.duration), width);
    context.fillRect(left, (HIGH_PITCH - note.pitch) * keyHeight, Math.max(right - left, 2), Math.max(keyHeight, 2));
  }
  context.globalAlpha = 1;
  while (notes.length && notes[0].onset + notes[0].duration < now - WINDOW_SECONDS - 5) notes.shift();
  requestAnimationFrame(draw);
}

function showState() {
  const density = state.density === null ? "free" : state.density;
  document.getElementById("status").textContent =
    `${state.notes_played} notes · T ${state.temperature} · density ${density} · key ${state.key || "free"} · ` +
    `dynamics ${state.dynamics === null ? "free" : Math.round(state.dynamics)} · program ${state.instrument} · ` +
    `tempo ×${state.tempo_scale}` + (state.bpm ? ` · ${state.bpm.toFixed(1)} BPM` : "") +
    (state.turn ? ` · turn: ${state.turn}` : "") + (state.paused ? " · paused" : "");
  const values = {
    temperature: state.temperature, density: typeof state.density === "number" ? state.density : 0,
    dynamics: state.dynamics === null ? 0 : state.dynamics, instrument: state.instrument, tempo_scale: state.tempo_scale,
  };
  for (const [name, value] of Object.entries(values)) {
    if (editing !== name) document.getElementById(name).value = value;
    document.getElementById(`${name}-value`).textContent = value === 0 && name !== "instrument" ? "free" : value;
  }
  if (editing !== "key") document.getElementById("key").value = state.key === null ? "none" : state.key;
  document.getElementById("pause").textContent = state.paused ? "play on" : "pause";
}

async function send(changes) {
  const response = await fetch(withToken("/api/controls"), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(changes),
  });
  const body = await response.json();
  document.getElementById("error").textContent = response.ok ? "" : body.error;
  if (response.ok) { state = body; showState(); }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}${withToken("/ws")}`);
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "note") {
      notes.push(message);
    } else if (message.type === "state") {
      clockOffset = message.now - performance.now() / 1000;
      state = message;
      showState();
    }
  };
  socket.onclose = () => {
    document.getElementById("status").textContent = "disconnected: retrying…";
    setTimeout(connect, 1000);
  };
}

function wireControls() {
  const keys = document.getElementById("key");
  const names = ["none", "auto"];
  for (const tonic of ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]) {
    names.push(`${tonic} major`, `${tonic} minor`);
  }
  for (const name of names) keys.add(new Option(name, name));
  keys.addEventListener("focus", () => { editing = "key"; });
  keys.addEventListener("change", () => { editing = null; send({ key: keys.value }); });
  for (const name of ["temperature", "density", "dynamics", "instrument", "tempo_scale"]) {
    const input = document.getElementById(name);
    input.addEventListener("input", () => { editing = name; });
    input.addEventListener("change", () => {
      editing = null;
      const value = name === "instrument" ? parseInt(input.value, 10) : parseFloat(input.value);
      send({ [name]: value });
    });
  }
  document.getElementById("pause").addEventListener("click", () => send({ paused: !state.paused }));
  document.getElementById("panic").addEventListener("click", () => send({ panic: true }));
}

wireControls();
connect();
requestAnimationFrame(draw);
