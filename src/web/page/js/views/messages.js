// Messages: the captured messages, newest first, live, DSNs and other notifications marked as
// such; one message's headers, text part, HTML part (in a sandboxed frame: no script runs,
// nothing remote loads), attachments, and its raw bytes to download.

import { h, replace, frameThrottle } from '../dom.js';
import { bytes, count, dateTime } from '../format.js';
import { VirtualList } from '../vlist.js';

/** The policy inside the frame, on top of the page's own (which the frame inherits). */
const FRAME_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

/** A frame that shows `html` with no script, no form, no navigation and no remote load. */
export function sandboxedFrame(html) {
  const frame = h('iframe', {
    class: 'html-frame',
    sandbox: '',
    referrerpolicy: 'no-referrer',
    title: 'The HTML part, sandboxed: no script runs, nothing remote loads',
  });
  frame.addEventListener('load', () => { frame.dataset.loaded = 'true'; });
  frame.srcdoc = `<meta http-equiv="Content-Security-Policy" content="${FRAME_POLICY}">${html}`;
  return frame;
}

/**
 * What a message is when it is a notification: a DSN (multipart/report of type
 * delivery-status, whoever made it), a complaint (feedback-report), another report, or another
 * notification failmail made (an auto-reply). Null for any other message.
 */
export function notification(m) {
  if (m.report_type === 'delivery-status') return 'DSN';
  if (m.report_type === 'feedback-report') return 'complaint';
  if (m.content_type === 'multipart/report') return 'report';
  if (m.bounce) return 'auto-reply';
  return null;
}

function createRow() {
  const cell = (name) => h('span', { class: `cell ${name}` });
  return h('a', { class: 'message-row', role: 'listitem' }, cell('time'), cell('from'), cell('to'), cell('subject'), cell('size'));
}

function fillRow(row, m, selected) {
  const [time, from, to, subject, size] = row.children;
  row.href = `#/messages/${m.id}`;
  row.dataset.message = m.id;
  row.classList.toggle('selected', m.id === selected);
  time.textContent = dateTime(m.received_at_ms);
  from.textContent = m.mail_from || '<>';
  to.textContent = m.recipients.join(', ');
  const kind = notification(m);
  replace(subject, kind ? h('span', { class: 'tag notice', text: kind, title: m.bounce ? `made by failmail: bounce #${m.bounce}` : 'a report from the client' }) : null,
    m.subject ?? '(no subject)');
  subject.classList.toggle('muted', !m.subject);
  row.dataset.notification = kind ?? '';
  size.textContent = bytes(m.size);
}

