// Metrics: /metrics polled every 2 s while the tab is open (it needs an "admin" key), parsed in
// the page (prometheus.js) and drawn as small inline-SVG line charts of the last 2 minutes.
// Counters become rates over the last interval; histograms their mean over it (the change of
// `_sum` over the change of `_count`).

import { api, grants } from './api.js';
import { $, h, s, fill } from './dom.js';
import { parse, sum } from './prometheus.js';

const PERIOD_MS = 2000;
const POINTS = 60;

let session = null;
let timer = null;
let visible = false;
let previous = null;
const history = new Map(); // chart id -> values

/** Each chart: how to read its value from this and the previous scrape, and how to print it. */
const CHARTS = [
  { id: 'throughput', title: 'Generated tokens / s', read: (m, p, dt) => rate(m, p, dt, 'vllm:generation_tokens_total'), show: (v) => v.toFixed(1) },
  { id: 'prompt', title: 'Prompt tokens / s', read: (m, p, dt) => rate(m, p, dt, 'vllm:prompt_tokens_total'), show: (v) => v.toFixed(1) },
  { id: 'ttft', title: 'Time to first token', read: (m, p) => mean(m, p, 'vllm:time_to_first_token_seconds'), show: ms, detail: () => span.get('vllm:time_to_first_token_seconds') },
  { id: 'itl', title: 'Inter-token latency', read: (m, p) => mean(m, p, 'vllm:inter_token_latency_seconds'), show: ms, detail: () => span.get('vllm:inter_token_latency_seconds') },
  { id: 'running', title: 'Requests running / waiting', read: (m) => sum(m, 'vllm:num_requests_running'),
    show: (v, m) => `${v} / ${sum(m, 'vllm:num_requests_waiting') ?? 0}` },
  { id: 'kv', title: 'KV cache used', read: (m) => max(m, 'vllm:kv_cache_usage_perc'), show: pct },
  { id: 'prefix', title: 'Prefix cache hit rate', read: (m, p) => ratio(m, p, 'vllm:prefix_cache_hits_total', 'vllm:prefix_cache_queries_total'), show: pct,
    detail: (m) => { const b = sum(m, 'hearth_prefix_cache_bytes'); return b === null ? '' : `${(b / 1048576).toFixed(1)} MiB cached`; } },
  { id: 'gpu', title: 'GPU utilisation', read: (m) => max(m, 'hearth_gpu_utilization_ratio'), show: pct, none: 'no GPU reported (NVML absent)' },
  { id: 'gpumem', title: 'GPU memory used', read: (m) => { const u = sum(m, 'hearth_gpu_memory_used_bytes'); const t = sum(m, 'hearth_gpu_memory_total_bytes'); return u === null || !t ? null : u / t; },
    show: pct, detail: (m) => { const u = sum(m, 'hearth_gpu_memory_used_bytes'); const t = sum(m, 'hearth_gpu_memory_total_bytes'); return u === null ? '' : `${(u / 1073741824).toFixed(1)} of ${(t / 1073741824).toFixed(1)} GiB`; }, none: 'no GPU reported (NVML absent)' },
  { id: 'queue', title: 'Ingestion queue (files)', read: (m) => sum(m, 'hearth_ingest_queue_files'), show: (v) => String(v),
    detail: (m) => { const f = sum(m, 'hearth_ingest_files_total'); return f === null ? '' : `${f} files ingested since start`; } },
];

function ms(v) {
  return v < 1 ? `${(v * 1000).toFixed(1)} ms` : `${v.toFixed(2)} s`;
}

function pct(v) {
  return `${(v * 100).toFixed(1)} %`;
}

function max(m, name) {
  const samples = m.get(name) || [];
  return samples.length ? Math.max(...samples.map((x) => x.value)) : null;
}

function rate(m, p, dt, name) {
  const now = sum(m, name);
  const before = p && sum(p, name);
  if (now === null || before === null || before === undefined || dt <= 0) return now === null ? null : 0;
  return Math.max(0, now - before) / dt;
}

