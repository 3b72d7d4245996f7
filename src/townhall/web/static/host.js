// Host console (/host): API key, create/schedule, start/end, requests (live over SSE),
// stage moderation, invitations, the host's own microphone and live figures.
import { $, ApiError, api, copyText, el, localTime, say, show } from "./common.js";
import { Publisher, } from "./whip.js";
import { probeStream } from "./player.js";

const KEY = "townhall.apiKey";
const HOSTED = "townhall.hosted";
const status = $("#status");

const app = { current: null, state: null, events: null, requests: new Map(), publisher: null, poller: null };
window.townhallHost = app;

function apiKey() { return localStorage.getItem(KEY) || ""; }
function hosted() { try { return JSON.parse(localStorage.getItem(HOSTED) || "{}"); } catch { return {}; } }
function remember(id, entry) {
  const all = hosted();
  all[id] = { ...(all[id] || {}), ...entry };
  localStorage.setItem(HOSTED, JSON.stringify(all));
}
function tokenFor(id) { return (hosted()[id] || {}).token || null; }
/** The credential for control actions: the account's key, else the space's host token. */
function credential(id) { return apiKey() || tokenFor(id); }

// ---------------------------------------------------------------- API key

$("#api-key").value = apiKey();
$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("#api-key").value.trim();
  if (!value.startsWith("th_")) { say(status, "API keys start with th_.", "error"); return; }
  localStorage.setItem(KEY, value);
  say(status, "API key kept in this browser.", "ok");
});
$("#forget-key").addEventListener("click", () => {
  localStorage.removeItem(KEY);
  $("#api-key").value = "";
  say(status, "API key forgotten.", "ok");
});

// ---------------------------------------------------------------- create / list

$("#new-start").addEventListener("input", () => {
  $("#create").textContent = $("#new-start").value ? "Schedule space" : "Create and go live";
});

$("#create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!apiKey()) { say(status, "Keep your API key first: creating a space needs an account.", "error"); $("#api-key").focus(); return; }
  const body = { title: $("#new-title").value.trim(), visibility: $("#new-visibility").value };
  const description = $("#new-description").value.trim();
  if (description) body.description = description;
  const start = $("#new-start").value;
  if (start) body.scheduled_start = new Date(start).toISOString();
  try {
    const { data } = await api("/api/spaces", { method: "POST", body, token: apiKey() });
    remember(data.id, { token: data.host_token, title: data.title });
    localStorage.setItem("townhall.me", data.host.id);
    say(status, data.status === "live" ? `“${data.title}” is live.` : `“${data.title}” is scheduled for ${localTime(data.scheduled_start)}.`, "ok");
    $("#create-form").reset();
    $("#create").textContent = "Create and go live";
    await listMine();
    await select(data.id);
  } catch (err) {
    say(status, err.message, "error");
  }
});

async function listMine() {
  const me = localStorage.getItem("townhall.me");
  const mine = new Map();
  try {
    const { data } = await api("/api/spaces?status=all&limit=200");
    for (const s of data.spaces) if (s.host.id === me) mine.set(s.id, s);
  } catch { /* listed below from what this browser remembers */ }
  await Promise.all(Object.keys(hosted()).filter((id) => !mine.has(id)).map(async (id) => {
    try { mine.set(id, (await api(`/api/spaces/${id}`)).data); } catch { /* gone */ }
  }));
  const order = { live: 0, scheduled: 1, ended: 2 };
  const spaces = [...mine.values()].sort((a, b) => order[a.status] - order[b.status]);
  $("#mine").replaceChildren(...spaces.map((s) => el("li", { class: "card" },
    el("span", { class: `badge ${s.status}` }, s.status),
    el("div", { class: "grow" }, el("span", { class: "title" }, s.title),
      el("div", { class: "muted" }, s.status === "scheduled" ? localTime(s.scheduled_start) : s.status === "ended" ? `ended ${localTime(s.ended_at)}` : "on air")),
    el("button", { type: "button", onclick: () => select(s.id), "aria-label": `Manage ${s.title}` }, "Manage"))));
  show($("#mine-empty"), spaces.length === 0);
}

// ---------------------------------------------------------------- console for one space

