// A parser for the Prometheus text exposition (and OpenMetrics, which /metrics sends when asked):
// `name{label="value",...} number [timestamp]` lines, `#` lines skipped.

/** Map of metric name to its samples [{labels, value}]. */
export function parse(text) {
  const metrics = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const sample = parseLine(line);
    if (!sample) continue;
    if (!metrics.has(sample.name)) metrics.set(sample.name, []);
    metrics.get(sample.name).push({ labels: sample.labels, value: sample.value });
  }
  return metrics;
}

function parseLine(line) {
  const brace = line.indexOf('{');
  const space = line.indexOf(' ');
  let name;
  let labels = {};
  let rest;
  if (brace >= 0 && (space < 0 || brace < space)) {
    name = line.slice(0, brace);
    const parsed = parseLabels(line, brace + 1);
    if (!parsed) return null;
    labels = parsed.labels;
    rest = line.slice(parsed.end + 1).trim();
  } else {
    if (space < 0) return null;
    name = line.slice(0, space);
    rest = line.slice(space + 1).trim();
  }
  const value = parseValue(rest.split(/\s+/)[0]);
  return Number.isNaN(value) ? null : { name, labels, value };
}

function parseLabels(line, i) {
  const labels = {};
  while (i < line.length) {
    while (line[i] === ' ' || line[i] === ',') i += 1;
    if (line[i] === '}') return { labels, end: i };
    const eq = line.indexOf('=', i);
    if (eq < 0 || line[eq + 1] !== '"') return null;
    const key = line.slice(i, eq).trim();
    let value = '';
    let j = eq + 2;
    for (; j < line.length && line[j] !== '"'; j += 1) {
      if (line[j] === '\\') {
        j += 1;
        value += line[j] === 'n' ? '\n' : line[j];
      } else {
        value += line[j];
      }
    }
    labels[key] = value;
    i = j + 1;
  }
  return null;
}

function parseValue(text) {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

/** The sum of every sample of `name` (whose labels pass `filter`); null when there is none. */
export function sum(metrics, name, filter = () => true) {
  const samples = (metrics.get(name) || []).filter((s) => filter(s.labels));
  if (samples.length === 0) return null;
  return samples.reduce((total, s) => total + s.value, 0);
}
