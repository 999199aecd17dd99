// Library: the vector stores and the files of the selected one (status, progress, failures and
// their reasons, pages, chunks), uploads by drag-and-drop or the file picker (POST /v1/files, then
// POST /v1/vector_stores/{id}/files), removal, and the watched folders with the latest files of
// the store each feeds. Refreshed every 1.5 s while a file is in progress, every 10 s otherwise,
// only while the tab is shown. Buttons a key's scope does not grant are disabled, with the reason.

import { api, grants } from './api.js';
import { $, h, fill, bytes, count, when } from './dom.js';

let session = null;
let selected = null;
let timer = null;
let visible = false;
const pages = new Map(); // file id -> page count (or '–'), for completed files

export function init(s) {
  session = s;
  const canIngest = grants(s.scope, 'ingest');
  $('#store-form').addEventListener('submit', (e) => {
    e.preventDefault();
    createStore();
  });
  const input = $('#upload-input');
  input.addEventListener('change', () => {
    upload([...input.files]);
    input.value = '';
  });
  const drop = $('#drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    upload([...e.dataTransfer.files]);
  });
  if (!canIngest) {
    const why = `A key of scope "${s.scope}" may not add files; uploading needs an "ingest" or "admin" key.`;
    input.disabled = true;
    $('#upload-label').setAttribute('aria-disabled', 'true');
    $('#drop-text').textContent = why;
    $('#store-name').disabled = true;
    $('#store-create').disabled = true;
  }
}

export function show() {
  visible = true;
  refresh();
}

export function hide() {
  visible = false;
  clearTimeout(timer);
}

function status(text) {
  $('#library-status').textContent = text;
}

function schedule(busy) {
  clearTimeout(timer);
  if (visible) timer = setTimeout(refresh, busy ? 1500 : 10000);
}

async function refresh() {
  clearTimeout(timer);
  let busy = false;
  try {
    const stores = (await api('/v1/vector_stores?limit=100&order=asc')).data;
    if (!stores.some((st) => st.id === selected)) selected = (stores.find((st) => st.name === 'inbox') || stores[0] || {}).id || null;
    renderStores(stores);
    const files = selected ? await listFiles(selected) : [];
    busy = files.some((f) => f.status === 'in_progress');
    renderFiles(stores.find((st) => st.id === selected), files);
    await renderWatched(stores);
    countPages(files);
  } catch (e) {
    status(`Could not load the library: ${e.message}`);
  }
  schedule(busy);
}

async function listFiles(storeId) {
  return (await api(`/v1/vector_stores/${encodeURIComponent(storeId)}/files?limit=100&order=desc`)).data;
}

function renderStores(stores) {
  const admin = grants(session.scope, 'admin');
  fill($('#stores-table tbody'), stores.length === 0
    ? h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No vector stores yet.'))
    : stores.map((st) => {
      const c = st.file_counts || {};
      return h('tr', { 'aria-current': st.id === selected ? 'true' : 'false' },
        h('td', {}, h('button', { type: 'button', class: 'linklike', onclick: () => { selected = st.id; refresh(); } }, st.name || st.id)),
        h('td', { class: 'num' }, `${count(c.completed)} / ${count(c.total)}`, c.in_progress ? ` (${c.in_progress} in progress)` : '', c.failed ? h('span', { class: 'reason' }, ` ${c.failed} failed`) : ''),
        h('td', { class: 'num optional' }, bytes(st.usage_bytes)),
        h('td', { class: 'optional' }, st.status || ''),
        h('td', {}, h('button', {
          type: 'button', class: 'quiet', disabled: !admin, title: admin ? `Delete ${st.name}` : 'Deleting needs an "admin" key',
          onclick: () => removeStore(st),
        }, 'Delete')));
    }));
}

function progressOf(f) {
  if (f.status === 'failed' || f.status === 'cancelled') {
    return h('div', { class: 'reason' }, f.last_error ? f.last_error.message : f.status);
  }
  const p = f.progress;
  if (!p) return null;
  if (p.stage === 'embedding') return h('div', { class: 'muted' }, `embedding ${p.chunks_embedded}/${p.chunks_total} chunks`);
  return h('div', { class: 'muted' }, p.stage);
}

