// Sessions: every SMTP session, newest first, live; filterable by recipient, sender, outcome
// class and rule; and one session's whole transcript, each reply with the phase, catalog entry,
// flavor and rule that decided it.

import { h, replace, frameThrottle, debounce } from '../dom.js';
import { clockTime, codeClass, count, wireLines, dateTime } from '../format.js';
import { matches } from '../sessions-model.js';
import { TranscriptFeed, MAX_EVENTS } from '../transcript.js';
import { VirtualList } from '../vlist.js';

function outcomeBadge(reply) {
  if (!reply) return h('span', { class: 'badge none', text: '—' });
  return h('span', { class: `badge ${codeClass(reply.code)}`, text: `${reply.code}${reply.status ? ` ${reply.status}` : ''}` });
}

function createRow() {
  const cell = (name) => h('span', { class: `cell ${name}` });
  return h('a', { class: 'session-row', role: 'listitem' },
    cell('time'), cell('id'), cell('ip'), cell('helo'), cell('flags'), cell('from'), cell('to'),
    cell('msgs'), cell('outcome'), cell('why'));
}

function fillRow(row, session, selected) {
  const [time, id, ip, helo, flags, from, to, msgs, outcome, why] = row.children;
  row.href = `#/sessions/${session.id}`;
  row.dataset.session = session.id;
  row.classList.toggle('selected', session.id === selected);
  row.classList.toggle('open', !session.ended);
  time.textContent = session.startMs ? clockTime(session.startMs) : '';
  id.textContent = `#${session.id}`;
  ip.textContent = session.ip;
  helo.textContent = session.helo ?? '';
  replace(flags,
    session.tls ? h('span', { class: 'tag', text: 'TLS' }) : null,
    session.auth ? h('span', { class: 'tag auth', text: session.auth, title: 'AUTH identity' }) : null);
  from.textContent = session.from ?? '';
  to.textContent = session.rcpts.length > 1 ? `${session.rcpts[0]} +${session.rcpts.length - 1}` : (session.rcpts[0] ?? '');
  to.title = session.rcpts.join(', ');
  msgs.textContent = session.messages ? String(session.messages) : '';
  const reply = session.outcome;
  replace(outcome, outcomeBadge(reply));
  const reason = reply ? [reply.catalog, reply.flavor].filter(Boolean).join(' · ') : '';
  why.textContent = reason || (reply?.rule_name ?? '');
  why.title = reply?.rule_at ? `rule ${reply.rule_name ?? ''} ${reply.rule_at}` : '';
}

function chip(label, value, className = '') {
  if (value === null || value === undefined || value === '') return null;
  return h('span', { class: `chip ${className}` }, h('span', { class: 'chip-label', text: label }), h('span', { text: value }));
}

