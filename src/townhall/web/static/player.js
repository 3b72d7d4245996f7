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

/** Playlist requests. Right after a space starts its live playlist has no segment yet
 * (hls.js reports levelEmptyError): ask again soon and for a while, never with long gaps. */
const PLAYLIST_POLICY = {
  default: {
    maxTimeToFirstByteMs: 10000,
    maxLoadTimeMs: 20000,
    timeoutRetry: { maxNumRetry: 4, retryDelayMs: 0, maxRetryDelayMs: 0 },
    errorRetry: { maxNumRetry: 12, retryDelayMs: 500, maxRetryDelayMs: 2000 },
  },
};
const MAX_RELOADS = 8; // after a fatal network error, start over this many times (backing off)

export class Player {
  /** @param {HTMLMediaElement} media */
  constructor(media, { onError, onStatus } = {}) {
    this.media = media;
    this.hls = null;
    this.url = null;
    this.options = null;
    this.onError = onError || (() => {});
    this.onStatus = onStatus || (() => {}); // "Reconnecting…", then "" once audio flows again
    this.probe = null;
    this.wanted = false;  // playing was asked for (so a reload resumes it)
    this.reloads = 0;
    this.reloadTimer = null;
  }

  /** Attach a playlist. `live` turns on hls.js low-latency mode. */
  async load(url, { live = true } = {}, { reload = false } = {}) {
    clearTimeout(this.reloadTimer);
    if (!reload) this.reloads = 0;
    this.destroyHls();
    this.url = url;
    this.options = { live };
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
      manifestLoadPolicy: PLAYLIST_POLICY,
      playlistLoadPolicy: PLAYLIST_POLICY,
    });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (this.hls !== hls) return;
      if (!data.fatal && data.details === Hls.ErrorDetails.LEVEL_EMPTY_ERROR && live) {
        console.info("hls.js: the live playlist has no segment yet; asking again");
        return; // hls.js retries by itself (PLAYLIST_POLICY)
      }
      console.warn(`hls.js ${data.fatal ? "fatal " : ""}${data.type}: ${data.details}`, data.reason || data.error || "");
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        this.scheduleReload(data.details);
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
    hls.on(Hls.Events.FRAG_BUFFERED, () => {
      if (this.hls !== hls || !this.reloads) return;
      this.reloads = 0;
      this.onStatus("");
    });
    hls.attachMedia(this.media);
    hls.loadSource(url);
    this.hls = hls;
    await attached;
  }

  /** A fatal network error stopped hls.js: start over from the playlist, backing off, and
   * resume playing if it was playing. Tells the user, and gives up with an error at last. */
  scheduleReload(details) {
    if (this.reloads >= MAX_RELOADS) {
      this.onStatus("");
      this.onError(`The audio stream cannot be loaded (${details}). Reload the page to try again.`);
      return;
    }
    this.reloads += 1;
    const delay = Math.min(8000, 1000 * 2 ** (this.reloads - 1));
    const { url, options } = this;
    const resume = this.wanted;
    this.onStatus("Reconnecting to the audio…");
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(async () => {
      if (this.url !== url) return; // stopped or replaced meanwhile
      await this.load(url, options, { reload: true });
      if (resume) this.play().catch((err) => this.onError(err.message));
    }, delay);
  }

  /** Start playing; resolves false when the browser wants a user gesture first. */
  async play() {
    this.wanted = true;
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

  pause() { this.wanted = false; this.media.pause(); }

  destroyHls() {
    if (this.hls) { this.hls.destroy(); this.hls = null; }
  }

  stop() {
    clearTimeout(this.reloadTimer);
    this.wanted = false;
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
