// Retries: the retry report. Per message and recipient, the attempt timeline (each attempt's
// time, session, the phase it reached, the reply with its enhanced status, catalog entry and
// rule, and whether it was accepted), the delays between attempts, the status (delivered,
// bounced, still pending, gave up) and the verdicts on the client's behaviour with their
// reasons. Read again when the stream says attempts moved, when the clock moves, and when a
// retry still awaited falls due; never on a timer otherwise.

import { h, replace, debounce } from '../dom.js';
import { clockTime, codeClass, count, dateTime, delay as seconds } from '../format.js';
import { refetcher } from '../refetch.js';

/** Messages drawn at once, the newest first; the filter finds the others. */
const SHOWN = 200;

const STATUS_CLASS = { delivered: 'ok', bounced: 'perm', gave_up: 'perm', still_pending: 'temp' };
const RESULT_CLASS = { pass: 'ok', pending: 'temp', fail: 'perm' };
const VERDICT_TITLES = {
  retried_after_temporary: 'retried after a temporary failure',
  stopped_after_permanent: 'stopped after a permanent failure',
  respected_greylist_delay: 'respected the greylist delay',
  backoff: 'backed off',
  reconnected_after_421: 'reconnected after 421',
  resent_remaining_after_452: 'resent the rest after 452 4.5.3',
  duplicates: 'no duplicates',
};
/** The stream's events after which attempts may have moved. */
const MOVING = new Set(['reply', 'silent', 'message', 'session_end']);

const label = (message) => message.message_id ?? `#${message.key} (no Message-ID)`;

/** One attempt on a recipient's timeline. */
function attemptLine(entry, first) {
  const reply = entry.code ? `${entry.code}${entry.status ? ` ${entry.status}` : ''}` : null;
  const klass = entry.accepted ? 'ok' : entry.code ? codeClass(entry.code) : 'perm';
  const chip = (name, value, extra = '') => (value === null || value === undefined ? null
    : h('span', { class: `chip ${extra}` }, h('span', { class: 'chip-label', text: name }), h('span', { text: value })));
  return h('li', { class: `attempt ${klass}`, data: { attempt: entry.attempt, result: entry.result } },
    h('span', { class: 'attempt-at', title: dateTime(entry.at_ms), text: clockTime(entry.started_ms) }),
    h('span', { class: 'attempt-offset muted', text: entry.started_ms > first ? `+${seconds(entry.started_ms - first)}` : 'first' }),
    h('span', { class: 'attempt-what' },
      reply ? h('span', { class: `badge ${klass}`, text: reply }) : h('span', { class: 'badge perm', text: 'no reply' }),
      h('span', { class: 'attempt-result', text: `${entry.result.replace('_', ' ')} at ${entry.phase.replace('_', ' ')}` }),
      entry.accepted ? h('span', { class: 'tag accepted', text: 'accepted' }) : null),
    h('span', { class: 'attempt-meta' },
      h('a', { href: `#/sessions/${entry.session}`, text: `session #${entry.session}` }),
      chip('attempt', `#${entry.attempt}`),
      chip('catalog', entry.catalog),
      chip('rule', entry.rule_name, 'rule'),
      chip('at', entry.rule_at, 'rule'),
      entry.tls ? h('span', { class: 'tag', text: 'TLS' }) : null,
      entry.auth_user ? h('span', { class: 'tag auth', text: entry.auth_user }) : null));
}

/** The attempts, oldest first, with the wait before each retry between them. */
function timeline(recipient) {
  const attempts = recipient.attempts;
  const first = attempts[0]?.started_ms ?? 0;
  const items = [];
  attempts.forEach((entry, i) => {
    if (i > 0 && recipient.delays_ms[i - 1] !== undefined) {
      items.push(h('li', { class: 'attempt-wait muted', text: `waited ${seconds(recipient.delays_ms[i - 1])}` }));
    }
    items.push(attemptLine(entry, first));
  });
  return h('ol', { class: 'timeline' }, items);
}