async function download(ctx, id) {
  const blob = await ctx.api.get(`/api/messages/${id}/raw`, { as: 'blob' });
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: `failmail-message-${id}.eml`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function tabs(parts) {
  const panels = [];
  if (parts.html !== null) panels.push(['HTML', () => sandboxedFrame(parts.html)]);
  if (parts.text !== null) panels.push(['Text', () => h('pre', { class: 'body-text', text: parts.text })]);
  panels.push(['Headers', () => h('table', { class: 'headers' }, h('tbody', {},
    parts.headers.map((header) => h('tr', {}, h('th', { text: header.name }), h('td', { text: header.value })))))]);
  const body = h('div', { class: 'tab-body' });
  const bar = h('div', { class: 'tabs', role: 'tablist' });
  const show = (index) => {
    [...bar.children].forEach((b, i) => b.setAttribute('aria-selected', String(i === index)));
    replace(body, panels[index][1]());
  };
  panels.forEach(([name], index) => bar.append(h('button', { type: 'button', role: 'tab', text: name, data: { tab: name.toLowerCase() }, on: { click: () => show(index) } })));
  show(0);
  return [bar, body];
}

function detailContent(ctx, id, parts, envelope) {
  return [
    h('div', { class: 'detail-head' },
      h('a', { class: 'back', href: '#/messages', text: '← Messages' }),
      h('h2', { class: 'subject', text: parts.subject ?? '(no subject)' }),
      h('button', { type: 'button', class: 'primary small', text: 'Download raw', on: { click: () => download(ctx, id) } })),
    h('dl', { class: 'facts' },
      h('dt', { text: 'From' }), h('dd', { text: parts.from ?? '—' }),
      h('dt', { text: 'To' }), h('dd', { text: parts.to ?? '—' }),
      h('dt', { text: 'Date' }), h('dd', { text: parts.date ?? '—' }),
      h('dt', { text: 'Envelope' }), h('dd', { text: `MAIL FROM:<${envelope.mail_from}> → ${envelope.recipients.map((r) => `<${r}>`).join(' ')}` }),
      h('dt', { text: 'Client' }), envelope.bounce
        ? h('dd', { text: 'failmail itself (a later notification, in no SMTP session)' })
        : h('dd', {}, `${envelope.peer}${envelope.helo ? ` (HELO ${envelope.helo})` : ''}${envelope.tls ? ', TLS' : ''} — `,
          h('a', { href: `#/sessions/${envelope.session}`, text: `session #${envelope.session}` })),
      h('dt', { text: 'Queue id' }), h('dd', { text: `${envelope.queue_id} · ${bytes(envelope.size)}` }),
      notification(envelope) ? [h('dt', { text: 'Notification' }), h('dd', { class: 'notification' },
        `${notification(envelope)} (${envelope.content_type}${envelope.report_type ? `; ${envelope.report_type}` : ''})`,
        envelope.bounce ? [' made by failmail: ', h('a', { href: `#/bounces/${envelope.bounce}`, text: `bounce #${envelope.bounce}` })] : ' sent by the client')] : null),
    parts.attachments.length ? h('div', { class: 'attachments' },
      h('h3', { text: `Attachments (${parts.attachments.length})` }),
      h('ul', {}, parts.attachments.map((a) => h('li', {},
        h('span', { class: 'file', text: a.filename ?? '(no name)' }),
        h('span', { class: 'muted', text: ` ${a.content_type} · ${bytes(a.size)}${a.inline ? ' · inline' : ''}` }))))) : null,
    ...tabs(parts)];
}

function mount(root, ctx, param) {
  let messages = [];
  let selected = param ? Number(param) : null;
  let lastId = 0;
  let loading = false;
  let again = false;
  let shown = null;

  const summary = h('span', { class: 'muted summary' });
  const list = new VirtualList({
    className: 'messages',
    create: createRow,
    render: (row, i) => fillRow(row, messages[messages.length - 1 - i], selected),
  });
  const header = h('div', { class: 'message-row head', 'aria-hidden': 'true' },
    ...['Received', 'Sender', 'Recipients', 'Subject', 'Size'].map((t) => h('span', { class: 'cell', text: t })));
  const empty = h('div', { class: 'empty' }, h('p', { text: 'No message captured yet.' }),
    h('p', { class: 'muted', text: 'Accepted messages appear here as they arrive.' }));
  const detail = h('section', { class: 'pane detail-pane' });
  const layout = h('div', { class: 'split' },
    h('section', { class: 'pane list-pane' }, h('div', { class: 'toolbar' }, summary), header, list.el, empty), detail);
  root.append(layout);

  async function load() {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    try {
      const page = await ctx.api.get(`/api/messages?since=${lastId}`);
      if (page.messages.length) {
        messages = messages.concat(page.messages);
        if (messages.length > 10_000) messages = messages.slice(-10_000);
        lastId = messages[messages.length - 1].id;
        list.setCount(messages.length);
      }
      summary.textContent = `${count(messages.length)} kept · ${count(page.accepted)} accepted since the start${page.dropped ? ` · ${count(page.dropped)} fell out of the ring` : ''}`;
      empty.hidden = messages.length > 0;
    } catch (error) {
      summary.textContent = error.message;
    } finally {
      loading = false;
      if (again) {
        again = false;
        setTimeout(load, 250);
      }
    }
  }

  async function drawDetail() {
    layout.classList.toggle('has-detail', selected !== null);
    if (selected === null) {
      replace(detail, h('div', { class: 'empty' }, h('p', { class: 'muted', text: 'Open a message to read it.' })));
      return;
    }
    const id = selected;
    if (shown === id) return;
    shown = id;
    replace(detail, h('p', { class: 'muted', text: 'Loading…' }));
    let parts;
    let envelope;
    try {
      [parts, envelope] = await Promise.all([ctx.api.get(`/api/messages/${id}/parts`), ctx.api.get(`/api/messages/${id}`)]);
    } catch (error) {
      if (selected === id) replace(detail, h('div', { class: 'empty' }, h('p', { text: error.message })));
      return;
    }
    if (selected !== id) return;
    replace(detail, ...detailContent(ctx, id, parts, envelope));
  }

  const refresh = frameThrottle(() => load());
  const stop = ctx.on('events', (events) => {
    if (events.some((e) => e.type === 'message')) refresh();
  });
  load().then(drawDetail);
  return {
    route(next) {
      selected = next ? Number(next) : null;
      if (selected === null) shown = null;
      list.invalidate();
      drawDetail();
    },
    unmount() {
      stop();
      list.destroy();
    },
  };
}

export default { id: 'messages', title: 'Messages', mount };
