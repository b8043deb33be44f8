// A reader of server-sent events over fetch (so that it can send the API token as a header),
// which reconnects by itself and, for the event stream, resumes after the last event it read,
// or from the start when the server was restarted meanwhile (its ids started over).

import { authHeaders } from './api.js';

/**
 * Opens `path` as an event stream. `handlers`: `messages(batch)` with `[{id, data}]` for each
 * chunk read; `comment(text)` for `: …` lines (the server's lag notices); `state(name)` with
 * `connecting`, `live`, `retrying`, `closed`; `refused(status, error)` when the server answers
 * an error (the reader stops: 401 needs a token, 409 means there is nothing to stream).
 * `resume`: reconnect with `?since=<last id>`; when the stream names another journal run than
 * before (`: journal <run>`, its first line: the server was restarted), `restarted()` is called
 * and the stream is read again from the path's own `since`. Returns `{close()}`.
 */
export function openStream(path, handlers, { resume = false } = {}) {
  let closed = false;
  let controller = null;
  let lastId = null;
  // The journal run the stream named (`: journal <run>`), and whether it changed.
  let run = null;
  let startedOver = false;

  // Resuming replaces the path's own `since` (a query naming it twice is refused).
  const url = () => {
    if (!resume || lastId === null) return path;
    const [base, query = ''] = path.split('?');
    const params = new URLSearchParams(query);
    params.set('since', lastId);
    return `${base}?${params}`;
  };

  const dispatch = (block, batch) => {
    let data = null;
    let id = null;
    for (const line of block.split('\n')) {
      if (line.startsWith(': journal ')) {
        const named = line.slice(10).trim();
        if (run !== null && named !== run) startedOver = true;
        run = named;
      } else if (line.startsWith(':')) handlers.comment?.(line.slice(1).trim());
      else if (line.startsWith('data:')) data = (data === null ? '' : `${data}\n`) + line.slice(5).replace(/^ /, '');
      else if (line.startsWith('id:')) id = line.slice(3).trim();
    }
    if (data !== null) {
      if (id !== null) lastId = id;
      batch.push({ id, data });
    }
  };

  const read = async () => {
    controller = new AbortController();
    handlers.state?.('connecting');
    const response = await fetch(url(), {
      headers: authHeaders({ Accept: 'text/event-stream' }),
      cache: 'no-store',
      signal: controller.signal,
    });
    if (!response.ok) {
      const error = await response.json().catch(() => null);
      handlers.refused?.(response.status, error);
      return false;
    }
    handlers.state?.('live');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buffer += value.replaceAll('\r\n', '\n');
      const batch = [];
      let start = 0;
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n', start)) {
        dispatch(buffer.slice(start, end), batch);
        start = end + 2;
      }
      buffer = buffer.slice(start);
      if (startedOver) {
        // The ids read so far were another run's: read this one's from the start.
        startedOver = false;
        lastId = null;
        handlers.restarted?.();
        controller.abort();
        return 'again';
      }
      if (batch.length) handlers.messages(batch);
    }
  };

  (async () => {
    let delay = 500;
    while (!closed) {
      try {
        const goOn = await read();
        if (!goOn) break;
        delay = 500;
        if (goOn === 'again') continue;
      } catch {
        // The connection broke (server restarted, network): try again below.
      }
      if (closed) break;
      handlers.state?.('retrying');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10_000);
    }
    handlers.state?.('closed');
  })();

  return {
    close() {
      closed = true;
      controller?.abort();
    },
  };
}
