// The sessions the page knows of, built from the journal's events as they stream in (the
// `brief` stream: no protocol-only commands and replies): who connected, what they said, and
// the reply that decided each session's outcome. Bounded: the newest MAX_SESSIONS sessions,
// each with at most MAX_IDS message ids and recipients, each recipient once (counts go on).

import { hostOf } from './format.js';

export const MAX_SESSIONS = 20_000;
export const MAX_IDS = 1_000;

/** The address of `MAIL FROM:<a@b> SIZE=…` or `RCPT TO:<"x>y"@b>` (quotes respected). */
const address = (line) => {
  const colon = line.indexOf(':');
  const rest = colon >= 0 ? line.slice(colon + 1).trimStart() : '';
  if (!rest.startsWith('<')) return rest.split(/\s+/)[0] ?? '';
  let quoted = false;
  for (let i = 1; i < rest.length; i += 1) {
    const c = rest[i];
    if (c === '\\' && quoted) i += 1;
    else if (c === '"') quoted = !quoted;
    else if (c === '>' && !quoted) return rest.slice(1, i);
  }
  return rest.slice(1);
};

/** One SMTP session as the page shows it. */
class Session {
  constructor(id) {
    this.id = id;
    this.startMs = null;
    this.endMs = null;
    this.peer = '';
    this.ip = '';
    this.tls = false;
    this.helo = null;
    this.auth = null;
    this.from = null;
    this.rcpts = [];
    this.rcptSet = new Set();
    this.messages = 0;
    this.messageIds = [];
    this.ended = false;
    // The outcome: a policy's refusal first, else the 250 of an accepted message, else any
    // other failure.
    this.decidedFailure = null;
    this.accepted = null;
    this.otherFailure = null;
    this.awaitingAccept = false;
    this.rules = [];
    this.search = '';
  }

  get outcome() {
    return this.decidedFailure ?? this.accepted ?? this.otherFailure;
  }

  apply(event) {
    if (this.startMs === null) this.startMs = event.at_ms;
    switch (event.type) {
      case 'session_start':
        this.peer = event.peer;
        this.ip = hostOf(event.peer);
        this.tls = event.tls;
        this.startMs = event.at_ms;
        break;
      case 'command': {
        const line = event.line;
        const verb = line.split(' ', 1)[0].toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') this.helo = line.slice(5).trim();
        else if (verb === 'MAIL') {
          this.from = address(line);
          this.awaitingAccept = false;
        } else if (verb === 'RCPT') this.addRcpt(address(line));
        break;
      }
      case 'reply':
        this.reply(event);
        break;
      case 'silent':
        if (event.rule_name || event.rule_at) this.rules.push(`${event.rule_name ?? ''} ${event.rule_at ?? ''}`);
        break;
      case 'tls_started':
        this.tls = true;
        break;
      case 'message':
        // Recorded once the message is stored, just before its 250: the accept until that
        // reply itself is read (the brief stream leaves it out).
        // A brief stream writes a run of a session's messages as the last, `merged` with how
        // many they were and every recipient they named.
        this.messages += event.merged?.messages ?? 1;
        if (this.messageIds.length < MAX_IDS) this.messageIds.push(event.message_id);
        // Its envelope: the brief stream leaves out the MAIL and RCPT commands it names.
        if (event.from !== undefined) this.from = event.from;
        for (const rcpt of event.merged?.rcpts ?? event.rcpts ?? []) this.addRcpt(rcpt);
        this.accepted = { id: event.id, type: 'message', code: 250, status: null, queue_id: event.queue_id };
        this.awaitingAccept = true;
        break;
      case 'session_end':
        this.ended = true;
        this.endMs = event.at_ms;
        this.tls = event.tls;
        this.auth = event.auth_user;
        break;
      default:
        break;
    }
  }

  /** Adds a recipient once (a session sending many messages to one address lists it once). */
  addRcpt(rcpt) {
    if (this.rcptSet.has(rcpt) || this.rcpts.length >= MAX_IDS) return;
    this.rcptSet.add(rcpt);
    this.rcpts.push(rcpt);
  }

  reply(event) {
    if (event.rule_name || event.rule_at) this.rules.push(`${event.rule_name ?? ''} ${event.rule_at ?? ''}`);
    if (event.code >= 400) {
      if (event.phase) this.decidedFailure = event;
      else if (event.code !== 421 || !this.otherFailure) this.otherFailure = event;
    } else if (this.awaitingAccept && event.code < 300) {
      this.accepted = event;
      this.awaitingAccept = false;
    }
  }
}

/** Every session the page knows of, oldest first (views show them newest first). */
export class SessionsModel {
  constructor() {
    this.byId = new Map();
    this.list = [];
    this.forgotten = 0;
    this.version = 0;
  }

  /** Applies a batch of events (any order; a session's own events come in order). */
  applyAll(events) {
    for (const event of events) {
      // Session 0 is no SMTP session: the notifications failmail sends later are recorded there.
      if (!event.session) continue;
      let session = this.byId.get(event.session);
      if (!session) {
        session = new Session(event.session);
        this.byId.set(event.session, session);
        this.insert(session);
      }
      session.apply(event);
    }
    while (this.list.length > MAX_SESSIONS) {
      const old = this.list.shift();
      this.byId.delete(old.id);
      this.forgotten += 1;
    }
    this.version += 1;
  }

  insert(session) {
    const list = this.list;
    let i = list.length;
    while (i > 0 && list[i - 1].id > session.id) i -= 1;
    if (i === list.length) list.push(session);
    else list.splice(i, 0, session);
  }

  get(id) {
    return this.byId.get(id);
  }

  /** Forgets everything (after POST /api/reset). */
  clear() {
    this.byId.clear();
    this.list = [];
    this.version += 1;
  }
}

/** Whether `session` passes `filter` ({rcpt, sender, klass, rule}; empty fields pass). */
export function matches(session, filter) {
  const has = (value, needle) => (value ?? '').toLowerCase().includes(needle);
  if (filter.rcpt && !session.rcpts.some((r) => has(r, filter.rcpt))) return false;
  if (filter.sender && !has(session.from, filter.sender)) return false;
  if (filter.klass) {
    const code = session.outcome?.code;
    if (!code || String(Math.floor(code / 100)) !== filter.klass) return false;
  }
  if (filter.rule && !session.rules.some((r) => has(r, filter.rule))) return false;
  return true;
}
