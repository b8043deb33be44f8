// Scenario: the live scenario's TOML, editable here, checked as you type (errors at their line
// and column, in place, without applying anything), applied with one click; and the history of
// loads and reloads.

import { h, replace, debounce } from '../dom.js';
import { dateTime } from '../format.js';

const EXAMPLE = `# The built-in scenario: no rule, magic addresses on.
# Write rules here, check them as you type, and apply.

[server]
flavor = "generic"

[[rule]]
name = "unknown mailbox"
rcpt = "*@gone.example"
reply = "user_unknown"
`;

/** The view's elements: the editor with its gutter, its status and buttons, and the side. */
function elements() {
  const el = {
    gutter: h('div', { class: 'gutter', 'aria-hidden': 'true' }),
    editor: h('textarea', { class: 'editor', spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off', wrap: 'off', 'aria-label': 'Scenario (TOML)' }),
    status: h('div', { class: 'check', role: 'status', 'aria-live': 'polite' }),
    apply: h('button', { type: 'button', class: 'primary', text: 'Apply', disabled: true }),
    revert: h('button', { type: 'button', text: 'Revert', disabled: true }),
    reloadFile: h('button', { type: 'button', text: 'Reload the file', hidden: true }),
    facts: h('dl', { class: 'facts' }),
    history: h('tbody', {}),
  };
  el.root = h('div', { class: 'scenario-layout' },
    h('section', { class: 'card editor-card' },
      h('div', { class: 'card-head' }, h('h2', { text: 'Live scenario' }), h('div', { class: 'actions' }, el.reloadFile, el.revert, el.apply)),
      h('div', { class: 'editor-box' }, el.gutter, el.editor),
      el.status,
      h('p', { class: 'muted small', text: 'Apply makes it live for new sessions (sessions in progress keep theirs). The file on disk is not changed: a later change of the file replaces it again.' })),
    h('aside', { class: 'side' },
      h('section', { class: 'card' }, h('h3', { text: 'Now live' }), el.facts),
      h('section', { class: 'card' }, h('h3', { text: 'Loads and reloads' }),
        h('table', { class: 'history' }, h('thead', {}, h('tr', {}, h('th', { text: 'When' }), h('th', { text: 'What' }), h('th', { text: 'Result' }))), el.history))));
  return el;
}

/** The scenario's facts and its load history. */
function showFacts(el, scenario) {
  replace(el.facts,
    h('dt', { text: 'Origin' }), h('dd', { text: scenario.origin }),
    h('dt', { text: 'File' }), h('dd', { text: scenario.file ?? 'none (built-in or sent through the API)' }),
    h('dt', { text: 'Rules' }), h('dd', { text: scenario.rules }),
    h('dt', { text: 'Flavor' }), h('dd', { text: scenario.flavor }));
  replace(el.history, scenario.reloads.map((r) => h('tr', { class: r.ok ? 'ok' : 'bad' },
    h('td', { text: dateTime(r.at_ms) }),
    h('td', { text: `${r.trigger}: ${r.origin}` }),
    h('td', { text: r.ok ? `live, ${r.rules} rule${r.rules === 1 ? '' : 's'}` : r.error }))));
  el.reloadFile.hidden = !scenario.file;
}

function mount(root, ctx) {
  let live = null;
  let check = null;
  let checking = 0;

  const el = elements();
  const { gutter, editor, status, apply, revert, reloadFile } = el;
  root.append(el.root);

  function drawGutter() {
    const lines = editor.value.split('\n').length;
    const bad = check && !check.valid ? check.error.line : 0;
    if (gutter.childElementCount !== lines || gutter.dataset.bad !== String(bad)) {
      replace(gutter, Array.from({ length: lines }, (_, i) => h('div', { class: i + 1 === bad ? 'bad' : '', text: i + 1 })));
      gutter.dataset.bad = String(bad);
    }
    gutter.scrollTop = editor.scrollTop;
  }

  function drawStatus() {
    const changed = live !== null && editor.value !== (live.source ?? '');
    apply.disabled = !changed || !check?.valid || checking > 0;
    revert.disabled = !changed;
    status.className = 'check';
    if (checking > 0 && !check) {
      status.textContent = 'Checking…';
      return;
    }
    if (!check) {
      replace(status);
      return;
    }
    if (check.valid) {
      status.classList.add('ok');
      status.dataset.valid = 'true';
      replace(status, h('span', { text: `Valid: ${check.rules} rule${check.rules === 1 ? '' : 's'}, flavor ${check.flavor}.${changed ? ' Not applied yet.' : ''}` }));
    } else {
      const e = check.error;
      status.classList.add('bad');
      status.dataset.valid = 'false';
      replace(status,
        h('button', { type: 'button', class: 'link-button where', text: `line ${e.line}, column ${e.column}`, on: { click: () => goTo(e.line, e.column) } }),
        h('span', { class: 'message', text: `: ${e.message}` }),
        e.hint ? h('div', { class: 'hint', text: e.hint }) : null);
    }
    drawGutter();
  }

  function goTo(line, column) {
    const lines = editor.value.split('\n');
    let at = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i += 1) at += lines[i].length + 1;
    at += Math.max(0, column - 1);
    editor.focus();
    editor.setSelectionRange(at, at);
  }

  const runCheck = debounce(async () => {
    const text = editor.value;
    checking += 1;
    try {
      const answer = await ctx.api.post('/api/scenario/check', { toml: text });
      if (editor.value === text) check = answer;
    } catch (error) {
      check = { valid: false, error: { line: 0, column: 0, message: error.message, hint: error.body?.hint } };
    } finally {
      checking -= 1;
      drawStatus();
    }
  }, 250);

  function showLive(scenario) {
    live = scenario;
    showFacts(el, scenario);
  }

  async function loadLive(replaceText) {
    try {
      const scenario = await ctx.api.get('/api/scenario');
      showLive(scenario);
      if (replaceText) {
        editor.value = scenario.source ?? EXAMPLE;
        if (scenario.source === null) live = { ...scenario, source: '' };
        check = null;
        runCheck();
      }
    } catch (error) {
      replace(status, h('span', { class: 'error-text', text: error.message }));
    }
    drawStatus();
  }

  apply.addEventListener('click', async () => {
    apply.disabled = true;
    try {
      const scenario = await ctx.api.put('/api/scenario', { toml: editor.value });
      showLive({ ...scenario, source: editor.value });
      status.dataset.applied = 'true';
      await loadLive(false);
      live = { ...live, source: editor.value };
      replace(status, h('span', { text: `Applied: ${scenario.rules} rule${scenario.rules === 1 ? '' : 's'} live for new sessions.` }));
      status.className = 'check ok applied';
    } catch (error) {
      check = { valid: false, error: { line: error.body?.line ?? 0, column: error.body?.column ?? 0, message: error.message, hint: error.body?.hint } };
      drawStatus();
    }
  });
  revert.addEventListener('click', () => loadLive(true));
  reloadFile.addEventListener('click', async () => {
    try {
      await ctx.api.post('/api/scenario/reload');
      await loadLive(true);
    } catch (error) {
      await loadLive(false);
      replace(status, h('span', { class: 'error-text', text: error.message }));
    }
  });
  editor.addEventListener('input', () => {
    drawGutter();
    drawStatus();
    runCheck();
  });
  editor.addEventListener('scroll', () => { gutter.scrollTop = editor.scrollTop; });
  editor.addEventListener('keydown', (event) => {
    if (event.key === 'Tab') {
      event.preventDefault();
      editor.setRangeText('  ', editor.selectionStart, editor.selectionEnd, 'end');
      editor.dispatchEvent(new Event('input'));
    }
  });
  loadLive(true);
  return { unmount() { runCheck.cancel(); } };
}

export default { id: 'scenario', title: 'Scenario', mount };