function transcriptLine(event, startMs) {
  const offset = `+${((event.at_ms - startMs) / 1000).toFixed(3)}s`;
  const at = h('span', { class: 't-at', text: offset, title: dateTime(event.at_ms) });
  switch (event.type) {
    case 'session_start':
      return h('div', { class: 't-line t-note' }, at, h('span', { text: `connected from ${event.peer}${event.tls ? ' (implicit TLS)' : ''}` }));
    case 'command':
      return h('div', { class: 't-line t-client' }, at, h('span', { class: 't-dir', text: 'C:' }), h('span', { class: 't-text', text: event.line }));
    case 'reply': {
      // The replies a policy chose to differ from the protocol's own: failures, catalog
      // entries, rules. A plain accept at its phase shows no attribution.
      const decided = event.phase && (event.code >= 400 || event.catalog || event.rule_name || event.rule_at);
      return h('div', { class: `t-line t-server ${codeClass(event.code)}${decided ? ' decided' : ''}` }, at,
        h('span', { class: 't-dir', text: 'S:' }),
        h('div', { class: 't-reply' },
          h('pre', { class: 't-text', text: wireLines(event.code, event.status, event.text).join('\n') }),
          decided ? h('div', { class: 't-meta' },
            chip('phase', event.phase),
            chip('code', `${event.code}${event.status ? ` ${event.status}` : ''}`, codeClass(event.code)),
            chip('catalog', event.catalog),
            chip('flavor', event.flavor),
            chip('rule', event.rule_name, 'rule'),
            chip('at', event.rule_at, 'rule')) : null));
    }
    case 'silent':
      return h('div', { class: 't-line t-note perm decided' }, at,
        h('span', { text: `no reply: the policy chose to ${event.action} (${event.phase})` }),
        h('div', { class: 't-meta' }, chip('rule', event.rule_name, 'rule'), chip('at', event.rule_at, 'rule')));
    case 'tls_started':
      return h('div', { class: 't-line t-note' }, at, h('span', { text: 'TLS started' }));
    case 'message':
      return h('div', { class: 't-line t-note ok' }, at,
        h('span', { text: `message accepted: queue id ${event.queue_id}, ${count(event.size)} octets — ` }),
        h('a', { href: `#/messages/${event.message_id}`, text: `open message #${event.message_id}` }));
    case 'bounce_scheduled':
      return h('div', { class: 't-line t-note temp' }, at,
        h('span', { text: `later: a ${event.kind.replace('_', ' ')} notification to <${event.to}> about ${event.recipients.join(', ')}, due ${dateTime(event.due_at_ms)} — ` }),
        h('a', { href: `#/bounces/${event.bounce}`, text: `bounce #${event.bounce}` }));
    case 'bounce_refused':
      return h('div', { class: 't-line t-note perm' }, at,
        h('span', { text: `refused with 451 4.3.0: ${count(event.pending)} notifications were pending already (--max-pending-bounces)` }));
    case 'session_end':
      return h('div', { class: 't-line t-note' }, at, h('span', { text: `closed${event.auth_user ? `, authenticated as ${event.auth_user}` : ''}` }));
    default:
      return h('div', { class: 't-line t-note' }, at, h('span', { text: event.type }));
  }
}

/** The filter bar: recipient, sender, outcome class, rule; `changed()` after each edit. */
function filterBar(filter, changed) {
  const input = (key, label, placeholder) => h('label', { class: 'field' }, h('span', { text: label }),
    h('input', { type: 'search', placeholder, data: { filter: key }, on: { input: debounce((e) => { filter[key] = e.target.value.trim().toLowerCase(); changed(); }, 120) } }));
  const klass = h('select', { data: { filter: 'klass' }, on: { change: (e) => { filter.klass = e.target.value; changed(); } } },
    h('option', { value: '', text: 'any' }), h('option', { value: '2', text: '2xx accepted' }),
    h('option', { value: '4', text: '4xx temporary' }), h('option', { value: '5', text: '5xx permanent' }));
  const summary = h('span', { class: 'muted summary' });
  const bar = h('div', { class: 'toolbar' },
    input('rcpt', 'Recipient', 'user_unknown@…'), input('sender', 'Sender', 'app@…'),
    h('label', { class: 'field' }, h('span', { text: 'Outcome' }), klass),
    input('rule', 'Rule', 'name or file:line'), summary);
  return { bar, summary };
}

/** The head of a session's detail: its number, outcome and facts, and room for the transcript. */
function detailHead(session) {
  return [
    h('div', { class: 'detail-head' },
      h('a', { class: 'back', href: '#/sessions', text: '← Sessions' }),
      h('h2', { text: `Session #${session.id}` }),
      outcomeBadge(session.outcome)),
    h('dl', { class: 'facts' },
      h('dt', { text: 'Client' }), h('dd', { text: session.peer || '—' }),
      h('dt', { text: 'HELO' }), h('dd', { class: 'helo', text: session.helo ?? '—' }),
      h('dt', { text: 'Started' }), h('dd', { text: session.startMs ? dateTime(session.startMs) : '—' })),
    h('div', { class: 'transcript', role: 'log' })];
}

