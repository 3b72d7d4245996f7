// Replay page (/s/{id}/replay): the recording with seeking, and clip creation.
import { $, ApiError, api, clockText, localTime, say, show, spaceIdFromPath } from "./common.js";
import { Player } from "./player.js";
import { createClip } from "./clips.js";

const spaceId = spaceIdFromPath();
const audio = $("#audio");
const seek = $("#seek");
const status = $("#status");
const player = new Player(audio, { onError: (m) => say(status, m, "error") });
window.townhall = { player };
let dragging = false;

function credential() { return localStorage.getItem("townhall.apiKey") || undefined; }

function update() {
  const d = Number.isFinite(audio.duration) ? audio.duration : 0;
  seek.max = String(Math.floor(d));
  if (!dragging) seek.value = String(Math.floor(audio.currentTime));
  seek.setAttribute("aria-valuetext", `${clockText(audio.currentTime)} of ${clockText(d)}`);
  $("#position").textContent = clockText(audio.currentTime);
  $("#duration").textContent = clockText(d);
  $("#play").textContent = audio.paused ? "Play" : "Pause";
}

for (const name of ["timeupdate", "durationchange", "loadedmetadata", "play", "pause", "seeked"]) {
  audio.addEventListener(name, update);
}
seek.addEventListener("input", () => { dragging = true; $("#position").textContent = clockText(Number(seek.value)); });
seek.addEventListener("change", () => { dragging = false; audio.currentTime = Number(seek.value); });
$("#play").addEventListener("click", async () => {
  if (audio.paused) {
    if (!(await player.play())) say(status, "Tap Play again to start the recording.");
  } else {
    audio.pause();
  }
});
$("#back").addEventListener("click", () => { audio.currentTime = Math.max(0, audio.currentTime - 15); });
$("#forward").addEventListener("click", () => { audio.currentTime = Math.min(audio.duration || 0, audio.currentTime + 15); });

$("#clip-last").addEventListener("click", () => {
  const end = Math.max(1, Math.floor(audio.currentTime));
  createClip(spaceId, { start: Math.max(0, end - 30), end }, credential(), $("#clip-status"));
});
$("#mark-start").addEventListener("click", () => { $("#clip-start").value = String(Math.floor(audio.currentTime)); });
$("#mark-end").addEventListener("click", () => { $("#clip-end").value = String(Math.ceil(audio.currentTime)); });
$("#clip-range").addEventListener("submit", (event) => {
  event.preventDefault();
  const start = Number($("#clip-start").value);
  const end = Number($("#clip-end").value);
  if (!(end > start)) { say($("#clip-status"), "The end must come after the start.", "error"); return; }
  createClip(spaceId, { start, end }, credential(), $("#clip-status"));
});

async function main() {
  $("#live-link").href = `/s/${spaceId}`;
  let space;
  try {
    space = (await api(`/api/spaces/${spaceId}`)).data;
  } catch (err) {
    $("#title").textContent = err instanceof ApiError && err.status === 404 ? "Space not found" : "Replay";
    say(status, err.message, "error");
    return;
  }
  document.title = `${space.title} (replay) — townhall`;
  $("#title").textContent = space.title;
  $("#host").textContent = `Hosted by ${space.host.name}`;
  if (space.status !== "ended") {
    say(status, space.status === "live"
      ? "This space is live: the recording is here once it ends."
      : "This space has not happened yet.");
    $("#live-link").textContent = "Go to the space";
    return;
  }
  $("#summary").textContent = space.ended_at ? `Ended ${localTime(space.ended_at)}` : "";
  show($("#player"), true);
  show($("#clips"), true);
  await player.load(space.urls.replay_url, { live: false });
  const t = Number(new URLSearchParams(location.search).get("t"));
  if (t > 0) audio.addEventListener("loadedmetadata", () => { audio.currentTime = t; }, { once: true });
  update();
}

main();
