// A list that renders only the rows in view (plus a few), so that tens of thousands of rows
// scroll smoothly. Rows have one fixed height, read from the CSS variable --row-height of the
// list (it may change with the screen width).

import { h, frameThrottle } from './dom.js';

export class VirtualList {
  /**
   * `create()` makes an empty row element; `render(row, index)` fills it for item `index`.
   */
  constructor({ className, create, render }) {
    this.create = create;
    this.render = render;
    this.count = 0;
    this.rows = new Map();
    this.spacer = h('div', { class: 'vlist-spacer' });
    this.el = h('div', { class: `vlist ${className ?? ''}`, role: 'list', tabindex: '0' }, this.spacer);
    this.rowHeight = 40;
    this.schedule = frameThrottle(() => this.draw());
    this.el.addEventListener('scroll', this.schedule, { passive: true });
    this.resize = new ResizeObserver(() => {
      this.measure();
      this.schedule();
    });
    this.resize.observe(this.el);
  }

  measure() {
    const value = parseFloat(getComputedStyle(this.el).getPropertyValue('--row-height'));
    if (value > 0 && value !== this.rowHeight) {
      this.rowHeight = value;
      this.invalidate();
    }
  }

  /** Sets the number of items and redraws every visible row. */
  setCount(count) {
    this.count = count;
    this.invalidate();
  }

  /** Redraws every visible row (their items changed). */
  invalidate() {
    for (const row of this.rows.values()) row.dataset.drawn = '';
    this.schedule();
  }

  draw() {
    this.spacer.style.height = `${this.count * this.rowHeight}px`;
    const top = this.el.scrollTop;
    const height = this.el.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - 5);
    const last = Math.min(this.count, Math.ceil((top + height) / this.rowHeight) + 5);
    for (const [index, row] of this.rows) {
      if (index < first || index >= last) {
        row.remove();
        this.rows.delete(index);
      }
    }
    for (let index = first; index < last; index += 1) {
      let row = this.rows.get(index);
      if (!row) {
        row = this.create();
        row.classList.add('vlist-row');
        row.style.transform = `translateY(${index * this.rowHeight}px)`;
        this.rows.set(index, row);
        this.el.append(row);
      } else if (row.dataset.drawn === '1') {
        continue;
      }
      row.style.transform = `translateY(${index * this.rowHeight}px)`;
      this.render(row, index);
      row.dataset.drawn = '1';
    }
  }

  destroy() {
    this.resize.disconnect();
  }
}
