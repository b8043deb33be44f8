// Calls to failmail's HTTP API, with the token when the server asks for one. The token is kept
// for this tab only (sessionStorage), never in the URL: the event streams are read with fetch,
// which can send it as a header, where EventSource cannot.

const TOKEN_KEY = 'failmail-token';

/** An API answer that was not a success: its status and the server's JSON error, if any. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error ?? `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

let unauthorized = () => {};

/** What to do when the server refuses the token (the page asks for it again). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** The headers every request carries: the token, when there is one. */
export function authHeaders(extra = {}) {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

/**
 * Calls the API. `options`: `json` (a body sent as JSON), `toml` (a body sent as
 * application/toml), `as` ('json' by default, 'text', 'blob', or 'none').
 */
export async function call(method, path, options = {}) {
  const headers = authHeaders();
  let body;
  if (options.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(options.json);
  } else if (options.toml !== undefined) {
    headers['Content-Type'] = 'application/toml';
    body = options.toml;
  }
  const response = await fetch(path, { method, headers, body, cache: 'no-store', signal: options.signal });
  if (!response.ok) {
    const error = await response.json().catch(() => null);
    if (response.status === 401) unauthorized(error);
    throw new ApiError(response.status, error);
  }
  const as = options.as ?? 'json';
  if (as === 'none' || response.status === 204) return null;
  if (as === 'text') return response.text();
  if (as === 'blob') return response.blob();
  return response.json();
}

export const get = (path, options) => call('GET', path, options);
export const post = (path, options) => call('POST', path, options);
export const put = (path, options) => call('PUT', path, options);
