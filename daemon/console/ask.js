// Ask: a chat over one chat model and the chosen vector stores, through POST /v1/responses with
// the file_search tool, streamed. Each file_citation annotation becomes a "file, page N" button
// that opens the preview of that page (preview.js). Follow-ups send previous_response_id, so the
// server keeps the conversation; "New conversation" forgets it. Answers are to rest on the
// sources, so they are sampled greedily (temperature 0) and capped at 512 tokens.

import { api, grants, stream } from './api.js';
import { $, h, fill } from './dom.js';
import { openPreview, closePreview } from './preview.js';

let session = null;
let previousId = null;
let controller = null;

export function init(s) {
  session = s;
  $('#ask-form').addEventListener('submit', (e) => {
    e.preventDefault();
    ask();
  });
  $('#ask-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      ask();
    }
  });
  $('#ask-new').addEventListener('click', () => {
    if (controller) controller.abort();
    previousId = null;
    fill($('#conversation'));
    closePreview();
    status('New conversation.');
    $('#ask-input').focus();
  });
  if (!grants(session.scope, 'infer')) {
    $('#ask-input').disabled = true;
    $('#ask-send').disabled = true;
    status(`A key of scope "${session.scope}" may not generate answers; asking needs an "infer" or "admin" key.`);
  }
}

export function show() {
  loadChoices();
}

function status(text) {
  $('#ask-status').textContent = text;
}

async function loadChoices() {
  try {
    const [models, stores] = await Promise.all([api('/v1/models'), api('/v1/vector_stores?limit=100&order=asc')]);
    const select = $('#ask-model');
    const chosen = select.value;
    const chat = models.data.filter((m) => !m.meta || m.meta.kind !== 'embedding');
    fill(select, chat.map((m) => h('option', { value: m.id, selected: m.id === chosen }, m.id)));
    if (chat.length === 0) status('No chat model is served, so questions cannot be answered.');
    const box = $('#ask-stores');
    const checked = new Set([...box.querySelectorAll('input:checked')].map((i) => i.value));
    const first = checked.size === 0 && !box.dataset.loaded;
    fill(box, h('legend', {}, 'Search in'));
    if (stores.data.length === 0) box.append(h('span', { class: 'muted' }, 'no vector stores yet (add files in Library)'));
    for (const store of stores.data) {
      const id = `ask-store-${store.id}`;
      const on = first ? store.file_counts && store.file_counts.completed > 0 : checked.has(store.id);
      box.append(h('label', { for: id }, h('input', { type: 'checkbox', id, value: store.id, checked: on }), ' ', store.name || store.id));
    }
    box.dataset.loaded = '1';
  } catch (e) {
    status(`Could not load models and stores: ${e.message}`);
  }
}

function turn(role) {
  const text = h('div', { class: 'text' });
  const li = h('li', { class: `turn ${role}`, 'data-state': role === 'user' ? 'done' : 'streaming' },
    h('div', { class: 'who-said' }, role === 'user' ? 'You' : 'hearth'), text);
  $('#conversation').append(li);
  return { li, text };
}

async function ask() {
  const input = $('#ask-input');
  const question = input.value.trim();
  if (!question) {
    status('Type a question first.');
    return;
  }
  if (controller) {
    status('Wait for the answer to finish (or start a new conversation).');
    return;
  }
  const model = $('#ask-model').value;
  if (!model) {
    status('No chat model to ask.');
    return;
  }
  const storeIds = [...document.querySelectorAll('#ask-stores input:checked')].map((i) => i.value);
  const body = { model, input: question, stream: true, temperature: 0, max_output_tokens: 512, include: ['file_search_call.results'] };
  if (storeIds.length) body.tools = [{ type: 'file_search', vector_store_ids: storeIds }];
  if (previousId) body.previous_response_id = previousId;

  turn('user').text.textContent = question;
  input.value = '';
  const answer = turn('assistant');
  const citations = h('ul', { class: 'citations', 'aria-label': 'Sources' });
  answer.li.append(citations);
  const seen = new Set();
  let results = [];
  let text = '';
  controller = new AbortController();
  $('#ask-send').disabled = true;
  status('Answering…');
  const fail = (message) => {
    answer.li.dataset.state = 'failed';
    answer.li.append(h('p', { class: 'error', role: 'alert' }, message));
    status('The answer failed.');
  };
  try {
    await stream('/v1/responses', body, ({ event, data }) => {
      if (event === 'response.output_text.delta') {
        text += data.delta;
        answer.text.textContent = text;
      } else if (event === 'response.output_item.done' && data.item && data.item.type === 'file_search_call') {
        results = data.item.results || [];
      } else if (event === 'response.output_text.annotation.added' && data.annotation.type === 'file_citation') {
        const a = data.annotation;
        const key = `${a.file_id}/${a.page}/${a.char_start}`;
        if (seen.has(key)) return;
        seen.add(key);
        const label = a.page ? `${a.filename}, page ${a.page}` : a.filename;
        citations.append(h('li', {}, h('button', {
          type: 'button', class: 'citation', title: `Show the cited passage of ${label}`,
          onclick: () => openPreview(a, storeIds, results),
        }, label)));
      } else if (event === 'response.completed') {
        previousId = data.response.id;
        answer.li.dataset.state = 'done';
        answer.li.dataset.responseId = data.response.id;
        const usage = data.response.usage;
        status(usage ? `Answered (${usage.input_tokens} tokens in, ${usage.output_tokens} out).` : 'Answered.');
      } else if (event === 'error' || event === 'response.failed') {
        if (answer.li.dataset.state !== 'failed') fail(data.message || (data.response && data.response.error && data.response.error.message) || 'hearth reported an error');
      }
    }, controller.signal);
    if (answer.li.dataset.state === 'streaming') fail('The stream ended before the answer was complete.');
  } catch (e) {
    fail(e.name === 'AbortError' ? 'Stopped.' : e.message);
  } finally {
    controller = null;
    $('#ask-send').disabled = false;
  }
}
