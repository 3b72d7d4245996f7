// Listener page (/s/{id}): countdown → live playback (or waiting room) → recording, with
// reactions, request to speak and the speaker view (WHIP) once on stage.
import {
  $, ApiError, REACTIONS, api, copyText, countdownText, el, localTime, plural, say, show,
  sleep, spaceIdFromPath,
} from "./common.js";
import { Player, probeStream } from "./player.js";
import { Publisher } from "./whip.js";
import { renderStage } from "./stage.js";
import { createClip } from "./clips.js";

const spaceId = spaceIdFromPath();
const params = new URLSearchParams(location.search);
const speakMode = params.get("speak") === "1";
const POLL_MS = 2000;

const ui = {
  badge: $("#badge"), listeners: $("#listeners"), title: $("#title"), host: $("#host"),
  description: $("#description"), status: $("#status"), before: $("#before"),
  countdown: $("#countdown"), startsAt: $("#starts-at"), arm: $("#arm"), waiting: $("#waiting"),
  listen: $("#listen"), play: $("#play"), playState: $("#play-state"), audio: $("#audio"),
  ended: $("#ended"), playRecording: $("#play-recording"), replayLink: $("#replay-link"),
  invite: $("#invite"), speaker: $("#speaker"), speakerStatus: $("#speaker-status"),
  mic: $("#mic"), mute: $("#mute"), leave: $("#leave"), returnAudio: $("#return-audio"),
  stage: $("#stage"), interact: $("#interact"), reactions: $("#reactions"),
  request: $("#request"), clip: $("#clip"), clipStatus: $("#clip-status"),
  shareUrl: $("#share-url"), copy: $("#copy"),
};

const app = {
  state: null,          // last state document
  ticket: null,         // listener ticket (also the Bearer for reactions and requests)
  listenerId: null,
  armed: false,         // the user asked to play (the one gesture browsers need)
  joining: false,
  playing: false,
  mode: null,           // "recording" once the replay plays here
  requested: false,
  publisher: null,
  speakToken: null,
  rtc: "idle",          // the WHIP connection: idle, connecting, connected, disconnected
  muted: true,          // my microphone as the stage has it (people join the stage muted)
  muteBusy: false,      // a mute/unmute request is on its way
  muteEpoch: 0,         // bumped by each mute/unmute: older state documents cannot undo it
  muteSynced: true,     // false until a state document fetched after the last answer arrives
  mutedByHost: false,
  micBusy: false,
  speakerKey: null,     // what the speaker status line last said (see renderSpeaker)
  stateAt: 0,           // generated_at of the newest state document applied
  polling: false,
  pollError: false,     // the status line shows an error of the state poll itself
  events: null,
  reactions: {},
  pendingReactions: {},
};
window.townhall = app; // for tests and the curious

const player = new Player(ui.audio, {
  onError: (m) => say(ui.status, m, "error"),
  onStatus: (m) => say(ui.playState, m || (ui.audio.paused ? "Paused" : "Playing live")),
});

// ---------------------------------------------------------------- credentials

function stored(key) { try { return JSON.parse(sessionStorage.getItem(key)); } catch { return null; } }

function loadTicket() {
  const saved = stored(`townhall.ticket.${spaceId}`);
  if (saved && saved.expires_at * 1000 > Date.now() + 60000) {
    app.ticket = saved.ticket; app.listenerId = saved.listener_id; app.playlist = saved.playlist_url;
  }
}

function apiKey() { return localStorage.getItem("townhall.apiKey") || null; }

function hostToken() {
  try { return (JSON.parse(localStorage.getItem("townhall.hosted") || "{}")[spaceId] || {}).token || null; } catch { return null; }
}

/** Who acts on the stage: a stored host token, else the account's API key, else the ticket. */
function stageCredential() {
  if (speakMode) return hostToken() || apiKey() || app.ticket;
  return app.ticket || hostToken() || apiKey();
}

function myIdentity() {
  if (speakMode) {
    const me = localStorage.getItem("townhall.me");
    if (me) return me;
  }
  return app.listenerId;
}

