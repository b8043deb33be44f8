// Keeping a view's server data fresh without polling: it is read once, then again only when
// something says it changed (an event on the stream, the clock moved, a due time passed), at
// most once per gap however often that is said. An idle server costs the page nothing.

/**
 * `load()` reads the data and draws it (it shows its own errors). Returns:
 * - `now()`: loads at once;
 * - `ask()`: loads again soon: at once when the last load started a gap ago, else when the gap
 *   is over (any number of asks in between make one load); an ask during a load makes one more
 *   after it. The gap is `gap` ms, or twice the last load's duration when that is longer, so that
 *   a large answer is not read back to back;
 * - `at(ms)`: asks once `ms` from now (one timer, replaced by the next call; `Infinity` clears
 *   it): for the next due time or deadline of what is shown;
 * - `stop()`: no more loads (the view is gone).
 */
export function refetcher(load, { gap = 1000 } = {}) {
  let running = false;
  let again = false;
  let stopped = false;
  let started = -Infinity;
  let took = 0;
  let timer = null;
  let wake = null;

  async function run() {
    clearTimeout(timer);
    timer = null;
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    started = performance.now();
    try {
      await load();
    } catch {
      // load shows its own errors; the next ask tries again.
    } finally {
      took = performance.now() - started;
      running = false;
      if (again && !stopped) {
        again = false;
        ask();
      }
    }
  }

  function ask() {
    if (stopped || timer !== null) return;
    if (running) {
      again = true;
      return;
    }
    const wait = Math.max(gap, 2 * took) - (performance.now() - started);
    if (wait <= 0) run();
    else timer = setTimeout(run, wait);
  }

  return {
    now: run,
    ask,
    at(ms) {
      clearTimeout(wake);
      wake = Number.isFinite(ms) ? setTimeout(ask, Math.min(Math.max(0, ms), 2 ** 31 - 1)) : null;
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(wake);
    },
  };
}
