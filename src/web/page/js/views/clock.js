// Clock: the server's clock, which limits, greylisting and sequences read, and buttons that move
// it forward instead of waiting.

import { h, replace } from '../dom.js';
import { duration, parseDuration } from '../format.js';

function mount(root, ctx) {
  const now = h('div', { class: 'clock-now', 'aria-live': 'off' });
  const offset = h('div', { class: 'clock-offset' });
  const message = h('p', { class: 'muted', role: 'status' });
  const custom = h('input', { type: 'text', placeholder: '90m, 2h, 3d, 45s', 'aria-label': 'How far', size: 12 });

  const show = (clock) => {
    offset.textContent = clock.offset_seconds ? `moved forward by ${duration(clock.offset_seconds)} (${clock.offset_seconds} s)` : 'not moved: the real time';
    offset.dataset.offset = clock.offset_seconds;
  };
  const tick = () => {
    now.textContent = new Date(ctx.serverNow()).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  };

  async function advance(seconds) {
    try {
      await ctx.api.post('/api/clock/advance', { json: { seconds } });
      const clock = await ctx.refreshClock();
      message.textContent = `Moved forward by ${duration(seconds)}.`;
      show(clock);
      tick();
    } catch (error) {
      message.textContent = error.body?.hint ? `${error.message} — ${error.body.hint}` : error.message;
    }
  }

  const button = (label, seconds) => h('button', { type: 'button', class: 'primary', data: { seconds }, text: label, on: { click: () => advance(seconds) } });
  const customForm = h('form', { class: 'custom', on: {
    submit(event) {
      event.preventDefault();
      const seconds = parseDuration(custom.value);
      if (seconds === null || seconds <= 0) {
        message.textContent = 'Write a duration: a number with s, m, h or d (90m, 2h, 3d).';
        return;
      }
      advance(seconds);
    },
  } }, custom, h('button', { type: 'submit', text: 'Advance' }));

  root.append(h('div', { class: 'page-narrow' }, h('section', { class: 'card clock-card' },
    h('h2', { text: 'Server clock' }),
    now, offset,
    h('div', { class: 'clock-buttons' }, button('+1 min', 60), button('+1 h', 3600), button('+1 day', 86400), customForm),
    message,
    h('p', { class: 'muted', text: 'Limits, greylisting and sequences read this clock, and every event is stamped with it: moving it forward makes an hour-long window pass at once. It never moves back; restarting failmail starts it from the real time again.' }))));

  ctx.refreshClock().then(show).catch((error) => replace(offset, error.message));
  const timer = setInterval(tick, 250);
  tick();
  const stop = ctx.on('clock', show);
  return { unmount() { clearInterval(timer); stop(); } };
}

export default { id: 'clock', title: 'Clock', mount };
