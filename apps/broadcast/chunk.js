// The broadcast's messages, inside stemflow.js messages. Owns their layouts and the topic names;
// capture, encoding and display are the pages'.
//
//   live/<channel>          one encoded video chunk per message, live and delay-sensitive:
//     u8 version (1) | u8 flags (0x01 key frame) | u16 width | u16 height | u32 sequence
//     | f64 capture_ms (broadcaster's gateway time) | f32 encode_ms | u32 target_kbps
//     | u8 codec_len | codec (ASCII, a WebCodecs codec string) | the chunk's bytes
//   live/<channel>/control  small JSON messages back to the broadcaster (key-frame requests,
//                           viewer reports), reliable and delay-sensitive.
//
// `sequence` counts encoded chunks, so a gap is a chunk lost on the way, never a frame the
// encoder skipped. Times are gateway time (stemflow.js `now()`), so a viewer's display time
// minus the capture time is the glass-to-glass delay across datacenters with NTP clocks.

const VERSION = 1;
const HEAD_BYTES = 27;
const KEY = 0x01;
const enc = new TextEncoder();
const dec = new TextDecoder();

export function videoTopic(channel) { return `live/${channel}`; }
export function controlTopic(channel) { return `live/${channel}/control`; }

export function encodeChunk({ key, width, height, sequence, captureMs, encodeMs, targetKbps, codec, data }) {
  const c = enc.encode(codec);
  const out = new Uint8Array(HEAD_BYTES + c.length + data.byteLength);
  const v = new DataView(out.buffer);
  out[0] = VERSION; out[1] = key ? KEY : 0;
  v.setUint16(2, width); v.setUint16(4, height); v.setUint32(6, sequence);
  v.setFloat64(10, captureMs); v.setFloat32(18, encodeMs); v.setUint32(22, targetKbps);
  out[26] = c.length; out.set(c, HEAD_BYTES);
  out.set(data, HEAD_BYTES + c.length);
  return out;
}

/** The chunk in `bytes`, or null if they are not a version-1 chunk. */
export function decodeChunk(bytes) {
  if (bytes.length < HEAD_BYTES || bytes[0] !== VERSION) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const codecEnd = HEAD_BYTES + bytes[26];
  if (bytes.length < codecEnd) return null;
  return {
    key: (bytes[1] & KEY) !== 0, width: v.getUint16(2), height: v.getUint16(4),
    sequence: v.getUint32(6), captureMs: v.getFloat64(10), encodeMs: v.getFloat32(18),
    targetKbps: v.getUint32(22), codec: dec.decode(bytes.subarray(HEAD_BYTES, codecEnd)),
    data: bytes.subarray(codecEnd),
  };
}

export function encodeControl(message) { return enc.encode(JSON.stringify(message)); }

export function decodeControl(bytes) {
  try { return JSON.parse(dec.decode(bytes)); } catch (_) { return null; }
}
