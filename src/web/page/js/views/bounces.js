// Bounces: the later notifications failmail makes (DSNs, complaints, auto-replies), pending with
// the time each is due, and sent; live. One opened shows its recipients with their status and
// the reply quoted, the message it answers, and, once sent, its raw bytes.

import { h, replace, debounce } from '../dom.js';
import { clockTime, codeClass, count, dateTime, duration, bytes } from '../format.js';
import { refetcher } from '../refetch.js';
import { VirtualList } from '../vlist.js';

/** The most of a raw notification shown in the page (the download has it all). */
const RAW_SHOWN = 256 * 1024;

const KINDS = {
  failed: 'failure DSN',
  expired: 'failure DSN (expired)',
  delayed: 'delay DSN',
  delivered: 'success DSN',
  complaint: 'complaint (ARF)',
  auto_reply: 'auto-reply',
};

/** `5.1.1` → its class colour, `perm` for 5.x.x. */
const statusClass = (status) => codeClass(Number(String(status)[0] ?? 2) * 100);

/** `due in 4 min` or `due now`, from the server's clock; `sent 14:03:07` once sent. */
function dueText(bounce, now) {
  if (bounce.state === 'sent') return `sent ${clockTime(bounce.sent_at_ms).slice(0, 8)}`;
  const left = (bounce.due_at_ms - now) / 1000;
  return left > 0.5 ? `due in ${duration(left)}` : 'due now';
}

function createRow() {
  const cell = (name) => h('span', { class: `cell ${name}` });
  return h('a', { class: 'bounce-row', role: 'listitem' },
    cell('id'), cell('state'), cell('kind'), cell('rcpt'), cell('status'), cell('to'), cell('due'));
}

function fillRow(row, bounce, selected, now) {
  const [id, state, kind, rcpt, status, to, due] = row.children;
  row.href = `#/bounces/${bounce.id}`;
  row.dataset.bounce = bounce.id;
  row.dataset.state = bounce.state;
  row.classList.toggle('selected', bounce.id === selected);
  id.textContent = `#${bounce.id}`;
  replace(state, h('span', { class: `badge ${bounce.state === 'pending' ? 'temp' : 'ok'}`, text: bounce.state }));
  kind.textContent = KINDS[bounce.kind] ?? bounce.kind;
  const first = bounce.recipients[0]?.recipient ?? '';
  rcpt.textContent = bounce.recipients.length > 1 ? `${first} +${bounce.recipients.length - 1}` : first;
  rcpt.title = bounce.recipients.map((r) => r.recipient).join(', ');
  const statuses = [...new Set(bounce.recipients.map((r) => r.status))];
  replace(status, statuses.map((s) => h('span', { class: `badge ${statusClass(s)}`, text: s })));
  to.textContent = bounce.to || '<>';
  due.textContent = dueText(bounce, now);
  due.title = bounce.state === 'sent' ? `sent ${dateTime(bounce.sent_at_ms)}` : `due ${dateTime(bounce.due_at_ms)}`;
}

/** The recipients of a notification: status, catalog entry, the reply it quotes. */
function recipientsTable(bounce) {
  return h('table', { class: 'usage recipients' },
    h('thead', {}, h('tr', {}, ...['Recipient', 'Status', 'Catalog', 'Reply quoted'].map((t) => h('th', { text: t })))),
    h('tbody', {}, bounce.recipients.map((r) => h('tr', { data: { rcpt: r.recipient } },
      h('td', { class: 'key', text: r.recipient }),
      h('td', {}, h('span', { class: `badge ${statusClass(r.status)}`, text: r.status })),
      h('td', { text: r.catalog ?? '—' }),
      h('td', { class: 'reply', text: r.reply ?? '—' })))));
}

