// Limits: each sending limit's use (per account, per IP) with the time its window frees its next
// use, a live chart of accepted and refused per second over the last minutes, and greylisting
// and sequences in progress (each triplet with when it passes, each sequence with its next step).

import uPlot from '../../vendor/uPlot.esm.js';
import { h, replace } from '../dom.js';
import { count, duration, dateTime, clockTime } from '../format.js';

const SERIES = [
  { key: 'accepted', label: 'accepted / s', stroke: '#12805c', fill: 'rgba(18,128,92,0.10)' },
  { key: 'refused', label: 'refused (4xx, 5xx) / s', stroke: '#d13c1d', fill: 'rgba(209,60,29,0.08)' },
  { key: 'limited', label: 'of which by limits / s', stroke: '#b7791f', dash: [6, 4] },
];

function chart(container, ctx) {
  const peaks = h('div', { class: 'chart-peaks' });
  const plotBox = h('div', { class: 'chart-box' });
  container.append(plotBox, peaks);
  const data = () => {
    const rates = ctx.rates;
    return [rates.map((r) => r.t), ...SERIES.map((s) => rates.map((r) => r[s.key]))];
  };
  const width = () => Math.max(280, plotBox.clientWidth || container.clientWidth || 600);
  const plot = new uPlot({
    width: width(),
    height: 240,
    legend: { show: true, live: false },
    cursor: { drag: { x: false, y: false } },
    // Up to the last five minutes of the browser's clock: at least one minute, more as the
    // samples cover more.
    scales: { x: { time: true, range: (u) => {
      const now = Date.now() / 1000;
      const first = u.data[0][0] ?? now;
      return [now - Math.min(300, Math.max(60, now - first + 5)), now];
    } }, y: { range: (u, min, max) => [0, Math.max(5, max * 1.15)] } },
    axes: [
      { stroke: '#667085', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e4e7ec' } },
      { stroke: '#667085', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e4e7ec' }, size: 50 },
    ],
    series: [{}, ...SERIES.map((s) => ({
      label: s.label, stroke: s.stroke, fill: s.fill, width: 2, dash: s.dash,
      points: { size: 5, show: (u) => u.data[0].length < 40 },
    }))],
  }, data(), plotBox);
  const update = () => {
    plot.setData(data());
    const rates = ctx.rates;
    const peak = (key) => rates.reduce((m, r) => Math.max(m, r[key]), 0);
    const last = rates[rates.length - 1];
    peaks.dataset.peakAccepted = peak('accepted').toFixed(1);
    peaks.dataset.peakRefused = peak('refused').toFixed(1);
    replace(peaks,
      h('span', { text: `now: ${last ? last.accepted.toFixed(0) : 0} accepted/s, ${last ? last.refused.toFixed(0) : 0} refused/s` }),
      h('span', { text: `peak over ${duration(rates.length)}: ${peak('accepted').toFixed(0)} accepted/s, ${peak('refused').toFixed(0)} refused/s` }),
      h('span', { text: `${last ? last.open : 0} session${last?.open === 1 ? '' : 's'} open` }));
  };
  const resize = new ResizeObserver(() => plot.setSize({ width: width(), height: 240 }));
  resize.observe(container);
  update();
  return { update, destroy: () => { resize.disconnect(); plot.destroy(); } };
}

function usageTable(title, window, usage, ctx) {
  const rows = usage.map((u) => {
    const share = u.max ? Math.min(1, u.used / u.max) : 0;
    const frees = u.frees_at_ms;
    return h('tr', { data: { key: u.key } },
      h('td', { class: 'key', text: u.key.replace(/^(account|ip):/, '') }),
      h('td', { class: 'used' },
        h('div', { class: 'meter' }, h('div', { class: `meter-fill${share >= 1 ? ' full' : share >= 0.8 ? ' high' : ''}`, data: { share: share.toFixed(3) } })),
        h('span', { text: `${count(u.used)} / ${u.max ? count(u.max) : '?'}` })),
      h('td', { class: 'frees', data: { at: frees ?? '' }, title: frees ? dateTime(frees) : '' }));
  });
  return h('section', { class: 'card' },
    h('h3', { text: title }),
    h('p', { class: 'muted', text: window ? `${count(window.max)} per ${duration(window.per_seconds)}, a sliding window: each use frees one window after it was taken.` : 'No limit.' }),
    usage.length
      ? h('table', { class: 'usage' },
        h('thead', {}, h('tr', {}, h('th', { text: 'Key' }), h('th', { text: 'Used / max' }), h('th', { text: 'Frees its next use' }))),
        h('tbody', {}, rows))
      : h('p', { class: 'muted', text: window ? 'Nothing used in the current window.' : '' }));
}

/** A cell that counts down to `at` (ms on the server's clock); `done` once it passed. */
function countdown(at, done) {
  return h('td', { class: 'countdown', data: { at: at ?? '', done }, title: at ? dateTime(at) : '' });
}

/** Greylisting in progress: each triplet remembered, with when a retry passes. */
function greylistCard(limits, settings) {
  const rows = limits.greylist.map((g) => h('tr', { data: { key: g.key, recipient: g.recipient ?? '' } },
    h('td', { class: 'key', text: g.network ?? g.key }),
    h('td', { class: 'key', text: g.sender === '' ? '<>' : (g.sender ?? '') }),
    h('td', { class: 'key', text: g.recipient ?? '' }),
    h('td', { class: 'when', text: clockTime(g.first_seen_ms), title: dateTime(g.first_seen_ms) }),
    countdown(g.passes_at_ms, 'passes now'),
    countdown(g.expires_at_ms, 'forgotten')));
  const about = settings
    ? `A new (client network, sender, recipient) is refused for ${duration(settings.delay_seconds)}; a retry after that passes, and the triplet is remembered ${duration(settings.retry_window_seconds)} from its first attempt.`
    : 'The live scenario has no [greylisting] section: nothing is greylisted (triplets below are left from an earlier one).';
  return h('section', { class: 'card state-card greylist-card' },
    h('h3', { text: `Greylisting (${count(limits.greylist.length)}${limits.greylist_truncated ? '+' : ''})` }),
    h('p', { class: 'muted', text: about }),
    rows.length
      ? h('div', { class: 'table-scroll' }, h('table', { class: 'usage greylist' },
        h('thead', {}, h('tr', {}, ...['Client network', 'Sender', 'Recipient', 'First seen', 'A retry passes', 'Forgotten'].map((t) => h('th', { text: t })))),
        h('tbody', {}, rows)))
      : h('p', { class: 'muted', text: settings ? 'No triplet is waiting.' : '' }),
    limits.greylist_truncated ? h('p', { class: 'muted small', text: 'More triplets are remembered: the newest 1,000 are shown.' }) : null);
}

/** Sequences in progress: each one's attempts, its rule, and the step its next attempt gets. */
function sequencesCard(limits) {
  const rows = limits.sequences.map((s) => {
    const next = Math.min(s.attempts, s.steps.length - 1);
    return h('tr', { data: { key: s.key, rule: s.rule_name ?? '' } },
      h('td', {}, h('span', { text: s.rule_name ?? (s.rule === null ? '?' : `rule ${s.rule}`) }),
        s.rule_at ? h('span', { class: 'muted small', text: ` ${s.rule_at}` }) : null),
      h('td', { class: 'key muted', text: s.key.slice(s.key.indexOf(':') + 1), title: 'a hash of the client IP, sender and recipient' }),
      h('td', { class: 'attempts', text: count(s.attempts) }),
      h('td', { class: 'steps' }, s.steps.length
        ? s.steps.map((step, i) => h('span', { class: `step${i < next ? ' done' : ''}${i === next ? ' next' : ''}`, text: step }))
        : h('span', { class: 'muted', text: 'not a sequence of the live scenario' })));
  });
  return h('section', { class: 'card state-card sequences-card' },
    h('h3', { text: `Sequences (${count(limits.sequences.length)}${limits.sequences_truncated ? '+' : ''})` }),
    h('p', { class: 'muted', text: 'A rule with sequence = [...] gives the n-th attempt of each (client IP, sender, recipient) its n-th step; the last repeats. The next step is marked.' }),
    rows.length
      ? h('div', { class: 'table-scroll' }, h('table', { class: 'usage sequences' },
        h('thead', {}, h('tr', {}, ...['Rule', 'Triplet', 'Attempts', 'Steps'].map((t) => h('th', { text: t })))),
        h('tbody', {}, rows)))
      : h('p', { class: 'muted', text: 'No sequence has counted an attempt.' }),
    limits.sequences_truncated ? h('p', { class: 'muted small', text: 'More sequences are counted: the 1,000 with the most attempts are shown.' }) : null);
}

function mount(root, ctx) {
  const chartCard = h('section', { class: 'card chart-card' },
    h('div', { class: 'card-head' }, h('h2', { text: 'Accepted and refused per second' }), h('span', { class: 'muted', text: 'up to the last 5 minutes, one point a second' })));
  const config = h('div', { class: 'limits-config' });
  const tables = h('div', { class: 'usage-grid' });
  const state = h('div', { class: 'state-grid' });
  root.append(h('div', { class: 'page-narrow' }, chartCard, config, tables, state));
  const plot = chart(chartCard, ctx);
  let loading = false;
  let wakeup = null;
  let lastLoad = 0;
  let trailing = null;

  const tick = () => {
    const now = ctx.serverNow();
    let next = Infinity;
    for (const cell of root.querySelectorAll('td.frees, td.countdown')) {
      const at = Number(cell.dataset.at);
      if (!at) {
        cell.textContent = '—';
        continue;
      }
      const left = (at - now) / 1000;
      cell.textContent = left > 0 ? `in ${duration(left)}` : (cell.dataset.done ?? 'now');
      cell.classList.toggle('passed', left <= 0);
      if (at > now) next = Math.min(next, at);
    }
    for (const fill of tables.querySelectorAll('.meter-fill')) fill.style.width = `${Number(fill.dataset.share) * 100}%`;
    return next;
  };

  async function load() {
    if (loading) return;
    loading = true;
    lastLoad = performance.now();
    try {
      const limits = await ctx.api.get('/api/limits');
      const l = limits.limits;
      replace(config, !l
        ? h('p', { class: 'muted', text: 'This server has no scenario, so no limits.' })
        : h('dl', { class: 'facts inline' },
          h('dt', { text: 'Per account' }), h('dd', { text: l.per_account ? `${count(l.per_account.max)} / ${duration(l.per_account.per_seconds)}` : 'none' }),
          h('dt', { text: 'Per IP' }), h('dd', { text: l.per_ip ? `${count(l.per_ip.max)} / ${duration(l.per_ip.per_seconds)}` : 'none' }),
          h('dt', { text: 'Connections per IP' }), h('dd', { text: l.connections_per_ip ?? 'none' }),
          h('dt', { text: 'Messages per connection' }), h('dd', { text: l.messages_per_connection ?? 'none' })));
      const of = (prefix) => limits.usage.filter((u) => u.key.startsWith(prefix));
      replace(state, l ? [greylistCard(limits, l.greylisting), sequencesCard(limits)] : null);
      if (l && (l.per_account || l.per_ip)) {
        replace(tables,
          usageTable('Per account', l.per_account, of('account:'), ctx),
          usageTable('Per IP', l.per_ip, of('ip:'), ctx));
      } else {
        replace(tables, h('section', { class: 'card' }, h('h3', { text: 'No sending limit' }),
          h('p', { class: 'muted', text: 'This scenario counts no use: add a [limits] section (per_account, per_ip), or start failmail with --limits ovh or --limit-account 200/1h.' })));
      }
    } catch (error) {
      replace(tables, h('p', { class: 'error-text', text: error.message }));
    } finally {
      loading = false;
    }
    schedule();
  }

  // The countdowns move every second; the table is read again when a use frees, when the clock
  // moves, and (at most once a second) when messages are accepted or refused.
  let countdown = null;
  function schedule() {
    clearInterval(countdown);
    clearTimeout(wakeup);
    const next = tick();
    countdown = setInterval(tick, 1000);
    if (Number.isFinite(next)) wakeup = setTimeout(load, Math.min(next - ctx.serverNow() + 50, 2 ** 31 - 1));
  }

  const stops = [
    ctx.on('rates', () => plot.update()),
    ctx.on('clock', () => load()),
    ctx.on('events', (events) => {
      // Uses, refusals, and rule decisions (a sequence counts its accepts too).
      if (!events.some((e) => e.type === 'message' || (e.type === 'reply' && (e.code >= 400 || e.rule != null)))) return;
      const wait = 1000 - (performance.now() - lastLoad);
      if (wait <= 0) load();
      else if (!trailing) trailing = setTimeout(() => { trailing = null; load(); }, wait);
    }),
  ];
  load();
  return {
    unmount() {
      stops.forEach((stop) => stop());
      clearInterval(countdown);
      clearTimeout(wakeup);
      clearTimeout(trailing);
      plot.destroy();
    },
  };
}

export default { id: 'limits', title: 'Limits', mount };
