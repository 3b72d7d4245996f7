// HLS playback (native where the browser has it, else hls.js in low-latency mode) and a
// Web Audio probe: window.townhallProbe() reports the dominant frequency being played.

let HlsClass = null;

async function loadHls() {
  if (!HlsClass) HlsClass = (await import("/static/vendor/hls.min.mjs")).default;
  return HlsClass;
}

/** Native HLS only where there is no Media Source Extensions (older iPhones): some desktop
 * browsers now answer "maybe" to canPlayType yet cannot play LL-HLS fMP4, so hls.js goes first. */
export function nativeHls(media) {
  const mse = "MediaSource" in window || "ManagedMediaSource" in window;
  return !mse && Boolean(media.canPlayType("application/vnd.apple.mpegurl"));
}

export class Player {
  /** @param {HTMLMediaElement} media */
  constructor(media, { onError } = {}) {
    this.media = media;
    this.hls = null;
    this.url = null;
    this.onError = onError || (() => {});
    this.probe = null;
  }

  /** Attach a playlist. `live` turns on hls.js low-latency mode. */
  async load(url, { live = true } = {}) {
    this.destroyHls();
    this.url = url;
    if (nativeHls(this.media)) {
      this.media.src = url;
      return;
    }
    let Hls;
    try {
      Hls = await loadHls();
    } catch {
      this.onError("The audio player could not be loaded (static/vendor/hls.min.mjs is missing).");
      return;
    }
    if (!Hls.isSupported()) {
      this.onError("This browser cannot play HLS audio.");
      return;
    }
    const hls = new Hls({
      lowLatencyMode: live,
      enableWorker: false, // no blob: worker, so the page keeps a strict CSP
      liveSyncDurationCount: live ? 2 : 3,
      backBufferLength: live ? 30 : 90,
      manifestLoadingMaxRetry: 6,
      levelLoadingMaxRetry: 6,
    });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      console.warn(`hls.js ${data.fatal ? "fatal " : ""}${data.type}: ${data.details}`, data.reason || data.error || "");
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        setTimeout(() => this.hls === hls && hls.startLoad(), 1000);
      } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else {
        this.onError(`Playback failed (${data.details}).`);
      }
    });
    const attached = new Promise((resolve) => {
      hls.once(Hls.Events.MEDIA_ATTACHED, resolve);
      setTimeout(resolve, 5000);
    });
    hls.attachMedia(this.media);
    hls.loadSource(url);
    this.hls = hls;
    await attached;
  }

  /** Start playing; resolves false when the browser wants a user gesture first. */
  async play() {
    this.ensureProbe();
    try {
      if (this.probe && this.probe.context.state === "suspended") await this.probe.context.resume();
      await this.media.play();
      return true;
    } catch (err) {
      if (err && err.name === "NotAllowedError") return false;
      if (err && err.name === "AbortError") return !this.media.paused;
      if (err && err.name === "NotSupportedError" && this.url) {
        // the source is still being set up: try once more when it can play
        await new Promise((resolve) => {
          this.media.addEventListener("canplay", resolve, { once: true });
          setTimeout(resolve, 8000);
        });
        await this.media.play();
        return true;
      }
      throw err;
    }
  }

  pause() { this.media.pause(); }

  destroyHls() {
    if (this.hls) { this.hls.destroy(); this.hls = null; }
  }

  stop() {
    this.destroyHls();
    this.media.pause();
    this.media.removeAttribute("src");
    this.media.load();
    this.url = null;
  }

  ensureProbe() {
    if (!this.probe) {
      this.probe = installProbe(this.media);
    }
    return this.probe;
  }
}

/** Route a media element through an AnalyserNode (still audible) and expose the probe. */
export function installProbe(media) {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  const context = new Context();
  const source = context.createMediaElementSource(media);
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0.2;
  source.connect(analyser);
  analyser.connect(context.destination);
  const probe = { context, analyser, measure: (f) => measure(analyser, context.sampleRate, f) };
  window.townhallProbe = (freqs) => probe.measure(freqs);
  return probe;
}

/** Probe a MediaStream (the WebRTC return) the same way, without playing it twice. */
export function probeStream(stream) {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  const context = new Context();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  context.createMediaStreamSource(stream).connect(analyser);
  const probe = { context, analyser, measure: (f) => measure(analyser, context.sampleRate, f) };
  window.townhallReturnProbe = (freqs) => probe.measure(freqs);
  return probe;
}

/** The loudest frequency (Hz) and its level (dB) of what the analyser hears now, plus the
 * level near each of `freqs` (the strongest bin within ±2 bins). */
export function measure(analyser, sampleRate, freqs = []) {
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  const time = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(time);
  let sum = 0;
  for (const v of time) sum += v * v;
  const rms = Math.sqrt(sum / time.length);
  const binHz = sampleRate / analyser.fftSize;
  const levels = {};
  for (const f of freqs) {
    const i = Math.round(f / binHz);
    let db = -Infinity;
    for (let j = Math.max(0, i - 2); j <= Math.min(bins.length - 1, i + 2); j++) db = Math.max(db, bins[j]);
    levels[f] = Number.isFinite(db) ? db : -200;
  }
  return {
    levels,
    playing: !analyser.context || analyser.context.state === "running",
    frequency: best * binHz,
    peak_db: Number.isFinite(bins[best]) ? bins[best] : -200,
    rms_db: rms > 0 ? 20 * Math.log10(rms) : -200,
  };
}
