// What a viewer experienced: glass-to-glass delay, frames received / decoded / dropped / lost,
// freezes. Pure bookkeeping over times the viewer page hands in; no DOM, no decoding.
//
// A freeze is WebRTC's (W3C webrtc-stats, RTCInboundRtpStreamStats.freezeCount): an interval
// between two displayed frames longer than max(3 × the mean interval, mean interval + 150 ms),
// the mean taken over the last FREEZE_MEAN_FRAMES intervals. The freeze ratio is the time spent
// in freezes over the time since the first picture.

const FREEZE_MEAN_FRAMES = 30;     // one second at 30 frames/s: the mean follows rate changes
const FREEZE_SLACK_MS = 150;       // webrtc-stats' additive term
const KEEP_DELAYS = 20000;         // delays kept for percentiles: over 10 minutes at 30 frames/s

export function percentile(values, p) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

export class Qoe {
  constructor() {
    this.received = 0; this.decoded = 0; this.dropped = 0; this.lost = 0;
    this.keyRequests = 0; this.bytes = 0;
    this.freezes = 0; this.freezeMs = 0;
    this.firstPictureMs = null; this.lastDisplayMs = null;
    this.intervals = [];
    this.delays = [];              // {sequence, g2gMs, encodeMs, transitMs, decodeMs}
  }

  chunk(bytes) { this.received++; this.bytes += bytes; }

  /** A frame drawn at `displayMs` (gateway time), captured at `captureMs`, its chunk in this
   * page from `arrivedMs` (so arrival − capture − encode is the way through the overlay, and
   * display − arrival the decoder's and the page's time). */
  displayed(sequence, captureMs, encodeMs, arrivedMs, displayMs) {
    this.decoded++;
    if (this.firstPictureMs === null) this.firstPictureMs = displayMs;
    if (this.lastDisplayMs !== null) {
      const gap = displayMs - this.lastDisplayMs;
      if (this.intervals.length >= 3) {
        const mean = this.intervals.reduce((a, b) => a + b, 0) / this.intervals.length;
        if (gap > Math.max(3 * mean, mean + FREEZE_SLACK_MS)) { this.freezes++; this.freezeMs += gap; }
      }
      this.intervals.push(gap);
      if (this.intervals.length > FREEZE_MEAN_FRAMES) this.intervals.shift();
    }
    this.lastDisplayMs = displayMs;
    this.delays.push({ sequence, g2gMs: displayMs - captureMs, encodeMs,
      transitMs: arrivedMs - captureMs - encodeMs, decodeMs: displayMs - arrivedMs });
    if (this.delays.length > KEEP_DELAYS) this.delays.splice(0, this.delays.length - KEEP_DELAYS);
  }

  freezeRatio(nowMs) {
    if (this.firstPictureMs === null) return 0;
    return this.freezeMs / Math.max(1, nowMs - this.firstPictureMs);
  }

  summary(nowMs, recent = 300) {
    const last = this.delays.slice(-recent).map((d) => d.g2gMs);
    return {
      received: this.received, decoded: this.decoded, dropped: this.dropped, lost: this.lost,
      keyRequests: this.keyRequests, freezes: this.freezes, freezeMs: this.freezeMs, freezeRatio: this.freezeRatio(nowMs),
      g2gMs: last.length ? last[last.length - 1] : null,
      g2gP50Ms: percentile(last, 0.5), g2gP95Ms: percentile(last, 0.95),
    };
  }
}