// ---------------------------------------------------------------- join / waiting room

async function join() {
  if (app.joining || app.ticket) return;
  app.joining = true;
  let queueTicket = null; // the waiting room's signed place, sent back on every poll
  try {
    for (;;) {
      let result;
      try {
        const body = queueTicket ? { queue_ticket: queueTicket } : {};
        result = await api(`/api/spaces/${spaceId}/join`, { method: "POST", body });
      } catch (err) {
        if (err instanceof ApiError && (err.status === 503 || err.status === 429)) {
          showWaiting({ position: null, eta_seconds: null });
          await sleep(politeDelay(err.body && err.body.retry_after, 5));
          continue;
        }
        if (queueTicket && err instanceof ApiError && err.body && /queue_ticket/.test(err.body.code || "")) {
          queueTicket = null; // expired or unreadable: take a new place rather than give up
          continue;
        }
        throw err;
      }
      if (result.status === 202) { // the gate says wait
        const wait = result.data || {};
        if (wait.queue_ticket) queueTicket = wait.queue_ticket;
        showWaiting(wait);
        await sleep(politeDelay(wait.poll_after || result.headers.get("Retry-After"), 5));
        if (app.state && app.state.status !== "live") return;
        continue;
      }
      show(ui.waiting, false);
      const d = result.data;
      app.ticket = d.ticket; app.listenerId = d.listener_id; app.playlist = d.playlist_url;
      sessionStorage.setItem(`townhall.ticket.${spaceId}`, JSON.stringify(d));
      return;
    }
  } catch (err) {
    say(ui.status, err.message, "error");
  } finally {
    app.joining = false;
  }
}

/** Seconds to wait before polling again: what the server asked, with ±20 % jitter. */
function politeDelay(asked, fallback) {
  const s = Math.max(1, Number(asked) || fallback);
  return s * 1000 * (0.9 + Math.random() * 0.2);
}

function showWaiting(wait) {
  show(ui.waiting, true);
  show(ui.listen, false);
  $("#waiting-position").textContent = wait.position ? `#${wait.position}` : "–";
  $("#waiting-eta").textContent = wait.eta_seconds ? `~${countdownText(wait.eta_seconds)}` : "–";
}

// ---------------------------------------------------------------- playback

async function startLive() {
  await join();
  if (!app.ticket || app.mode === "recording") return;
  connectEvents();
  if (player.url === app.playlist) return;
  await player.load(app.playlist, { live: true });
  show(ui.listen, !app.publisher);
  await playNow(); // plays by itself where allowed (or after the "play when it starts" tap)
}

async function playNow() {
  if (app.publisher) return; // on stage you hear the WebRTC return instead
  const ok = await player.play().catch((err) => { say(ui.status, err.message, "error"); return false; });
  app.playing = ok;
  updatePlayButton();
  if (!ok) say(ui.playState, "Tap Play to listen.");
}

function updatePlayButton() {
  const playing = !ui.audio.paused;
  ui.play.textContent = playing ? "Pause" : "Play";
  ui.play.setAttribute("aria-label", playing ? "Pause" : app.mode === "recording" ? "Play the recording" : "Play live audio");
  say(ui.playState, playing ? (app.mode === "recording" ? "Playing the recording" : "Playing live") : "Paused");
}

ui.play.addEventListener("click", async () => {
  app.armed = true;
  if (ui.audio.paused) {
    if (app.mode !== "recording" && player.hls && ui.audio.readyState > 0 && player.hls.liveSyncPosition) {
      ui.audio.currentTime = player.hls.liveSyncPosition; // back to the live edge
    }
    await playNow();
  } else {
    player.pause();
  }
});
ui.audio.addEventListener("play", updatePlayButton);
ui.audio.addEventListener("pause", updatePlayButton);

ui.arm.addEventListener("click", () => {
  app.armed = !app.armed;
  ui.arm.setAttribute("aria-pressed", String(app.armed));
  ui.arm.textContent = app.armed ? "Will play when it starts ✓" : "Play when it starts";
  if (app.armed) {
    const probe = player.ensureProbe(); // unlock audio inside the gesture
    if (probe) probe.context.resume();
  }
});

