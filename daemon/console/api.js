// Every call to hearth's public API, with the user's key as a bearer token. The key lives in
// sessionStorage: it is gone when the tab closes and never reaches the page's markup or the URL.
// Streams are read with fetch and a reader (EventSource cannot send an Authorization header).

const KEY = 'hearth.console.key';

export function getKey() {
  return sessionStorage.getItem(KEY) || '';
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** An answer other than 2xx, with hearth's error message and code. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code || '';
  }
}

function headers() {
  const h = new Headers();
  const key = getKey();
  if (key) h.set('Authorization', `Bearer ${key}`);
  return h;
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = '';
  try {
    const body = await response.json();
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || '';
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message, code);
}

async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `hearth did not answer (${e.message}); is it still running?`, 'network');
  }
}

/** Call the API: `json` is sent as a JSON body, `body` as is (a FormData upload). */
export async function api(path, { method = 'GET', json, body, signal } = {}) {
  const init = { method, headers: headers(), signal, cache: 'no-store' };
  if (json !== undefined) {
    init.headers.set('Content-Type', 'application/json');
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await send(path, init);
  if (!response.ok) throw await errorOf(response);
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

/** One server-sent event block (`event:` and `data:` lines); null for a comment (keep-alive). */
export function parseEvent(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return null;
  const text = data.join('\n');
  try {
    return { event, data: JSON.parse(text) };
  } catch {
    return { event, data: text };
  }
}

/** POST `json` to a streaming route and call `onEvent` for each event as it arrives. */
export async function stream(path, json, onEvent, signal) {
  const h = headers();
  h.set('Content-Type', 'application/json');
  h.set('Accept', 'text/event-stream');
  const response = await send(path, { method: 'POST', headers: h, body: JSON.stringify(json), signal, cache: 'no-store' });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r/g, '');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) onEvent(event);
    }
  }
  const last = parseEvent(buffer);
  if (last) onEvent(last);
}

/** What a key of `scope` may do (`admin` grants all; `ingest` and `infer` grant `read`). */
export function grants(scope, needed) {
  return scope === 'admin' || scope === needed || needed === 'read';
}
