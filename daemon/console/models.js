// Models: what GET /v1/models says about each model: kind, where it runs (GPU layers or CPU),
// size, context, KV cache, and the compute devices with their memory.

import { api } from './api.js';
import { $, h, fill, bytes, count, when } from './dom.js';

export function init() {}

export async function show() {
  const box = $('#models');
  try {
    const models = (await api('/v1/models')).data;
    fill(box, models.length === 0 ? h('p', { class: 'muted' }, 'No models are served.') : models.map(card));
  } catch (e) {
    fill(box, h('p', { class: 'error', role: 'alert' }, `Could not load the models: ${e.message}`));
  }
}

function placement(meta) {
  if (meta.provider && meta.provider !== 'local') return `remote (${meta.remote_model || meta.provider})`;
  if (meta.on_gpu) return `GPU (${meta.n_gpu_layers} layers offloaded)`;
  return 'CPU';
}

function card(m) {
  const meta = m.meta || {};
  const facts = [
    ['Kind', meta.kind || '–'],
    ['Runs on', placement(meta)],
    ['Context', `${count(m.max_model_len)} tokens${meta.n_ctx_train ? ` (trained ${count(meta.n_ctx_train)})` : ''}`],
    ['KV cache', meta.kv_cache_tokens !== undefined ? `${count(meta.kv_cache_tokens)} tokens` : '–'],
    ['Parameters', meta.n_params !== undefined ? count(meta.n_params) : '–'],
    ['Weights', bytes(meta.size)],
    ['Loaded', when(m.created)],
  ];
  const devices = (meta.devices || []).map((d) => h('li', {}, `${d.description || d.name} (${d.type}, ${d.backend})`,
    d.memory_total ? `: ${bytes(d.memory_total - d.memory_free)} used of ${bytes(d.memory_total)}` : ''));
  return h('article', { class: 'card', 'data-model': m.id },
    h('h2', {}, m.id),
    h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    devices.length ? [h('h3', {}, 'Devices'), h('ul', {}, devices)] : null);
}
