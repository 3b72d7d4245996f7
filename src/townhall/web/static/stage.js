// Renders the stage (who is on it, who is speaking, levels) from a state document.
import { el, initials } from "./common.js";

const ROLE = { host: "Host", cohost: "Co-host", speaker: "Speaker" };

/** dBFS → 0..1 for the level meter (-60 dB is silence). */
export function levelFraction(db) {
  if (db === null || db === undefined || !Number.isFinite(db)) return 0;
  return Math.max(0, Math.min(1, (db + 60) / 60));
}

export function renderStage(list, speakers, me) {
  list.replaceChildren(...speakers.map((s) => {
    const parts = [s.name, ROLE[s.role] || s.role];
    if (s.muted) parts.push("muted");
    else if (s.speaking) parts.push("speaking");
    if (s.id === me) parts.push("you");
    return el("li", { class: s.speaking && !s.muted ? "speaking" : "", "data-id": s.id,
      "aria-label": parts.join(", ") },
      el("div", { class: "avatar", "aria-hidden": "true" }, initials(s.name)),
      el("span", { class: "name" }, s.id === me ? `${s.name} (you)` : s.name),
      el("span", { class: "role" }, `${ROLE[s.role] || s.role}${s.muted ? " · muted" : ""}`),
      el("meter", { min: "0", max: "1", value: String(levelFraction(s.level_db)),
        "aria-hidden": "true" }));
  }));
}
