// qchar web console: one chardev in an xterm.js terminal.
//
// The websocket /ws/ID carries the chardev's output as binary frames
// (history first, then live) and notices as JSON text frames: "hello"
// (the chardev and this page's mode), "backend" (a chardev-change: the
// terminal goes on, nothing is reset), "skipped" (this page fell behind
// the chardev's history by that many bytes), "closed" (the chardev went
// away). Keystrokes and pastes go back as binary frames (UTF-8), unless
// the page is read-only (?ro=1), which the server enforces too.
'use strict';

const params = new URLSearchParams(location.search);
const id = decodeURIComponent(location.pathname.replace(/^\/console\//, ''));
const readOnly = params.get('ro') === '1';

const title = document.getElementById('title');
const backend = document.getElementById('backend');
const mode = document.getElementById('mode');
const status = document.getElementById('status');
title.textContent = id;
document.title = `${id} - qchar console`;
mode.textContent = readOnly ? 'view only' : 'read-write';
mode.className = readOnly ? 'mode ro' : 'mode rw';

const term = new Terminal({
  scrollback: Number(params.get('scrollback')) || 10000,
  cursorBlink: !readOnly,
  disableStdin: readOnly,
  fontFamily: 'monospace',
  fontSize: 14,
  theme: { background: '#101418' },
});
const fit = new FitAddon.FitAddon();
term.loadAddon(fit);
term.open(document.getElementById('terminal'));
fit.fit();
window.addEventListener('resize', () => fit.fit());

// What tests and benchmarks read: bytes received, bytes the terminal has
// processed (after its write callback), and the notices.
const state = {
  term, fit, readOnly, received: 0, written: 0, skipped: 0, notices: [], open: false,
  sent: 0,
};
window.qchar = state;

function setStatus(text, cls) {
  status.textContent = text;
  status.className = `status ${cls}`;
}

const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
const ws = new WebSocket(
  `${scheme}//${location.host}/ws/${encodeURIComponent(id)}${readOnly ? '?ro=1' : ''}`);
ws.binaryType = 'arraybuffer';
state.ws = ws;

function notice(msg) {
  state.notices.push(msg);
  switch (msg.type) {
    case 'hello':
    case 'backend':
      backend.textContent = msg.filename;
      break;
    case 'skipped':
      state.skipped += msg.bytes;
      term.write(`\r\n\x1b[7m[qchar: ${msg.bytes} bytes skipped]\x1b[0m\r\n`);
      break;
    case 'closed':
      setStatus(`chardev closed: ${msg.reason}`, 'down');
      break;
    default:
      break;
  }
}

ws.onopen = () => {
  state.open = true;
  setStatus('live', 'live');
};
ws.onmessage = (ev) => {
  if (typeof ev.data === 'string') {
    notice(JSON.parse(ev.data));
    return;
  }
  const data = new Uint8Array(ev.data);
  state.received += data.length;
  term.write(data, () => { state.written += data.length; });
};
ws.onclose = (ev) => {
  state.open = false;
  setStatus(`disconnected (${ev.code}${ev.reason ? ': ' + ev.reason : ''}); reload to reconnect`,
    'down');
};

if (!readOnly) {
  const enc = new TextEncoder();
  const send = (bytes) => {
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(bytes);
      state.sent += bytes.length;
    }
  };
  // Typed keys and pastes (xterm.js turns both into onData, with bracketed
  // paste when the guest asked for it).
  term.onData((s) => send(enc.encode(s)));
  // Raw bytes some key sequences produce (not UTF-8 text).
  term.onBinary((s) => send(Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff)));
}
term.focus();