async function playRecording() {
  app.mode = "recording";
  app.armed = true;
  const state = app.state || {};
  const url = (state.urls && state.urls.replay_url) || `/hls/${spaceId}/replay.m3u8`;
  await player.load(url, { live: false });
  show(ui.listen, true);
  await playNow();
}
ui.playRecording.addEventListener("click", playRecording);

// ---------------------------------------------------------------- state polling

/** "Hosted by NAME ✓ Verified", and the warning panel when the space is flagged
 * (impersonation of a verified host, known scam patterns); redrawn only when it changes. */
function renderHostAndTrust(state) {
  const trust = state.trust || { verified_host: Boolean(state.host.verified), flags: [] };
  const hostKey = `${state.host.name}|${trust.verified_host}`;
  if (ui.host.dataset.key !== hostKey) {
    ui.host.dataset.key = hostKey;
    ui.host.replaceChildren(`Hosted by ${state.host.name}`, trust.verified_host
      ? el("span", { class: "verified-badge", title: "Identity checked by townhall" },
        el("span", { "aria-hidden": "true" }, "✓"), " Verified")
      : "");
  }
  const lines = [];
  const imitated = [...new Set(trust.flags.filter((f) => f.kind === "impersonation").map((f) => f.target))];
  for (const name of imitated) lines.push(`Possible impersonation of verified host ${name}`);
  if (trust.flags.some((f) => f.kind === "scam")) lines.push("This space matches known scam patterns");
  const panel = $("#trust-warning");
  const key = lines.join("|");
  if (panel.dataset.key === key) return;
  panel.dataset.key = key;
  $("#trust-reasons").replaceChildren(...lines.map((line) => el("li", {}, line)));
  show(panel, lines.length > 0);
}

/** Apply a state document. `meta` says how it was fetched (see poll): only a document
 * fetched after the last mute/unmute answer, past the browser's cache, may change my mute
 * state; re-renders of a kept document (no meta) never do. */
function render(state, meta = {}) {
  app.state = state;
  document.title = `${state.title} — townhall`;
  ui.title.textContent = state.title;
  renderHostAndTrust(state);
  ui.description.textContent = state.description || "";
  const label = { live: "Live", scheduled: "Scheduled", ended: "Ended" }[state.status] || state.status;
  if (ui.badge.textContent !== label) ui.badge.textContent = label;
  ui.badge.className = `badge ${state.status}`;
  const n = state.listeners.current;
  const text = state.status === "ended"
    ? plural(state.listeners.total, "listener", "listeners") + " in total"
    : `${plural(n, "listener", "listeners")}`;
  if (ui.listeners.textContent !== text) ui.listeners.textContent = text;
  ui.listeners.dataset.count = String(n);
  renderStage(ui.stage, state.speakers, myIdentity());
  renderReactions(state.reactions || {});
  show(ui.before, state.status === "scheduled");
  show(ui.ended, state.status === "ended");
  show(ui.interact, state.status === "live" && Boolean(app.ticket));
  if (state.status === "scheduled") {
    ui.startsAt.textContent = state.scheduled_start ? `Starts ${localTime(state.scheduled_start)}` : "The host has not started yet.";
    tickCountdown();
  }
  const me = state.speakers.find((s) => s.id === myIdentity());
  const onStage = Boolean(me) && state.status === "live";
  show(ui.speaker, onStage || (speakMode && state.status === "live"));
  if (onStage) {
    app.requested = false;
    const trusted = !app.muteBusy && meta.epoch === app.muteEpoch && (app.muteSynced || meta.fresh);
    if (trusted) {
      if (me.muted !== app.muted) app.mutedByHost = me.muted && app.mutedByHost;
      app.muted = me.muted;
      app.muteSynced = true;
    }
  } else if (app.publisher && !speakMode) {
    stopPublishing("You are no longer on stage.");
  }
  renderSpeaker();
  show(ui.request, !onStage);
  ui.request.textContent = app.requested ? "Cancel request" : "Request to speak";
  ui.request.setAttribute("aria-pressed", String(app.requested));
}

