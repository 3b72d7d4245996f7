// Home: live spaces with listener counts, upcoming spaces with countdowns.
import { $, api, countdownText, el, localTime, plural, say, show } from "./common.js";

const counts = new Map(); // space id -> listeners, from each space's state document

/** "✓ Verified" after a verified host's name. */
function verifiedBadge(space) {
  const verified = space.trust ? space.trust.verified_host : space.host.verified;
  return verified ? el("span", { class: "verified-badge", title: "Identity checked by townhall" },
    el("span", { "aria-hidden": "true" }, "✓"), " Verified") : "";
}

/** A warning line for a flagged space (impersonation of a verified host, scam patterns). */
function trustNote(space) {
  const flags = (space.trust && space.trust.flags) || [];
  const lines = [...new Set(flags.filter((f) => f.kind === "impersonation").map((f) => f.target))]
    .map((name) => `Possible impersonation of verified host ${name}`);
  if (flags.some((f) => f.kind === "scam")) lines.push("This space matches known scam patterns");
  return lines.length ? el("div", { class: "trust-note", role: "note" }, `⚠ ${lines.join(". ")}`) : "";
}

function liveItem(space) {
  const n = counts.get(space.id);
  return el("li", { class: "card" },
    el("span", { class: "badge live" }, "Live"),
    el("div", { class: "grow" },
      el("a", { class: "title", href: `/s/${space.id}` }, space.title),
      el("div", { class: "muted" }, `Hosted by ${space.host.name}`, verifiedBadge(space)),
      trustNote(space)),
    el("span", { class: "count", "data-listeners": space.id },
      n === undefined ? "" : plural(n, "listener", "listeners")));
}

function upcomingItem(space) {
  const left = (new Date(space.scheduled_start) - Date.now()) / 1000;
  return el("li", { class: "card" },
    el("span", { class: "badge scheduled" }, "Soon"),
    el("div", { class: "grow" },
      el("a", { class: "title", href: `/s/${space.id}` }, space.title),
      el("div", { class: "muted" }, space.host.name, verifiedBadge(space), ` · ${localTime(space.scheduled_start)}`),
      trustNote(space)),
    el("span", { class: "count", role: "timer", "aria-label": `starts in ${countdownText(left)}`,
      "data-start": space.scheduled_start }, left > 0 ? `in ${countdownText(left)}` : "starting…"));
}

let live = [];
let upcoming = [];

function render() {
  $("#live").replaceChildren(...live.map(liveItem));
  show($("#live-empty"), live.length === 0);
  $("#upcoming").replaceChildren(...upcoming.map(upcomingItem));
  show($("#upcoming-empty"), upcoming.length === 0);
}

function tick() {
  for (const node of document.querySelectorAll("[data-start]")) {
    const left = (new Date(node.dataset.start) - Date.now()) / 1000;
    node.textContent = left > 0 ? `in ${countdownText(left)}` : "starting…";
    node.setAttribute("aria-label", `starts in ${countdownText(left)}`);
  }
}

async function refresh() {
  try {
    const [l, u] = await Promise.all([
      api("/api/spaces?status=live"), api("/api/spaces?status=upcoming"),
    ]);
    live = l.data.spaces;
    upcoming = u.data.spaces.sort((a, b) => new Date(a.scheduled_start) - new Date(b.scheduled_start));
    await Promise.all(live.slice(0, 50).map(async (s) => {
      try { counts.set(s.id, (await api(`/api/spaces/${s.id}/state`)).data.listeners.current); } catch { /* keep old */ }
    }));
    say($("#status"), "");
    render();
  } catch (err) {
    say($("#status"), err.message, "error");
  }
}

refresh();
setInterval(refresh, 10000);
setInterval(tick, 1000);