/** Over what the last mean of a histogram was taken, for its chart's detail line. */
const span = new Map();

function mean(m, p, name) {
  const s1 = sum(m, `${name}_sum`);
  const c1 = sum(m, `${name}_count`);
  if (s1 === null || c1 === null) return null;
  const s0 = p ? sum(p, `${name}_sum`) ?? 0 : 0;
  const c0 = p ? sum(p, `${name}_count`) ?? 0 : 0;
  if (c1 > c0) {
    span.set(name, `mean of ${c1 - c0} in the last interval`);
    return (s1 - s0) / (c1 - c0);
  }
  span.set(name, c1 > 0 ? `mean of all ${c1} since start (none in the last interval)` : 'no requests yet');
  return c1 > 0 ? s1 / c1 : 0;
}

function ratio(m, p, hits, queries) {
  const h1 = sum(m, hits);
  const q1 = sum(m, queries);
  if (h1 === null || q1 === null) return null;
  const h0 = p ? sum(p, hits) ?? 0 : 0;
  const q0 = p ? sum(p, queries) ?? 0 : 0;
  if (q1 > q0) return (h1 - h0) / (q1 - q0);
  return q1 > 0 ? h1 / q1 : 0;
}

export function init(s) {
  session = s;
}

export function show() {
  visible = true;
  if (!grants(session.scope, 'admin')) {
    $('#metrics-note').textContent = `/metrics needs an "admin" key; this key's scope is "${session.scope}".`;
    fill($('#metrics'));
    return;
  }
  if (!$('#metrics').children.length) {
    fill($('#metrics'), CHARTS.map((c) => h('article', { class: 'card chart', id: `chart-${c.id}` },
      h('h2', {}, c.title), h('p', { class: 'value' }, '…'), h('p', { class: 'detail' }), sparkline([]))));
  }
  tick();
}

export function hide() {
  visible = false;
  clearTimeout(timer);
  timer = null;
}

async function tick() {
  clearTimeout(timer);
  try {
    const text = await api('/metrics');
    const now = { at: performance.now(), metrics: parse(text) };
    const dt = previous ? (now.at - previous.at) / 1000 : 0;
    for (const chart of CHARTS) {
      const value = chart.read(now.metrics, previous && previous.metrics, dt);
      const card = $(`#chart-${chart.id}`);
      const values = history.get(chart.id) || [];
      if (value !== null && Number.isFinite(value)) values.push(value);
      while (values.length > POINTS) values.shift();
      history.set(chart.id, values);
      card.querySelector('.value').textContent = value === null ? '–' : chart.show(value, now.metrics);
      card.querySelector('.detail').textContent = value === null ? (chart.none || 'not reported') : (chart.detail ? chart.detail(now.metrics) : '');
      card.querySelector('svg').replaceWith(sparkline(values));
    }
    previous = now;
    $('#metrics-note').textContent = `From /metrics at ${new Date().toLocaleTimeString()}, every 2 seconds while this tab is open; rates and means are over the last interval.`;
  } catch (e) {
    $('#metrics-note').textContent = `Could not read /metrics: ${e.message}`;
  }
  if (visible) timer = setTimeout(tick, PERIOD_MS);
}

/** A line chart of `values` scaled to its own maximum (0 at the bottom). */
function sparkline(values) {
  const width = 200;
  const height = 60;
  const top = Math.max(...values, 1e-9) * 1.15;
  const step = width / (POINTS - 1);
  const offset = width - (values.length - 1) * step;
  const points = values.map((v, i) => `${(offset + i * step).toFixed(1)},${(height - (v / top) * (height - 4) - 2).toFixed(1)}`).join(' ');
  return s('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': values.length ? `last ${values.length} readings, highest ${top.toPrecision(3)}` : 'no readings yet' },
    s('line', { x1: 0, y1: height - 1, x2: width, y2: height - 1 }),
    values.length > 1 ? s('polyline', { points }) : null);
}