function tickCountdown() {
  const s = app.state;
  if (!s || s.status !== "scheduled" || !s.scheduled_start) { ui.countdown.textContent = ""; return; }
  const left = (new Date(s.scheduled_start) - Date.now()) / 1000;
  ui.countdown.textContent = left > 0 ? countdownText(left) : "Starting…";
}

/** Fetch and apply the state document. `fresh` skips the browser's cached copy (the
 * document is cacheable for a second or two): after an event or an action of our own.
 * Polls may overlap on a slow connection; a document older than one already applied is
 * dropped, so a late answer never rolls the page back. */
async function poll({ fresh = false } = {}) {
  const epoch = app.muteEpoch;
  const bypass = fresh || !app.muteSynced;
  try {
    const { data } = await api(`/api/spaces/${spaceId}/state`, bypass ? { cache: "no-cache" } : {});
    const at = Date.parse(data.generated_at) || 0;
    if (at < app.stateAt) return true;
    app.stateAt = at;
    const before = app.state && app.state.status;
    render(data, { epoch, fresh: bypass });
    if (app.pollError) { say(ui.status, ""); app.pollError = false; }
    if (data.status === "live" && app.mode !== "recording") await startLive();
    if (data.status === "ended" && before === "live") onEnded();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      ui.title.textContent = "Space not found";
      say(ui.status, err.message, "error");
      return false;
    }
    say(ui.status, err.message, "error");
    app.pollError = true;
  }
  return true;
}

/** The regular poll: skipped while the previous one is still on its way. */
async function pollTick() {
  if (app.polling) return;
  app.polling = true;
  try { await poll(); } finally { app.polling = false; }
}

function onEnded() {
  if (app.mode !== "recording") { player.stop(); show(ui.listen, false); }
  if (app.publisher) stopPublishing("The space has ended.");
  if (app.events) { app.events.close(); app.events = null; }
  say(ui.status, "This space has ended — play the recording.");
}

// ---------------------------------------------------------------- events (SSE)

function connectEvents() {
  if (app.events || !app.ticket || typeof EventSource === "undefined") return;
  const token = (speakMode && hostToken()) || app.ticket;
  const source = new EventSource(`/api/spaces/${spaceId}/events?token=${encodeURIComponent(token)}`);
  const me = () => myIdentity();
  const on = (kind, fn) => source.addEventListener(kind, (e) => {
    let data = {};
    try { data = JSON.parse(e.data); } catch { return; }
    fn(data);
  });
  const fresh = { fresh: true };
  on("speak_request_accepted", (d) => { if (d.identity === me()) { say(ui.status, "The host accepted your request: you are on stage.", "ok"); poll(fresh); } });
  on("speak_request_denied", (d) => { if (d.identity === me()) { app.requested = false; say(ui.status, "The host declined your request this time."); poll(fresh); } });
  on("speaker_invited", (d) => { if (d.identity === me()) show(ui.invite, true); });
  on("speaker_removed", (d) => { if (d.identity === me()) { stopPublishing("The host moved you off the stage."); poll(fresh); } });
  on("identity_blocked", (d) => { if (d.identity === me()) { stopPublishing("You were blocked from this space.", "error"); player.stop(); } });
  on("speaker_muted", (d) => {
    if (d.identity !== me()) return;
    if (d.by && d.by !== me()) app.mutedByHost = true;
    poll(fresh);
  });
  on("space_ended", () => poll(fresh));
  app.events = source;
}

// ---------------------------------------------------------------- reactions, requests, clips

