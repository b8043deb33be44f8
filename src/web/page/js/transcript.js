// One session's whole transcript, for the session that is open: the page's live stream carries
// only what the list needs (`brief`), so the transcript is read from the journal when the
// session is opened, then followed live on a stream of that session's events until it ends.
// Bounded: the first MAX_EVENTS events.

import * as api from './api.js';
import { openStream } from './sse.js';

export const MAX_EVENTS = 1_000;

/** The transcript of session `id`; `changed()` after each batch read. */
export class TranscriptFeed {
  constructor(id, changed) {
    this.id = id;
    this.events = [];
    // More events than the page keeps (the rest are left to the API).
    this.full = false;
    this.error = null;
    this.stream = null;
    this.closed = false;
    this.changed = changed;
    api.get(`/api/events?session=${id}&limit=${MAX_EVENTS}`)
      .then((page) => {
        if (this.closed) return;
        this.add(page.events);
        this.full = this.events.length >= MAX_EVENTS;
        if (!this.full && !this.ended()) this.follow();
        this.changed();
      })
      .catch((error) => {
        if (this.closed) return;
        this.error = error;
        this.changed();
      });
  }

  ended() {
    return this.events.some((e) => e.type === 'session_end');
  }

  add(events) {
    for (const event of events) {
      if (this.events.length >= MAX_EVENTS) {
        this.full = true;
        break;
      }
      // The live stream may repeat what the page already read: ids only increase.
      if (event.id > this.lastId()) this.events.push(event);
    }
  }

  follow() {
    this.stream = openStream(`/api/events/stream?session=${this.id}&since=${this.lastId()}`, {
      messages: (batch) => {
        const events = [];
        for (const { data } of batch) {
          try {
            events.push(JSON.parse(data));
          } catch {
            // A broken line is skipped, never shown.
          }
        }
        this.add(events);
        if (this.full || this.ended()) this.stream?.close();
        this.changed();
      },
      // The server restarted: this session was of its earlier run, and will have no more events.
      restarted: () => this.stream?.close(),
    }, { resume: true });
  }

  /** The id of the last event read (0 before any): where the stream and the API go on from. */
  lastId() {
    return this.events.length ? this.events[this.events.length - 1].id : 0;
  }

  close() {
    this.closed = true;
    this.stream?.close();
  }
}