function verdictList(verdicts) {
  const names = Object.keys(verdicts);
  if (!names.length) return h('p', { class: 'muted small', text: 'No verdict applies yet.' });
  return h('ul', { class: 'verdicts' }, names.map((name) => {
    const v = verdicts[name];
    return h('li', { class: `verdict ${RESULT_CLASS[v.result]}`, data: { verdict: name, result: v.result } },
      h('span', { class: `badge ${RESULT_CLASS[v.result]}`, text: v.result }),
      h('span', { class: 'verdict-name', text: VERDICT_TITLES[name] ?? name, title: name }),
      h('span', { class: 'verdict-detail', text: v.detail }),
      v.evidence.length ? h('span', { class: 'muted small', text: ` (attempt${v.evidence.length > 1 ? 's' : ''} ${v.evidence.map((a) => `#${a}`).join(', ')})` }) : null);
  }));
}

function recipientBlock(recipient) {
  const facts = [
    `${count(recipient.attempts_total)} attempt${recipient.attempts_total === 1 ? '' : 's'}`,
    recipient.delays_ms.length ? `delays ${recipient.delays_ms.map(seconds).join(', ')}` : null,
    recipient.duplicates ? `${recipient.duplicates} duplicate${recipient.duplicates === 1 ? '' : 's'}` : null,
    recipient.attempts.length < recipient.attempts_total ? `${recipient.attempts_total - recipient.attempts.length} not kept` : null,
  ].filter(Boolean).join(' · ');
  return h('div', { class: `report-rcpt${recipient.ok ? '' : ' failed'}`, data: { rcpt: recipient.rcpt ?? '', status: recipient.status } },
    h('div', { class: 'report-rcpt-head' },
      h('span', { class: 'rcpt', text: recipient.rcpt ?? '(refused at MAIL, before any recipient)' }),
      h('span', { class: `badge ${STATUS_CLASS[recipient.status] ?? 'none'}`, text: recipient.status.replace('_', ' ') }),
      h('span', { class: 'muted small', text: facts })),
    timeline(recipient),
    verdictList(recipient.verdicts));
}

function messageCard(message) {
  return h('section', { class: 'card report-message', data: { key: message.key } },
    h('div', { class: 'card-head' },
      h('h3', { class: 'message-label', text: label(message) }),
      h('span', { class: 'muted small', text: `from ${message.sender || '<>'} · ${count(message.attempts)} attempt${message.attempts === 1 ? '' : 's'}` })),
    message.recipients.map(recipientBlock));
}

function passes(message, filter) {
  const recipients = message.recipients.filter((r) => {
    if (filter.status === 'fail' || filter.status === 'pending') {
      if (!Object.values(r.verdicts).some((v) => v.result === filter.status)) return false;
    } else if (filter.status && r.status !== filter.status) return false;
    return true;
  });
  if (!recipients.length) return false;
  if (!filter.text) return true;
  const haystack = [message.message_id, message.sender, `#${message.key}`, ...recipients.map((r) => r.rcpt)].join(' ').toLowerCase();
  return haystack.includes(filter.text);
}

/** The head: the report's outcome, its settings, and the filters. */
function head(filter, changed, refresh) {
  const outcome = h('div', { class: 'report-summary', role: 'status' });
  const settings = h('p', { class: 'muted small settings' });
  const status = h('select', { data: { filter: 'status' }, on: { change: (e) => { filter.status = e.target.value; changed(); } } },
    ...[['', 'any'], ['fail', 'a verdict failed'], ['pending', 'a verdict pending'], ['delivered', 'delivered'],
      ['bounced', 'bounced'], ['still_pending', 'still pending'], ['gave_up', 'gave up']]
      .map(([value, text]) => h('option', { value, text })));
  const card = h('section', { class: 'card report-head' },
    h('div', { class: 'card-head' }, h('h2', { text: 'Retry report' }),
      h('button', { type: 'button', class: 'small', text: 'Read again', on: { click: refresh } })),
    outcome, settings,
    h('div', { class: 'toolbar' },
      h('label', { class: 'field grow' }, h('span', { text: 'Message-ID, sender or recipient' }),
        h('input', { type: 'search', placeholder: '<id@app.example>, user@…', data: { filter: 'text' },
          on: { input: debounce((e) => { filter.text = e.target.value.trim().toLowerCase(); changed(); }, 150) } })),
      h('label', { class: 'field' }, h('span', { text: 'Show' }), status)));
  return { card, outcome, settings };
}

/** When the next retry still awaited falls due (ms from now), so that its verdict turns. */
function nextDeadline(report, now) {
  const s = report.settings;
  let next = Infinity;
  for (const message of report.messages) {
    for (const r of message.recipients) {
      if (!Object.values(r.verdicts).some((v) => v.result === 'pending')) continue;
      const last = r.attempts[r.attempts.length - 1];
      if (!last) continue;
      for (const window of [s.retry_window_ms, s.greylist_retry_window_ms]) {
        const at = last.at_ms + window;
        if (at > now) next = Math.min(next, at - now);
      }
    }
  }
  return next;
}

function mount(root, ctx) {
  const filter = { text: '', status: '' };
  let report = null;
  const list = h('div', { class: 'report-list' });
  const more = h('p', { class: 'muted more' });
  const data = refetcher(load, { gap: 1000 });
  const { card, outcome, settings } = head(filter, () => draw(), () => data.now());
  root.append(h('div', { class: 'page-narrow report' }, card, list, more));

  function draw() {
    if (!report) return;
    const messages = report.messages.filter((m) => passes(m, filter)).reverse();
    replace(list, messages.slice(0, SHOWN).map(messageCard));
    more.textContent = messages.length > SHOWN ? `${count(messages.length - SHOWN)} older messages are not drawn: narrow the list with the filter.` : '';
    if (!report.messages.length) {
      replace(list, h('div', { class: 'empty' }, h('p', { text: 'No attempt yet.' }),
        h('p', { class: 'muted', text: 'Every mail transaction is an attempt of a message: send mail, and the report judges how the client retried.' })));
    }
  }

  async function load() {
    try {
      report = await ctx.api.get('/api/report');
    } catch (error) {
      report = null;
      replace(outcome, h('p', { class: error.status === 409 ? 'muted' : 'error-text', text: error.body?.hint ? `${error.message}: ${error.body.hint}` : error.message }));
      replace(list);
      return;
    }
    const recipients = report.messages.reduce((n, m) => n + m.recipients.length, 0);
    outcome.dataset.failed = report.failed.length;
    outcome.dataset.pending = report.pending.length;
    outcome.dataset.ok = report.ok;
    replace(outcome,
      h('span', { class: `badge ${report.ok ? 'ok' : 'perm'}`, text: report.ok ? 'ok' : 'failed' }),
      h('span', { text: ` at ${dateTime(report.now_ms)}: ${count(report.messages.length)} message${report.messages.length === 1 ? '' : 's'}, ${count(recipients)} recipient${recipients === 1 ? '' : 's'}; ${count(report.failed.length)} verdict${report.failed.length === 1 ? '' : 's'} failed, ${count(report.pending.length)} pending` }),
      report.messages_dropped || report.attempts_dropped ? h('span', { class: 'muted', text: ` (${count(report.messages_dropped)} messages and ${count(report.attempts_dropped)} attempts fell out of the history)` }) : null);
    const s = report.settings;
    settings.textContent = `A retry is expected within ${seconds(s.retry_window_ms)} of a temporary failure (${seconds(s.greylist_retry_window_ms)} after greylisting, not before ${seconds(s.greylist_delay_ms)}); a delay under ${seconds(s.backoff_threshold_ms)} fails the backoff verdict.`;
    draw();
    data.at(nextDeadline(report, report.now_ms) + 250);
  }

  const stops = [
    ctx.on('events', (events) => {
      if (events.some((e) => MOVING.has(e.type))) data.ask();
    }),
    ctx.on('clock', () => data.ask()),
  ];
  data.now();
  return {
    unmount() {
      stops.forEach((stop) => stop());
      data.stop();
    },
  };
}

export default { id: 'report', title: 'Retries', mount };
