// The /v1 API as the page uses it: Bearer auth from local storage, problem+json errors, and
// Server-Sent Events read through fetch (EventSource cannot send an Authorization header).

const KEY_STORAGE = 'lrrt.apiKey';

/** An API error: the RFC 9457 problem the server sent (or one made up for a network failure). */
export class ApiError extends Error {
  constructor(problem, status) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.problem = problem;
    this.status = status;
  }
}

export function apiKey() {
  try { return localStorage.getItem(KEY_STORAGE) || ''; } catch { return ''; }
}

export function setApiKey(key) {
  localStorage.setItem(KEY_STORAGE, key.trim());
  keyListeners.forEach((fn) => fn(apiKey()));
}

export function forgetApiKey() {
  localStorage.removeItem(KEY_STORAGE);
  keyListeners.forEach((fn) => fn(''));
}

const keyListeners = new Set();
export function onKeyChange(fn) { keyListeners.add(fn); }

// One prompt at a time, shared by every request that got a 401 meanwhile.
let askForKey = async () => { throw new ApiError({title: 'API key required', status: 401}, 401); };
let pendingPrompt = null;
export function setKeyPrompt(fn) { askForKey = fn; }

function promptForKey(reason) {
  pendingPrompt ??= askForKey(reason).finally(() => { pendingPrompt = null; });
  return pendingPrompt;
}

function authHeaders(headers = {}) {
  const key = apiKey();
  return key ? {...headers, Authorization: `Bearer ${key}`} : headers;
}

/**
 * fetch() with the API key; a 401 asks for a key (once, shared) and retries.
 * Returns the Response when ok (or 304); throws ApiError otherwise.
 */
export async function send(path, {method = 'GET', json, body, headers = {}, signal} = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const init = {method, headers: authHeaders({Accept: 'application/json', ...headers}), signal, body};
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      throw new ApiError({title: 'The server could not be reached', detail: String(err.message || err)}, 0);
    }
    if (response.status === 401 && attempt < 5) {
      const hadKey = Boolean(apiKey());
      await promptForKey(hadKey ? 'The saved API key was not accepted. Enter a valid key.' : null);
      continue;
    }
    if (response.ok || response.status === 304) return response;
    throw new ApiError(await readProblem(response), response.status);
  }
}

/** GET/POST returning parsed JSON (null for 204). */
export async function api(path, options) {
  const response = await send(path, options);
  if (response.status === 204 || response.status === 304) return null;
  return response.json();
}

async function readProblem(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body === 'object') return {status: response.status, ...body};
  } catch { /* not JSON */ }
  return {status: response.status, title: response.statusText || `HTTP ${response.status}`, detail: text.slice(0, 300)};
}

/**
 * Field-level errors of a problem as [{path: 'sweep.start_lr', message}], whatever shape `errors`
 * takes: pydantic-style `loc` arrays, dotted `field`/`path` strings or JSON pointers.
 */
export function fieldErrors(problem) {
  const raw = problem?.errors;
  if (!raw) return [];
  const list = Array.isArray(raw)
    ? raw
    : Object.entries(raw).map(([field, message]) => ({field, message: [message].flat().join('; ')}));
  return list.map((error) => {
    if (typeof error === 'string') return {path: '', message: error};
    let parts;
    if (Array.isArray(error.loc)) parts = error.loc.map(String);
    else {
      const where = String(error.field ?? error.path ?? error.pointer ?? error.name ?? '');
      parts = where.replace(/^#?\//, '').split(where.includes('/') ? '/' : '.').filter(Boolean);
    }
    if (parts[0] === 'body') parts = parts.slice(1);
    const message = String(error.msg ?? error.message ?? error.detail ?? error.title ?? 'invalid value')
      .replace(/^Value error, /, '');
    return {path: parts.join('.'), message};
  });
}

/**
 * Read a Server-Sent Events stream with the API key. Calls onEvent({id, event, data}) per event
 * (data parsed as JSON when it is JSON). Reconnects with Last-Event-ID after a drop; gives up and
 * calls onGiveUp(error) after `maxFailures` consecutive failures. Returns {close()}.
 */
export function openEvents(path, {onEvent, onGiveUp, maxFailures = 3}) {
  const controller = new AbortController();
  let lastId = null;
  let failures = 0;
  let closed = false;

  async function run() {
    while (!closed) {
      try {
        const headers = {Accept: 'text/event-stream'};
        if (lastId) headers['Last-Event-ID'] = lastId;
        const response = await send(path, {headers, signal: controller.signal});
        if (!response.body) throw new Error('no response body');
        failures = 0;
        await readStream(response.body, (event) => {
          if (event.id) lastId = event.id;
          onEvent(event);
        });
        if (closed) return;
      } catch (err) {
        if (closed || err.name === 'AbortError') return;
        failures += 1;
        if (failures >= maxFailures || (err instanceof ApiError && err.status >= 400 && err.status < 500)) {
          onGiveUp?.(err);
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** failures));
    }
  }
  run();
  return {close() { closed = true; controller.abort(); }};
}

async function readStream(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = {data: []};
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let newline;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
      if (line === '') {
        if (event.data.length) {
          const text = event.data.join('\n');
          let data = text;
          try { data = JSON.parse(text); } catch { /* plain text */ }
          dispatch({id: event.id, event: event.event || 'message', data});
        }
        event = {data: []};
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') event.data.push(val);
      else if (field === 'event') event.event = val;
      else if (field === 'id') event.id = val;
    }
  }
}

/** An Idempotency-Key for one form submission; crypto.randomUUID needs a secure context. */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
