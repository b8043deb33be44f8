// Formatting of times, sizes, codes and durations, shared by the views.

const pad = (n, width = 2) => String(n).padStart(width, '0');

/** `14:03:07.123` (local time) from ms since the epoch. */
export function clockTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** `2026-05-01 14:03:07` (local time). */
export function dateTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `1 d 2 h 3 min 4 s` for a number of seconds (the two largest units). */
export function duration(seconds) {
  let s = Math.max(0, Math.round(seconds));
  if (s === 0) return '0 s';
  const parts = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['min', 60], ['s', 1]]) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)} ${unit}`);
      s %= size;
    }
  }
  return parts.slice(0, 2).join(' ');
}

/** A delay given in ms: `250 ms`, `1.1 s`, then as [`duration`] (`4 min 10 s`). */
export function delay(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1).replace(/\.0$/, '')} s`;
  return duration(ms / 1000);
}

/** `2.4 KiB` */
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** `ok`, `temp` or `perm` for a reply code: the colour class of 2xx/3xx, 4xx and 5xx. */
export function codeClass(code) {
  if (code >= 500) return 'perm';
  if (code >= 400) return 'temp';
  return 'ok';
}

/** A reply as it was on the wire: `550-5.1.1 line` for every line but the last (`550 5.1.1`). */
export function wireLines(code, status, text) {
  const lines = String(text ?? '').split('\n');
  return lines.map((line, i) => {
    const sep = i < lines.length - 1 ? '-' : ' ';
    return `${code}${sep}${status ? `${status} ` : ''}${line}`;
  });
}

/** The IP of `ip:port` or `[v6]:port`. */
export function hostOf(peer) {
  if (!peer) return '';
  if (peer.startsWith('[')) return peer.slice(1, peer.indexOf(']'));
  const colon = peer.lastIndexOf(':');
  return colon > 0 ? peer.slice(0, colon) : peer;
}

/** `12,345` */
export function count(n) {
  return Number(n).toLocaleString('en-US');
}

/** Seconds in a duration like `90`, `45s`, `90m`, `2h`, `3d` (or null when it is not one). */
export function parseDuration(text) {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$/i.exec(text);
  if (!match) return null;
  const unit = (match[2] || 's').toLowerCase();
  const size = { s: 1, sec: 1, m: 60, min: 60, h: 3600, d: 86400 }[unit];
  return Number(match[1]) * size;
}
