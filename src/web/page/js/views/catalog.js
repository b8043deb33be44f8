// Catalog: every failure failmail can answer with, in each flavor that has wording of its own,
// with its text and public source, the magic address that triggers it and the swaks line that
// sends to it.

import { h, replace, copyButton, debounce } from '../dom.js';
import { codeClass } from '../format.js';

function magicAddress(entry, variant) {
  return `${entry.name}+${variant.flavor}@example.test`;
}

function swaksLine(address, smtp) {
  const server = smtp ?? '127.0.0.1:1025';
  return `swaks --server ${server} --to ${address}`;
}

function source(text) {
  const url = /https?:\/\/\S+/.exec(text)?.[0]?.replace(/[).,;]+$/, '');
  if (!url) return h('span', { text });
  const at = text.indexOf(url);
  return h('span', {}, text.slice(0, at), h('a', { href: url, rel: 'noreferrer noopener', target: '_blank', text: url }), text.slice(at + url.length));
}

function variantRow(entry, variant, smtp) {
  const address = magicAddress(entry, variant);
  const swaks = swaksLine(address, smtp);
  return h('div', { class: 'variant', data: { flavor: variant.flavor, name: entry.name } },
    h('div', { class: 'variant-head' },
      h('span', { class: 'flavor', text: variant.flavor }),
      h('span', { class: `badge ${codeClass(variant.code)}`, text: `${variant.code} ${variant.status}` })),
    h('pre', { class: 'reply-text', text: variant.text.join('\n') }),
    h('div', { class: 'source muted' }, h('span', { class: 'chip-label', text: 'source' }), source(variant.source)),
    variant.note ? h('div', { class: 'note muted', text: variant.note }) : null,
    h('div', { class: 'try' },
      h('code', { class: 'magic', text: address }), copyButton(address, 'Copy address'),
      h('code', { class: 'swaks', text: swaks }), copyButton(swaks, 'Copy swaks')));
}

function mount(root, ctx) {
  let entries = [];
  const query = h('input', { type: 'search', placeholder: 'user_unknown, 5.7.1, quota, gmail…', 'aria-label': 'Filter' });
  const flavor = h('select', { 'aria-label': 'Flavor' }, h('option', { value: '', text: 'every flavor' }));
  const phase = h('select', { 'aria-label': 'Phase' }, h('option', { value: '', text: 'every phase' }));
  const summary = h('span', { class: 'muted summary' });
  const list = h('div', { class: 'catalog' });
  root.append(h('div', { class: 'page-narrow' },
    h('div', { class: 'toolbar' }, h('label', { class: 'field grow' }, h('span', { text: 'Filter' }), query),
      h('label', { class: 'field' }, h('span', { text: 'Flavor' }), flavor),
      h('label', { class: 'field' }, h('span', { text: 'Phase' }), phase), summary),
    h('p', { class: 'muted intro', text: 'Send to a magic address and failmail answers with that failure, in that flavor\'s wording, at the phase where it naturally happens. Placeholders such as {rcpt} are filled in.' }),
    list));

  function draw() {
    const words = query.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    const cards = [];
    for (const entry of entries) {
      if (phase.value && entry.phase !== phase.value) continue;
      const variants = entry.variants.filter((v) => {
        if (flavor.value && v.flavor !== flavor.value) return false;
        const haystack = `${entry.name} ${entry.summary} ${entry.phase} ${v.flavor} ${v.code} ${v.status} ${v.text.join(' ')} ${v.source}`.toLowerCase();
        return words.every((w) => haystack.includes(w));
      });
      if (!variants.length) continue;
      shown += variants.length;
      cards.push(h('section', { class: 'card entry', data: { entry: entry.name } },
        h('div', { class: 'entry-head' }, h('h3', { text: entry.name }), h('span', { class: 'tag', text: entry.phase })),
        h('p', { class: 'muted', text: entry.summary }),
        variants.map((v) => variantRow(entry, v, ctx.info?.smtp))));
    }
    const total = entries.reduce((n, e) => n + e.variants.length, 0);
    summary.textContent = `${shown} of ${total} replies`;
    replace(list, cards.length ? cards : h('p', { class: 'empty muted', text: 'Nothing matches.' }));
  }

  ctx.api.get('/api/catalog').then((catalog) => {
    entries = catalog.entries;
    const flavors = [...new Set(entries.flatMap((e) => e.variants.map((v) => v.flavor)))];
    const phases = [...new Set(entries.map((e) => e.phase))];
    flavors.forEach((f) => flavor.append(h('option', { value: f, text: f })));
    phases.forEach((p) => phase.append(h('option', { value: p, text: p })));
    draw();
  }).catch((error) => replace(list, h('p', { class: 'error-text', text: error.message })));
  const redraw = debounce(draw, 100);
  query.addEventListener('input', redraw);
  flavor.addEventListener('change', draw);
  phase.addEventListener('change', draw);
  return {};
}

export default { id: 'catalog', title: 'Catalog', mount };
