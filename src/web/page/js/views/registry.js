// The page's views, in the order of the navigation bar. A view is one module whose default
// export is {id, title, mount(root, ctx, param)}; mount returns {route?(param), unmount?()}.
// Adding a view is adding its module and listing it here (and its file in src/web/assets.rs,
// which a test checks): the router, the navigation bar and the live data (ctx) come with it.

import sessions from './sessions.js';
import messages from './messages.js';
import bounces from './bounces.js';
import report from './report.js';
import limits from './limits.js';
import catalog from './catalog.js';
import scenario from './scenario.js';
import clock from './clock.js';

export const VIEWS = [
  sessions,
  messages,
  bounces,
  report,
  limits,
  catalog,
  scenario,
  clock,
];