function renderFiles(store, files) {
  $('#files-title').textContent = store ? `Files of ${store.name || store.id}` : 'Files';
  $('#drop').hidden = !store;
  const admin = grants(session.scope, 'admin');
  fill($('#files-table tbody'), files.length === 0
    ? h('tr', {}, h('td', { colspan: 7, class: 'muted' }, store ? 'No files in this store yet.' : 'Create a vector store first.'))
    : files.map((f) => h('tr', { 'data-file-id': f.id, 'data-status': f.status },
      h('td', {}, f.filename || f.id),
      h('td', {}, h('span', { class: `badge ${f.status}` }, f.status.replace('_', ' ')), progressOf(f)),
      h('td', { class: 'num', 'data-pages': f.id }, pages.has(f.id) ? pages.get(f.id) : '–'),
      h('td', { class: 'num' }, count(f.chunk_count)),
      h('td', { class: 'num optional' }, bytes(f.usage_bytes)),
      h('td', { class: 'optional' }, when(f.created_at)),
      h('td', {}, h('button', {
        type: 'button', class: 'quiet', disabled: !admin, title: admin ? `Remove ${f.filename} from this store` : 'Removing needs an "admin" key',
        onclick: () => removeFile(f),
      }, 'Remove')))));
}

/** Page counts of completed files, from their chunks' pages; one request at a time. */
async function countPages(files) {
  for (const f of files.filter((f) => f.status === 'completed' && !pages.has(f.id)).slice(0, 20)) {
    try {
      const content = await api(`/v1/vector_stores/${encodeURIComponent(f.vector_store_id)}/files/${encodeURIComponent(f.id)}/content`);
      const numbered = new Set(content.data.map((c) => c.page).filter((p) => p !== null && p !== undefined));
      pages.set(f.id, numbered.size ? String(numbered.size) : '–');
    } catch {
      pages.set(f.id, '?');
    }
    const cell = document.querySelector(`[data-pages="${CSS.escape(f.id)}"]`);
    if (cell) cell.textContent = pages.get(f.id);
  }
}

async function renderWatched(stores) {
  const list = $('#watched');
  if (!session.watched_folders.length) {
    fill(list, h('li', { class: 'muted' }, 'No watched folders are configured ([[ingest.watch]]).'));
    return;
  }
  const items = [];
  for (const w of session.watched_folders) {
    const store = stores.find((st) => st.name === w.vector_store);
    let latest = 'no files yet';
    if (store) {
      const files = (await api(`/v1/vector_stores/${encodeURIComponent(store.id)}/files?limit=3&order=desc`)).data;
      if (files.length) latest = files.map((f) => `${f.filename} (${f.status.replace('_', ' ')}, ${when(f.created_at)})`).join('; ');
    }
    items.push(h('li', {}, h('code', {}, w.path), ` → ${w.vector_store}`, h('div', { class: 'muted' }, `Latest: ${latest}`)));
  }
  fill(list, items);
}

async function createStore() {
  const name = $('#store-name').value.trim();
  if (!name) {
    status('Give the new vector store a name.');
    return;
  }
  try {
    const store = await api('/v1/vector_stores', { method: 'POST', json: { name } });
    selected = store.id;
    $('#store-name').value = '';
    status(`Created ${name}.`);
  } catch (e) {
    status(`Could not create ${name}: ${e.message}`);
  }
  refresh();
}

async function upload(files) {
  if (!grants(session.scope, 'ingest')) {
    status('Uploading needs an "ingest" or "admin" key.');
    return;
  }
  if (!selected) {
    status('Create a vector store first.');
    return;
  }
  const storeId = selected;
  for (const file of files) {
    status(`Uploading ${file.name}…`);
    try {
      const form = new FormData();
      form.append('purpose', 'assistants');
      form.append('file', file, file.name);
      const uploaded = await api('/v1/files', { method: 'POST', body: form });
      await api(`/v1/vector_stores/${encodeURIComponent(storeId)}/files`, { method: 'POST', json: { file_id: uploaded.id } });
      status(`Added ${file.name}; it is being parsed and embedded.`);
    } catch (e) {
      status(`Could not add ${file.name}: ${e.message}`);
    }
    await refresh();
  }
}

async function removeFile(f) {
  if (!window.confirm(`Remove ${f.filename} from this store? Its chunks are deleted.`)) return;
  try {
    await api(`/v1/vector_stores/${encodeURIComponent(f.vector_store_id)}/files/${encodeURIComponent(f.id)}`, { method: 'DELETE' });
    status(`Removed ${f.filename}.`);
  } catch (e) {
    status(`Could not remove ${f.filename}: ${e.message}`);
  }
  refresh();
}

async function removeStore(st) {
  if (!window.confirm(`Delete the vector store ${st.name || st.id} and all its chunks?`)) return;
  try {
    await api(`/v1/vector_stores/${encodeURIComponent(st.id)}`, { method: 'DELETE' });
    if (selected === st.id) selected = null;
    status(`Deleted ${st.name || st.id}.`);
  } catch (e) {
    status(`Could not delete ${st.name || st.id}: ${e.message}`);
  }
  refresh();
}
