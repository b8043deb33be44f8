// The page's start: asks for the API token when the server wants one, opens the live streams
// (events and counters), and shows the view the address names (#/sessions by default).

import * as api from './api.js';
import { openStream } from './sse.js';
import { h, replace } from './dom.js';
import { count } from './format.js';
import { SessionsModel } from './sessions-model.js';
import { VIEWS } from './views/registry.js';

/** Counter samples kept for the rate chart: one a second, the last five minutes. */
const COUNTER_SAMPLES = 300;

/** What every view works with. */
class Context {
  constructor() {
    this.api = api;
    this.model = new SessionsModel();
    this.info = null;
    this.listeners = new Map();
    this.rates = [];
    this.lastCounters = null;
    this.clockBase = null;
    this.recordsEvents = true;
  }

  /** Calls `fn` on each `name` signal ('events', 'rates', 'clock'); returns the way to stop. */
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.listeners.get(name)?.delete(fn);
  }

  emit(name, value) {
    for (const fn of this.listeners.get(name) ?? []) fn(value);
  }

  /** The server's time now, estimated from its clock's last answer (ms since the epoch). */
  serverNow() {
    if (!this.clockBase) return Date.now();
    return this.clockBase.now_ms + (performance.now() - this.clockBase.read_at);
  }

  /** Reads the server's clock again (after it was moved), and tells the views. */
  async refreshClock() {
    const clock = await api.get('/api/clock');
    this.clockBase = { ...clock, read_at: performance.now() };
    this.emit('clock', clock);
    return clock;
  }

  /** A counter sample: turns totals into rates per second. */
  addCounters(sample) {
    const now = performance.now();
    const last = this.lastCounters;
    this.lastCounters = { ...sample, read_at: now };
    if (!last) return;
    const seconds = Math.max(0.001, (now - last.read_at) / 1000);
    const rate = (key) => Math.max(0, (sample[key] - last[key]) / seconds);
    this.rates.push({
      t: Date.now() / 1000,
      accepted: rate('messages'),
      refused: rate('replies_4xx') + rate('replies_5xx'),
      limited: rate('limit_refusals'),
      open: sample.sessions_open,
    });
    if (this.rates.length > COUNTER_SAMPLES) this.rates.shift();
    this.emit('rates', this.rates);
  }

  navigate(hash) {
    if (location.hash !== hash) location.hash = hash;
  }
}

const ctx = new Context();
let streams = [];
let current = null;
let routing = false;

function banner(text, action) {
  const el = document.getElementById('banner');
  if (!text) {
    el.hidden = true;
    return;
  }
  replace(el, h('span', { text }), action ?? null);
  el.hidden = false;
}

function liveState(state, detail) {
  const el = document.getElementById('live');
  el.dataset.state = state;
  el.textContent = detail ?? state;
}

function openStreams() {
  streams.forEach((s) => s.close());
  streams = [];
  if (ctx.recordsEvents) {
    let skipped = 0;
    // `brief`: what the list needs, a few events per message instead of every command and
    // reply (an open session's transcript is read on its own, js/transcript.js).
    streams.push(openStream('/api/events/stream?since=0&brief=true', {
      messages(batch) {
        const events = [];
        for (const { data } of batch) {
          try {
            events.push(JSON.parse(data));
          } catch {
            // A broken line is skipped, never shown.
          }
        }
        ctx.model.applyAll(events);
        ctx.emit('events', events);
      },
      comment(text) {
        const match = /^lagged: (\d+) events/.exec(text);
        if (!match) return;
        skipped += Number(match[1]);
        liveState('lagged', 'fell behind');
        banner(
          `This page fell behind the event stream: ${count(skipped)} events were skipped (the server keeps a bounded journal and does not wait for a slow reader). The counts and the chart are exact; reload to read the sessions from the journal again.`,
          h('button', { type: 'button', class: 'link-button', text: 'Reload', on: { click: () => location.reload() } }),
        );
      },
      restarted() {
        // The server was restarted: its sessions are new ones (their ids start over).
        skipped = 0;
        ctx.model.clear();
        ctx.emit('events', []);
      },
      state(state) {
        if (state === 'live' && skipped) return;
        liveState(state);
      },
      refused(status, error) {
        if (status === 401) askForToken(error);
        if (status === 409) {
          ctx.recordsEvents = false;
          liveState('off', 'no events');
          banner(error?.error ? `${error.error}: sessions and transcripts cannot be shown.` : 'This server records no events.');
        }
      },
    }, { resume: true }));
  } else {
    liveState('off', 'no events');
  }
  streams.push(openStream('/api/counters/stream', {
    messages(batch) {
      for (const { data } of batch) {
        try {
          ctx.addCounters(JSON.parse(data));
        } catch {
          // skipped
        }
      }
    },
  }));
}

function navigation() {
  const nav = document.getElementById('nav');
  replace(nav, VIEWS.map((view) => h('a', { href: `#/${view.id}`, data: { view: view.id }, text: view.title })));
}

function route() {
  const [, id = VIEWS[0].id, ...rest] = location.hash.replace(/^#/, '').split('/');
  const view = VIEWS.find((v) => v.id === id) ?? VIEWS[0];
  const param = rest.length ? decodeURIComponent(rest.join('/')) : null;
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('active', link.dataset.view === view.id);
    if (link.dataset.view === view.id) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (current && current.view === view) {
    current.instance.route?.(param);
    return;
  }
  current?.instance.unmount?.();
  const main = document.getElementById('main');
  main.replaceChildren();
  main.dataset.view = view.id;
  document.title = `${view.title} · failmail`;
  current = { view, instance: view.mount(main, ctx, param) ?? {} };
}

function askForToken(error) {
  streams.forEach((s) => s.close());
  streams = [];
  const screen = document.getElementById('token');
  const message = document.getElementById('token-error');
  document.getElementById('main').hidden = true;
  screen.hidden = false;
  if (api.token()) {
    message.textContent = error?.error === 'wrong API token' ? 'That token is wrong.' : (error?.error ?? 'The token was refused.');
    message.hidden = false;
    api.setToken(null);
  }
  document.getElementById('token-input').focus();
}

async function start() {
  let info;
  try {
    info = await api.get('/api/info');
  } catch (error) {
    if (error.status === 401) return;
    banner(`failmail does not answer: ${error.message}`);
    return;
  }
  ctx.info = info;
  ctx.recordsEvents = info.records_events;
  document.getElementById('token').hidden = true;
  document.getElementById('main').hidden = false;
  document.getElementById('forget-token').hidden = !api.token();
  const smtp = document.getElementById('smtp');
  smtp.textContent = info.smtp ? `SMTP ${info.smtp}` : '';
  await ctx.refreshClock().catch(() => null);
  openStreams();
  navigation();
  if (!routing) {
    routing = true;
    window.addEventListener('hashchange', route);
  }
  route();
}

api.onUnauthorized(askForToken);
document.getElementById('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = document.getElementById('token-input');
  api.setToken(input.value.trim());
  input.value = '';
  document.getElementById('token-error').hidden = true;
  start();
});
document.getElementById('forget-token').addEventListener('click', () => {
  api.setToken(null);
  location.reload();
});
start();