async function select(id) {
  if (app.current !== id) {
    if (app.events) { app.events.close(); app.events = null; }
    app.requests.clear();
    renderRequests();
    $("#c-log").replaceChildren();
  }
  app.current = id;
  show($("#console"), true);
  const url = `${location.origin}/s/${id}`;
  $("#c-share").value = url;
  $("#c-open").href = `/s/${id}`;
  await refresh();
  await connectEvents(id);
  clearInterval(app.poller);
  app.poller = setInterval(refresh, 2000);
  watchOps();
  $("#console-h").focus?.();
}

async function refresh() {
  const id = app.current;
  if (!id) return;
  try {
    const { data } = await api(`/api/spaces/${id}/state`);
    app.state = data;
    renderConsole(data);
  } catch (err) {
    say(status, err.message, "error");
  }
}

/** Host name with "✓ Verified" for verified hosts, and why the space is flagged, if it is. */
function renderTrust(s) {
  const trust = s.trust || { verified_host: Boolean(s.host.verified), flags: [] };
  const key = JSON.stringify([s.host.name, trust]);
  if ($("#c-host").dataset.key === key) return;
  $("#c-host").dataset.key = key;
  $("#c-host").replaceChildren(`Hosted by ${s.host.name}`, trust.verified_host
    ? el("span", { class: "verified-badge", title: "Identity checked by townhall" },
      el("span", { "aria-hidden": "true" }, "✓"), " Verified")
    : "");
  $("#c-trust-reasons").replaceChildren(...trust.flags.map((f) => el("li", {},
    f.kind === "impersonation" ? `Possible impersonation of verified host ${f.target}: ${f.detail}`
      : `Matches known scam patterns: ${f.detail}`)));
  show($("#c-trust"), trust.flags.length > 0);
}

function renderConsole(s) {
  $("#console-h").textContent = s.title;
  renderTrust(s);
  const badge = $("#c-badge");
  badge.textContent = s.status;
  badge.className = `badge ${s.status}`;
  show($("#c-start"), s.status === "scheduled");
  show($("#c-end"), s.status === "live");
  $("#c-mic").disabled = s.status !== "live" || Boolean(app.publisher);
  $("#c-listeners").textContent = String(s.listeners.current);
  $("#c-peak").textContent = String(s.listeners.peak);
  $("#c-total").textContent = String(s.listeners.total);
  $("#c-requests").textContent = String(s.requests);
  $("#c-reactions").textContent = String(Object.values(s.reactions || {}).reduce((a, b) => a + b, 0));
  const me = localStorage.getItem("townhall.me");
  const mine = s.speakers.find((p) => p.id === me);
  if (mine) $("#c-mute").textContent = mine.muted ? "Unmute" : "Mute";
  $("#c-stage").replaceChildren(...s.speakers.map((p) => {
    const actions = [];
    if (p.role !== "host") {
      actions.push(button(p.muted ? "Muted" : "Mute", () => act("mute", p.id), `Mute ${p.name}`, p.muted));
      actions.push(button(p.role === "cohost" ? "Remove co-host" : "Make co-host",
        () => act(p.role === "cohost" ? "remove-cohost" : "add-cohost", p.id), null));
      actions.push(button("Remove", () => act("remove", p.id), `Remove ${p.name} from the stage`));
      actions.push(button("Block", () => act("block", p.id), `Block ${p.name}`, false, "danger"));
    }
    return el("tr", { "data-id": p.id },
      el("td", {}, `${p.name}${p.speaking && !p.muted ? " 🔊" : ""}`,
        p.role === "host" && s.trust && s.trust.verified_host
          ? el("span", { class: "verified-badge" }, el("span", { "aria-hidden": "true" }, "✓"), " Verified") : "",
        el("div", { class: "muted" }, p.id)),
      el("td", {}, `${p.role}${p.muted ? " · muted" : ""}`),
      el("td", {}, el("div", { class: "row" }, actions)));
  }));
}

function button(text, onclick, label, disabled = false, cls = "") {
  return el("button", { type: "button", onclick, "aria-label": label || undefined, disabled, class: cls || undefined }, text);
}

async function act(action, target) {
  const id = app.current;
  try {
    const { data } = await api(`/api/spaces/${id}/stage/${action}`, {
      method: "POST", body: target ? { target } : undefined, token: credential(id),
    });
    for (const e of data.events) log(e);
    if (["accept", "deny", "block"].includes(action)) { app.requests.delete(target); renderRequests(); }
    await refresh();
  } catch (err) {
    say(status, err.message, "error");
  }
}