function renderReactions(totals) {
  app.reactions = totals;
  if (!ui.reactions.childElementCount) {
    ui.reactions.append(...REACTIONS.map((emoji) => el("button", {
      type: "button", "data-emoji": emoji,
      onclick: () => react(emoji),
    }, el("span", { "aria-hidden": "true" }, emoji), el("span", { class: "count" }, "0"))));
  }
  for (const button of ui.reactions.children) {
    const emoji = button.dataset.emoji;
    const n = (totals[emoji] || 0) + (app.pendingReactions[emoji] || 0);
    button.lastChild.textContent = String(n);
    button.setAttribute("aria-label", `React ${emoji}, ${n} so far`);
  }
}

async function react(emoji) {
  try {
    app.pendingReactions[emoji] = (app.pendingReactions[emoji] || 0) + 1;
    renderReactions(app.reactions);
    await api(`/api/spaces/${spaceId}/reactions`, { method: "POST", body: { emoji }, token: app.ticket });
  } catch (err) {
    say(ui.status, err.message, "error");
  } finally {
    setTimeout(() => { app.pendingReactions[emoji] = Math.max(0, (app.pendingReactions[emoji] || 1) - 1); }, 2500);
  }
}

async function stageAction(action, body) {
  return api(`/api/spaces/${spaceId}/stage/${action}`, { method: "POST", body, token: stageCredential() });
}

ui.request.addEventListener("click", async () => {
  try {
    await stageAction(app.requested ? "cancel-request" : "request");
    app.requested = !app.requested;
    say(ui.status, app.requested ? "Request sent: the host will see it." : "Request cancelled.", "ok");
    if (app.state) render(app.state);
  } catch (err) {
    say(ui.status, err.message, "error");
  }
});

$("#invite-accept").addEventListener("click", async () => {
  try { await stageAction("accept-invite"); show(ui.invite, false); await poll({ fresh: true }); } catch (err) { say(ui.status, err.message, "error"); }
});
$("#invite-decline").addEventListener("click", async () => {
  try { await stageAction("decline-invite"); show(ui.invite, false); } catch (err) { say(ui.status, err.message, "error"); }
});

ui.clip.addEventListener("click", () => createClip(spaceId, { seconds: 30 }, app.ticket, ui.clipStatus));

// ---------------------------------------------------------------- speaker view (WHIP)

async function speakToken() {
  const credential = stageCredential();
  if (!credential) throw new Error("Join the space first.");
  if (credential === hostToken()) return credential;
  const { data } = await api(`/api/spaces/${spaceId}/stage/token`, { method: "POST", token: credential });
  return data.token;
}

/** The speaker controls and status line, from the connection and mute state. The status
 * line changes only when that state does, so an error stays readable until then. */
function renderSpeaker() {
  const publishing = Boolean(app.publisher);
  ui.mic.hidden = publishing;
  ui.mute.hidden = !publishing;
  if (!publishing) return;
  ui.mute.textContent = app.muted ? "Unmute" : "Mute";
  ui.mute.setAttribute("aria-pressed", String(!app.muted));
  ui.mute.setAttribute("aria-busy", String(app.muteBusy));
  // muting works at any time (it is local at once); unmuting waits for the connection
  ui.mute.disabled = app.muteBusy || (app.muted && app.rtc !== "connected");
  app.publisher.setMicEnabled(!app.muted && !app.muteBusy);
  if (app.muteBusy) return;
  const key = `${app.rtc} ${app.muted} ${app.mutedByHost}`;
  if (key === app.speakerKey) return;
  app.speakerKey = key;
  if (app.rtc === "connecting") say(ui.speakerStatus, "Connecting to the stage…");
  else if (app.rtc === "disconnected") say(ui.speakerStatus, "The connection to the stage is unstable: reconnecting…", "error");
  else if (!app.muted) say(ui.speakerStatus, "You are unmuted: everyone hears you.", "ok");
  else if (app.mutedByHost) say(ui.speakerStatus, "The host muted you. Unmute to speak again.");
  else say(ui.speakerStatus, "Connected. You are muted: unmute to speak.", "ok");
}

function onRtcState(state) {
  if (state === "failed") { stopPublishing("The connection to the stage failed. Try again.", "error"); return; }
  if (state === "closed") return;
  app.rtc = state === "connected" ? "connected" : state === "disconnected" ? "disconnected" : "connecting";
  renderSpeaker();
}