async function download(ctx, bounce) {
  const blob = await ctx.api.get(`/api/bounces/${bounce.id}/raw`, { as: 'blob' });
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: `failmail-bounce-${bounce.id}.eml`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** The raw notification, read when asked for (it may carry the whole original). */
function rawSection(ctx, bounce) {
  if (bounce.state !== 'sent') {
    return h('p', { class: 'muted' }, 'Sent when the server\'s clock reaches its due time: ',
      h('a', { href: '#/clock', text: 'move the clock' }), ' instead of waiting.');
  }
  const box = h('div', { class: 'raw-box' });
  const show = async () => {
    replace(box, h('p', { class: 'muted', text: 'Loading…' }));
    try {
      const text = await ctx.api.get(`/api/bounces/${bounce.id}/raw`, { as: 'text' });
      const cut = text.length > RAW_SHOWN;
      replace(box, h('pre', { class: 'raw body-text', text: cut ? text.slice(0, RAW_SHOWN) : text }),
        cut ? h('p', { class: 'muted', text: `The first ${bytes(RAW_SHOWN)} of ${bytes(text.length)}: download it for the rest.` }) : null);
    } catch (error) {
      replace(box, h('p', { class: 'error-text', text: error.message }));
    }
  };
  return h('div', { class: 'raw-section' },
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary small', text: 'Show the raw DSN', data: { action: 'raw' }, on: { click: show } }),
      h('button', { type: 'button', class: 'small', text: 'Download', on: { click: () => download(ctx, bounce) } })),
    box);
}

function detailContent(ctx, bounce, now) {
  const link = (id, label) => (id ? h('a', { href: `#/messages/${id}`, text: `${label} #${id}` }) : '—');
  return [
    h('div', { class: 'detail-head' },
      h('a', { class: 'back', href: '#/bounces', text: '← Bounces' }),
      h('h2', { text: `Bounce #${bounce.id}: ${KINDS[bounce.kind] ?? bounce.kind}` }),
      h('span', { class: `badge ${bounce.state === 'pending' ? 'temp' : 'ok'}`, text: bounce.state })),
    h('dl', { class: 'facts' },
      h('dt', { text: 'To' }), h('dd', { text: bounce.to || '<> (never sent to the null sender)' }),
      h('dt', { text: 'Action' }), h('dd', { text: bounce.action ?? '— (not a DSN)' }),
      h('dt', { text: 'Style' }), h('dd', { text: bounce.style }),
      h('dt', { text: 'Due' }), h('dd', { class: 'due' }, `${dateTime(bounce.due_at_ms)} · `,
        h('span', { class: 'due-left', text: bounce.state === 'sent' ? `sent ${dateTime(bounce.sent_at_ms)}` : dueText(bounce, now) })),
      h('dt', { text: 'Answers' }), h('dd', {}, link(bounce.original_message_id, 'message')),
      h('dt', { text: 'Stored as' }), h('dd', {}, link(bounce.message_id, 'message')),
      bounce.forwarded ? [h('dt', { text: '--bounce-to' }), h('dd', { text: bounce.forwarded })] : null),
    h('h3', { text: `Recipients (${bounce.recipients.length})` }),
    recipientsTable(bounce),
    h('h3', { class: 'raw-title', text: 'The notification' }),
    rawSection(ctx, bounce)];
}

/** The filter bar: text (recipient, sender, kind, status) and state. */
function filterBar(filter, changed) {
  const summary = h('span', { class: 'muted summary' });
  const bar = h('div', { class: 'toolbar' },
    h('label', { class: 'field grow' }, h('span', { text: 'Recipient, sender, kind or status' }),
      h('input', { type: 'search', placeholder: 'user_unknown@…, 5.1.1, delayed', data: { filter: 'text' },
        on: { input: debounce((e) => { filter.text = e.target.value.trim().toLowerCase(); changed(); }, 120) } })),
    h('label', { class: 'field' }, h('span', { text: 'State' }),
      h('select', { data: { filter: 'state' }, on: { change: (e) => { filter.state = e.target.value; changed(); } } },
        h('option', { value: '', text: 'pending and sent' }), h('option', { value: 'pending', text: 'pending' }),
        h('option', { value: 'sent', text: 'sent' }))),
    summary);
  return { bar, summary };
}

function passes(bounce, filter) {
  if (filter.state && bounce.state !== filter.state) return false;
  if (!filter.text) return true;
  const haystack = [bounce.to, bounce.kind, KINDS[bounce.kind], ...bounce.recipients.flatMap((r) => [r.recipient, r.status, r.catalog])]
    .join(' ').toLowerCase();
  return haystack.includes(filter.text);
}