function mount(root, ctx, param) {
  const filter = { rcpt: '', sender: '', klass: '', rule: '' };
  let selected = param ? Number(param) : null;
  let shown = [];
  let shownVersion = -1;
  let drawnEvents = 0;
  let drawnSession = null;
  // The open session's transcript, read on its own (the list's stream is brief).
  let feed = null;

  const { bar: toolbar, summary } = filterBar(filter, () => refilter());
  const header = h('div', { class: 'session-row head', 'aria-hidden': 'true' },
    ...['Time', 'Session', 'Client', 'HELO', '', 'Sender', 'Recipients', 'Msgs', 'Outcome', 'Catalog · flavor'].map((t) => h('span', { class: 'cell', text: t })));
  const list = new VirtualList({ className: 'sessions', create: createRow, render: (row, i) => fillRow(row, shown[i], selected) });
  const empty = h('div', { class: 'empty' },
    h('p', { text: 'No session yet.' }),
    h('p', { class: 'muted', text: `Point a mail client at ${ctx.info?.smtp ?? 'the SMTP port'}; sessions appear here as they happen.` }));
  const listPane = h('section', { class: 'pane list-pane' }, toolbar, header, list.el, empty);
  const detail = h('section', { class: 'pane detail-pane', 'aria-live': 'polite' });
  const layout = h('div', { class: 'split' }, listPane, detail);
  root.append(layout);

  function refilter() {
    shownVersion = -1;
    redraw();
  }

  const redraw = frameThrottle(() => {
    const model = ctx.model;
    if (shownVersion !== model.version) {
      const all = model.list;
      const active = filter.rcpt || filter.sender || filter.klass || filter.rule;
      shown = [];
      for (let i = all.length - 1; i >= 0; i -= 1) {
        if (!active || matches(all[i], filter)) shown.push(all[i]);
      }
      shownVersion = model.version;
      list.setCount(shown.length);
      summary.textContent = `${count(shown.length)} of ${count(all.length)} sessions${model.forgotten ? ` (${count(model.forgotten)} older ones let go)` : ''}`;
      empty.hidden = all.length > 0 || !ctx.recordsEvents;
    }
    drawDetail();
  });

  function drawDetail() {
    layout.classList.toggle('has-detail', selected !== null);
    if (selected === null) {
      feed?.close();
      feed = null;
      if (drawnSession !== 'none') replace(detail, h('div', { class: 'empty' }, h('p', { class: 'muted', text: 'Open a session to read its transcript.' })));
      drawnSession = 'none';
      return;
    }
    const session = ctx.model.get(selected);
    if (!session) {
      drawnSession = null;
      replace(detail, h('div', { class: 'empty' }, h('p', { text: `Session #${selected} is not known to this page.` })));
      return;
    }
    if (drawnSession !== session) {
      drawnSession = session;
      drawnEvents = 0;
      replace(detail, ...detailHead(session));
    }
    if (feed?.id !== session.id) {
      feed?.close();
      feed = new TranscriptFeed(session.id, redraw);
    }
    const transcript = detail.querySelector('.transcript');
    const events = feed.events;
    const first = drawnEvents === 0;
    const outcomeId = session.outcome?.id;
    for (; drawnEvents < events.length; drawnEvents += 1) {
      const event = events[drawnEvents];
      const line = transcriptLine(event, session.startMs ?? events[0].at_ms);
      if (event.id === outcomeId) line.classList.add('outcome');
      transcript.append(line);
    }
    // Opening a session shows the reply that decided it.
    if (first && events.length) transcript.querySelector('.outcome.decided')?.scrollIntoView({ block: 'center' });
    let note = detail.querySelector('.more');
    const text = feed.error
      ? `The transcript could not be read: ${feed.error.message}.`
      : feed.full
        ? `The page shows the first ${count(MAX_EVENTS)} events of this session: GET /api/events?session=${session.id}&since=${feed.lastId()} has the rest.`
        : null;
    if (text) {
      if (!note) detail.append(note = h('p', { class: 'more muted' }));
      note.textContent = text;
    }
  }

  const stop = ctx.on('events', redraw);
  redraw();
  return {
    route(next) {
      selected = next ? Number(next) : null;
      list.invalidate();
      drawDetail();
    },
    unmount() {
      stop();
      feed?.close();
      list.destroy();
    },
  };
}

export default { id: 'sessions', title: 'Sessions', mount };