ui.mic.addEventListener("click", async () => {
  if (app.publisher || app.micBusy) return;
  app.micBusy = true;
  ui.mic.disabled = true;
  say(ui.speakerStatus, "Asking for the microphone…");
  let publisher = null;
  try {
    const token = await speakToken();
    publisher = new Publisher({
      whipUrl: `/api/spaces/${spaceId}/whip`,
      token,
      onReturn: (stream) => {
        ui.returnAudio.srcObject = stream;
        ui.returnAudio.play().catch(() => {});
        probeStream(stream);
      },
      onState: (s) => { if (app.publisher === publisher) onRtcState(s); },
    });
    await publisher.openMic();
    publisher.setMicEnabled(false); // nothing leaves the browser until the stage unmutes us
    say(ui.speakerStatus, "Connecting to the stage…");
    await publisher.publish();
    app.publisher = publisher;
    app.speakToken = token;
    app.rtc = "connecting";
    app.speakerKey = null;
    onRtcState(publisher.pc ? publisher.pc.connectionState : "new"); // it may be up already
    player.pause(); // hear the stage over WebRTC (lower delay, without yourself)
    show(ui.listen, false);
    poll({ fresh: true }); // my mute state as the stage has it now
  } catch (err) {
    if (publisher && app.publisher !== publisher) publisher.close();
    say(ui.speakerStatus, err.message, "error");
    ui.mic.disabled = false;
  } finally {
    app.micBusy = false;
  }
});

ui.mute.addEventListener("click", async () => {
  if (!app.publisher || app.muteBusy) return;
  const unmute = app.muted;
  app.muteBusy = true;
  app.muteEpoch += 1;
  app.muteSynced = false;
  renderSpeaker(); // a mute takes the microphone off at once; the button waits for the answer
  try {
    const { data } = await stageAction(unmute ? "unmute" : "mute");
    const me = data.space.stage.find((s) => s.id === myIdentity());
    app.muted = me ? me.muted : !unmute;
    app.mutedByHost = false;
  } catch (err) {
    // e.g. 409 when the page was behind the stage: the fresh poll below catches up
    say(ui.speakerStatus, err.message, "error");
  } finally {
    app.muteBusy = false;
    app.muteEpoch += 1;
    renderSpeaker();
    poll({ fresh: true });
  }
});

async function stopPublishing(message, kind = "info") {
  const publisher = app.publisher;
  app.publisher = null;
  app.rtc = "idle";
  app.muteBusy = false;
  app.speakerKey = null;
  if (publisher) await publisher.leave();
  ui.returnAudio.srcObject = null;
  ui.mic.disabled = false;
  renderSpeaker();
  if (message) say(ui.status, message, kind);
  if (app.state && app.state.status === "live" && app.ticket) {
    show(ui.listen, true);
    if (app.armed) playNow();
  }
}

ui.leave.addEventListener("click", async () => {
  await stopPublishing();
  try { await stageAction("leave"); say(ui.status, "You left the stage.", "ok"); } catch (err) { say(ui.status, err.message, "error"); }
  await poll({ fresh: true });
});

// ---------------------------------------------------------------- share, start

function setupShare() {
  const url = `${location.origin}/s/${spaceId}`;
  ui.shareUrl.value = url;
  ui.replayLink.href = `/s/${spaceId}/replay`;
  ui.copy.addEventListener("click", async () => {
    if (navigator.share && matchMedia("(pointer: coarse)").matches) {
      try { await navigator.share({ url, title: document.title }); return; } catch { /* fall back */ }
    }
    const ok = await copyText(url, ui.shareUrl);
    ui.copy.textContent = ok ? "Copied ✓" : "Press Ctrl+C";
    setTimeout(() => { ui.copy.textContent = "Copy link"; }, 2000);
  });
}

async function main() {
  if (!spaceId) return;
  setupShare();
  loadTicket();
  if (await poll() === false) return;
  setInterval(pollTick, POLL_MS);
  setInterval(tickCountdown, 1000);
}

main();
