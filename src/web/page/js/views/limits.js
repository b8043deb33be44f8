// Limits: each sending limit's use (per account, per IP) with the time its window frees its next
// use, and a live chart of accepted and refused per second over the last minutes.

import uPlot from '../../vendor/uPlot.esm.js';
import { h, replace } from '../dom.js';
import { count, duration, dateTime } from '../format.js';

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

function mount(root, ctx) {
  const chartCard = h('section', { class: 'card chart-card' },
    h('div', { class: 'card-head' }, h('h2', { text: 'Accepted and refused per second' }), h('span', { class: 'muted', text: 'up to the last 5 minutes, one point a second' })));
  const config = h('div', { class: 'limits-config' });
  const tables = h('div', { class: 'usage-grid' });
  root.append(h('div', { class: 'page-narrow' }, chartCard, config, tables));
  const plot = chart(chartCard, ctx);
  let loading = false;
  let wakeup = null;
  let lastLoad = 0;
  let trailing = null;

  const tick = () => {
    const now = ctx.serverNow();
    let next = Infinity;
    for (const cell of tables.querySelectorAll('td.frees')) {
      const at = Number(cell.dataset.at);
      if (!at) {
        cell.textContent = '—';
        continue;
      }
      const left = (at - now) / 1000;
      cell.textContent = left > 0 ? `in ${duration(left)}` : 'now';
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
      if (!events.some((e) => e.type === 'message' || (e.type === 'reply' && e.code >= 400))) return;
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