$("#c-start").addEventListener("click", async () => {
  try {
    await api(`/api/spaces/${app.current}/start`, { method: "POST", token: credential(app.current) });
    say(status, "The space is live.", "ok");
    await refresh();
  } catch (err) { say(status, err.message, "error"); }
});

$("#c-end").addEventListener("click", async () => {
  if (!confirm("End this space for everyone? The recording becomes the replay.")) return;
  try {
    if (app.publisher) await stopMic();
    await api(`/api/spaces/${app.current}/end`, { method: "POST", token: credential(app.current) });
    say(status, "The space has ended. The recording is on the replay page.", "ok");
    await refresh();
    listMine();
  } catch (err) { say(status, err.message, "error"); }
});

$("#c-copy").addEventListener("click", async () => {
  const ok = await copyText($("#c-share").value, $("#c-share"));
  $("#c-copy").textContent = ok ? "Copied ✓" : "Press Ctrl+C";
  setTimeout(() => { $("#c-copy").textContent = "Copy link"; }, 2000);
});

$("#c-invite-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const action = (event.submitter && event.submitter.value) || "invite";
  const target = $("#c-target").value.trim();
  if (action === "block" && !confirm(`Block ${target} from this space?`)) return;
  act(action, target);
});

// ---------------------------------------------------------------- requests over SSE

async function hostToken(id) {
  let token = tokenFor(id);
  if (!token && apiKey()) {
    const { data } = await api(`/api/spaces/${id}/stage/token`, { method: "POST", token: apiKey() });
    token = data.token;
    remember(id, { token });
  }
  return token;
}

async function connectEvents(id) {
  if (app.events || typeof EventSource === "undefined") return;
  let token;
  try { token = await hostToken(id); } catch (err) { say(status, err.message, "error"); return; }
  if (!token) { say(status, "Keep your API key to manage this space.", "error"); return; }
  try {
    const { data } = await api(`/api/spaces/${id}/stage`, { token });
    for (const r of data.requests) app.requests.set(r.id, { identity: r.id });
    renderRequests();
  } catch (err) { say(status, err.message, "error"); }
  const source = new EventSource(`/api/spaces/${id}/events?token=${encodeURIComponent(token)}`);
  source.onmessage = () => {};
  const kinds = ["speak_requested", "speak_request_cancelled", "speak_request_accepted", "speak_request_denied",
    "speaker_joined", "speaker_left", "speaker_muted", "speaker_unmuted", "speaker_removed", "speaker_invited",
    "invitation_declined", "identity_blocked", "cohost_added", "cohost_removed", "space_started", "space_ended"];
  for (const kind of kinds) {
    source.addEventListener(kind, (e) => {
      let d;
      try { d = JSON.parse(e.data); } catch { return; }
      if (kind === "speak_requested") app.requests.set(d.identity, d);
      else if (kind.startsWith("speak_request_") || kind === "identity_blocked") app.requests.delete(d.identity);
      renderRequests();
      log(d);
      refresh();
    });
  }
  app.events = source;
}

function renderRequests() {
  const items = [...app.requests.values()].map((r) => el("li", { class: "card", "data-id": r.identity },
    el("div", { class: "grow" }, el("strong", {}, nameOf(r.identity)), el("div", { class: "muted" }, r.identity)),
    button("Accept", () => act("accept", r.identity), `Accept ${nameOf(r.identity)}`, false, "primary"),
    button("Deny", () => act("deny", r.identity), `Deny ${nameOf(r.identity)}`)));
  $("#c-requests-list").replaceChildren(...items);
  show($("#c-requests-empty"), items.length === 0);
}

function nameOf(identity) {
  if (!identity) return "Someone";
  const [kind, rest] = String(identity).split(/:(.*)/s);
  return kind === "user" ? rest : `Listener ${String(rest || identity).slice(0, 4)}`;
}

