// Clip creation: POST /api/spaces/{id}/clips with {"seconds"} or {"start","end"} → {"url"}.
import { ApiError, api, el, say } from "./common.js";

export async function createClip(spaceId, body, token, status) {
  say(status, "Making the clip…");
  try {
    const { data } = await api(`/api/spaces/${spaceId}/clips`, { method: "POST", body, token });
    status.replaceChildren("Your clip is ready: ", el("a", { href: data.url, download: "" }, "download the clip"));
    status.className = "status ok";
    return data.url;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
      say(status, "Clips are not available on this server yet.", "error");
    } else {
      say(status, err.message, "error");
    }
    return null;
  }
}
