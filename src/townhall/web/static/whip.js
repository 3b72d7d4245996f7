// WHIP publishing straight from the browser (RFC 9725): one POST of the SDP offer, the
// sendrecv answer carries the stage's N-1 return, DELETE of the Location leaves.
//
// Reconnection: when the connection is failed or disconnected for more than 2 s, or no RTP
// came from the stage for 2 s (it sends its return continuously; a dead media node is noticed
// long before ICE gives up), the publisher re-POSTs a fresh offer from a new
// RTCPeerConnection to the same WHIP URL, with exponential backoff (any node forwards it to
// the space's current origin). onState gets "reconnecting", then "connected" again; "failed"
// only when it gives up (a 4xx answer such as removed or blocked, or 60 s without success).

const RECONNECT_AFTER_MS = 2000;
const RECONNECT_FOR_MS = 60000;

import { ApiError } from "./common.js";

export const MIC_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  video: false,
};

export class Publisher {
  constructor({ whipUrl, token, onReturn, onState }) {
    this.whipUrl = whipUrl;
    this.token = token;
    this.onReturn = onReturn || (() => {});
    this.onState = onState || (() => {});
    this.pc = null;
    this.stream = null;
    this.location = null;
    this.leaving = false;
    this.reconnecting = false;
    this.reconnects = 0;
    this.watchdog = null;
  }

  /** Ask for the microphone (the permission prompt). */
  async openMic() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("This browser cannot use a microphone here (it needs HTTPS or localhost).");
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
    } catch (err) {
      if (err.name === "NotAllowedError") throw new Error("Microphone permission was denied. Allow it in the browser's site settings and try again.");
      if (err.name === "NotFoundError") throw new Error("No microphone was found.");
      throw new Error(`The microphone could not be opened (${err.name}).`);
    }
    return this.stream;
  }

  async publish() {
    if (!this.stream) await this.openMic();
    await this.offer();
    this.startWatchdog();
  }

  async offer() {
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
    this.pc = pc;
    const [track] = this.stream.getAudioTracks();
    pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] });
    pc.ontrack = (event) => this.onReturn(event.streams[0] || new MediaStream([event.track]));
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return; // an abandoned connection
      if (pc.connectionState === "failed" || pc.connectionState === "disconnected") {
        if (!this.reconnecting) this.onState("reconnecting");
        return; // the watchdog decides
      }
      this.onState(pc.connectionState);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc, 3000);
    const response = await fetch(this.whipUrl, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${this.token}` },
      body: pc.localDescription.sdp,
    });
    const text = await response.text();
    if (response.status !== 201) {
      if (!this.reconnecting) this.close();
      let detail = `${response.status} ${response.statusText}`;
      try { detail = JSON.parse(text).detail || detail; } catch { /* not JSON */ }
      throw new ApiError(response.status, detail, null);
    }
    const location = response.headers.get("Location");
    this.location = location ? new URL(location, new URL(this.whipUrl, window.location.href)).href : null;
    await pc.setRemoteDescription({ type: "answer", sdp: text });
  }

  /** Every 500 ms: a connection that is failed/disconnected, or receives no RTP, for more
   * than 2 s is replaced. */
  startWatchdog() {
    let packets = -1;
    let quietSince = Date.now();
    this.watchdog = setInterval(async () => {
      if (this.reconnecting || this.leaving || !this.pc) return;
      const state = this.pc.connectionState;
      let count = packets;
      try {
        const stats = await this.pc.getStats();
        count = 0;
        stats.forEach((s) => { if (s.type === "inbound-rtp") count += s.packetsReceived || 0; });
      } catch { /* closed under us */ }
      const healthy = state === "connected" || state === "connecting" || state === "new";
      if (count !== packets && healthy) { packets = count; quietSince = Date.now(); }
      if (Date.now() - quietSince < RECONNECT_AFTER_MS) return;
      const ok = await this.reconnect();
      packets = -1;
      quietSince = Date.now();
      if (!ok) { this.stopWatchdog(); this.onState("failed"); }
    }, 500);
  }

  stopWatchdog() {
    if (this.watchdog) { clearInterval(this.watchdog); this.watchdog = null; }
  }

  /** New RTCPeerConnection + POST until it connects; false when giving up. */
  async reconnect() {
    this.reconnecting = true;
    this.onState("reconnecting");
    const deadline = Date.now() + RECONNECT_FOR_MS;
    let delay = 250;
    try {
      while (!this.leaving && Date.now() < deadline) {
        if (this.pc) { this.pc.close(); this.pc = null; }
        this.location = null;
        try {
          await this.offer();
          if (await connected(this.pc, 10000)) {
            this.reconnects += 1;
            this.onState("connected");
            return true;
          }
        } catch (err) {
          const status = err instanceof ApiError ? err.status : 0;
          if (status >= 400 && status < 500 && status !== 408 && status !== 429) return false;
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 4000);
      }
      return false;
    } finally {
      this.reconnecting = false;
    }
  }

  /** Mute locally (no audio leaves the browser) in addition to the stage's mute state. */
  setMicEnabled(enabled) {
    if (this.stream) for (const t of this.stream.getAudioTracks()) t.enabled = enabled;
  }

  /** Leave: DELETE the session, close the connection and release the microphone. */
  async leave() {
    this.leaving = true;
    this.stopWatchdog();
    const location = this.location;
    this.location = null;
    if (location) {
      try {
        await fetch(location, { method: "DELETE", headers: { Authorization: `Bearer ${this.token}` } });
      } catch { /* the server forgets the session when the connection drops anyway */ }
    }
    this.close();
  }

  close() {
    this.leaving = true;
    this.stopWatchdog();
    if (this.pc) { this.pc.close(); this.pc = null; }
    if (this.stream) { for (const t of this.stream.getTracks()) t.stop(); this.stream = null; }
  }

  /** The address pair ICE chose (for diagnostics and tests). */
  async selectedPair() {
    if (!this.pc) return null;
    const stats = await this.pc.getStats();
    let pair = null;
    stats.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    return { local: local && local.address, remote: remote && remote.address };
  }
}

function connected(pc, timeoutMs) {
  if (pc.connectionState === "connected") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok) => { clearTimeout(timer); pc.removeEventListener("connectionstatechange", check); resolve(ok); };
    const check = () => {
      if (pc.connectionState === "connected") done(true);
      else if (pc.connectionState === "failed" || pc.connectionState === "closed") done(false);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    pc.addEventListener("connectionstatechange", check);
  });
}

function iceGatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}