function mount(root, ctx, param) {
  const filter = { text: '', state: '' };
  let all = [];
  let shown = [];
  let selected = param ? Number(param) : null;
  let drawn = null;
  let ticking = null;

  const { bar, summary } = filterBar(filter, () => show());
  const list = new VirtualList({ className: 'bounces', create: createRow, render: (row, i) => fillRow(row, shown[i], selected, ctx.serverNow()) });
  const header = h('div', { class: 'bounce-row head', 'aria-hidden': 'true' },
    ...['Bounce', 'State', 'Kind', 'Recipients', 'Status', 'To (envelope sender)', 'Due'].map((t) => h('span', { class: 'cell', text: t })));
  const empty = h('div', { class: 'empty' }, h('p', { text: 'No later bounce yet.' }),
    h('p', { class: 'muted', text: 'A rule with bounce = { reply = "user_unknown", after = "10m" }, or a magic address such as user_unknown+async@example.test, schedules one after the 250; it is sent when the server\'s clock reaches its due time.' }));
  const detail = h('section', { class: 'pane detail-pane', 'aria-live': 'polite' });
  const layout = h('div', { class: 'split' }, h('section', { class: 'pane list-pane' }, bar, header, list.el, empty), detail);
  root.append(layout);

  function show() {
    // Pending first, the soonest due first; then sent, the newest first.
    const pending = all.filter((b) => b.state === 'pending');
    const sent = all.filter((b) => b.state !== 'pending').reverse();
    shown = pending.concat(sent).filter((b) => passes(b, filter));
    list.setCount(shown.length);
    summary.textContent = `${count(shown.length)} shown · ${count(pending.length)} pending · ${count(sent.length)} sent and kept`;
    summary.dataset.pending = pending.length;
    summary.dataset.sent = sent.length;
    empty.hidden = all.length > 0;
    drawDetail();
    // The countdowns move every second while something is pending; the list is read again
    // when the next one is due (the server sends it then, and says so on the stream too).
    clearInterval(ticking);
    ticking = pending.length ? setInterval(tick, 1000) : null;
    const next = pending.length ? pending[0].due_at_ms - ctx.serverNow() + 250 : Infinity;
    data.at(next);
  }

  function tick() {
    list.invalidate();
    const left = detail.querySelector('.due-left');
    const bounce = all.find((b) => b.id === selected);
    if (left && bounce?.state === 'pending') left.textContent = dueText(bounce, ctx.serverNow());
  }

  function drawDetail() {
    layout.classList.toggle('has-detail', selected !== null);
    if (selected === null) {
      drawn = null;
      replace(detail, h('div', { class: 'empty' }, h('p', { class: 'muted', text: 'Open a bounce to read its recipients and its raw DSN.' })));
      return;
    }
    const bounce = all.find((b) => b.id === selected);
    const key = bounce ? `${bounce.id}:${bounce.state}:${bounce.forwarded}` : `none:${selected}`;
    if (key === drawn) return;
    drawn = key;
    if (!bounce) {
      replace(detail, h('div', { class: 'empty' }, h('p', { text: `Bounce #${selected} is not kept (or not loaded yet).` })));
      return;
    }
    replace(detail, ...detailContent(ctx, bounce, ctx.serverNow()));
  }

  const data = refetcher(async () => {
    try {
      const answer = await ctx.api.get('/api/bounces');
      all = answer.bounces;
    } catch (error) {
      summary.textContent = error.message;
      return;
    }
    show();
  });
  const stops = [
    ctx.on('events', (events) => {
      if (events.some((e) => e.type.startsWith('bounce_'))) data.ask();
    }),
    ctx.on('clock', () => data.ask()),
  ];
  data.now();
  return {
    route(next) {
      selected = next ? Number(next) : null;
      list.invalidate();
      drawDetail();
    },
    unmount() {
      stops.forEach((stop) => stop());
      data.stop();
      clearInterval(ticking);
      list.destroy();
    },
  };
}

export default { id: 'bounces', title: 'Bounces', mount };
