// WHIP publishing straight from the browser (RFC 9725): one POST of the SDP offer, the
// sendrecv answer carries the stage's N-1 return, DELETE of the Location leaves.

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
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
    this.pc = pc;
    const [track] = this.stream.getAudioTracks();
    pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] });
    pc.ontrack = (event) => this.onReturn(event.streams[0] || new MediaStream([event.track]));
    pc.onconnectionstatechange = () => this.onState(pc.connectionState);
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc, 3000);
    const response = await fetch(this.whipUrl, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${this.token}` },
      body: pc.localDescription.sdp,
    });
    const text = await response.text();
    if (response.status !== 201) {
      this.close();
      let detail = `${response.status} ${response.statusText}`;
      try { detail = JSON.parse(text).detail || detail; } catch { /* not JSON */ }
      throw new ApiError(response.status, detail, null);
    }
    const location = response.headers.get("Location");
    this.location = location ? new URL(location, new URL(this.whipUrl, window.location.href)).href : null;
    await pc.setRemoteDescription({ type: "answer", sdp: text });
  }

  /** Mute locally (no audio leaves the browser) in addition to the stage's mute state. */
  setMicEnabled(enabled) {
    if (this.stream) for (const t of this.stream.getAudioTracks()) t.enabled = enabled;
  }

  /** Leave: DELETE the session, close the connection and release the microphone. */
  async leave() {
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

function iceGatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}