function log(e) {
  const text = {
    speak_requested: `${nameOf(e.identity)} asked to speak`,
    speak_request_accepted: `${nameOf(e.identity)} is on stage`,
    speak_request_denied: `${nameOf(e.identity)} was declined`,
    speak_request_cancelled: `${nameOf(e.identity)} cancelled their request`,
    speaker_joined: `${nameOf(e.identity)} joined the stage`,
    speaker_left: `${nameOf(e.identity)} left the stage`,
    speaker_muted: `${nameOf(e.identity)} was muted`,
    speaker_unmuted: `${nameOf(e.identity)} unmuted`,
    speaker_removed: `${nameOf(e.identity)} was removed from the stage`,
    speaker_invited: `${nameOf(e.identity)} was invited to speak`,
    invitation_declined: `${nameOf(e.identity)} declined the invitation`,
    identity_blocked: `${nameOf(e.identity)} was blocked`,
    cohost_added: `${nameOf(e.identity)} is a co-host`,
    cohost_removed: `${nameOf(e.identity)} is no longer a co-host`,
    space_started: "The space went live",
    space_ended: "The space ended",
  }[e.kind] || e.kind;
  const list = $("#c-log");
  list.prepend(el("li", {}, `${new Date(e.at || Date.now()).toLocaleTimeString()} · ${text}`));
  while (list.childElementCount > 20) list.lastChild.remove();
}

// ---------------------------------------------------------------- the host's microphone

$("#c-mic").addEventListener("click", async () => {
  const id = app.current;
  const micStatus = $("#c-mic-status");
  $("#c-mic").disabled = true;
  try {
    const token = await hostToken(id);
    const publisher = new Publisher({
      whipUrl: `/api/spaces/${id}/whip`, token,
      onReturn: (stream) => { $("#c-return").srcObject = stream; $("#c-return").play().catch(() => {}); probeStream(stream); },
      onState: (s) => {
        if (s === "connected") say(micStatus, "Connected: you are on the stage.", "ok");
        if (s === "failed") { say(micStatus, "The connection to the stage failed.", "error"); stopMic(); }
      },
    });
    say(micStatus, "Asking for the microphone…");
    await publisher.openMic();
    say(micStatus, "Connecting to the stage…");
    await publisher.publish();
    app.publisher = publisher;
    show($("#c-mic"), false);
    show($("#c-mute"), true);
    show($("#c-unpublish"), true);
  } catch (err) {
    say(micStatus, err.message, "error");
    $("#c-mic").disabled = false;
  }
});

$("#c-mute").addEventListener("click", async () => {
  const unmute = $("#c-mute").textContent === "Unmute";
  try {
    await api(`/api/spaces/${app.current}/stage/${unmute ? "unmute" : "mute"}`, { method: "POST", token: credential(app.current) });
    if (app.publisher) app.publisher.setMicEnabled(unmute);
    $("#c-mute").textContent = unmute ? "Mute" : "Unmute";
  } catch (err) { say($("#c-mic-status"), err.message, "error"); }
});

async function stopMic() {
  const publisher = app.publisher;
  app.publisher = null;
  if (publisher) await publisher.leave();
  show($("#c-mic"), true);
  show($("#c-mute"), false);
  show($("#c-unpublish"), false);
  $("#c-mic").disabled = false;
  say($("#c-mic-status"), "Microphone stopped.");
}
$("#c-unpublish").addEventListener("click", stopMic);

// ---------------------------------------------------------------- ops panel (if the node has one)

/** The space's watch and gate figures for its host (the host token or API key). */
async function watchOps() {
  clearTimeout(app.opsTimer);
  if (!app.current) return;
  try {
    const token = await hostToken(app.current);
    if (!token) { show($("#ops"), false); return; }
    const { data } = await api(`/api/spaces/${app.current}/watch`, { token });
    const last = (data.timeline || []).slice(-1)[0] || {};
    const joins = last.joins || {};
    const figures = [
      ["Verdict", data.headline || "normal"],
      ["Admitting", data.admission && data.admission.rate_per_second != null ? `${data.admission.rate_per_second}/s` : "—"],
      ["Capacity", data.admission && data.admission.capacity != null ? String(data.admission.capacity) : "no cap"],
      ["Joins admitted (10 s)", String(joins.admitted ?? 0)],
      ["Joins queued (10 s)", String(joins.queued ?? 0)],
      ["Joins refused (10 s)", String(joins.refused ?? 0)],
    ];
    $("#ops-figures").replaceChildren(...figures.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
    const evidence = (data.evidence || []).slice(0, 3);
    $("#ops-evidence").replaceChildren(...evidence.map((line) => el("li", {}, line)));
    show($("#ops"), true);
  } catch {
    show($("#ops"), false);
  }
  app.opsTimer = setTimeout(watchOps, 5000);
}

// ---------------------------------------------------------------- start

listMine();
const wanted = new URLSearchParams(location.search).get("space");
if (wanted) select(wanted);
