// Bench reports: `hearth bench --report` writes a self-contained HTML file. The console is offline
// and the report is on the user's computer, so a file picker opens it in a new tab from a blob
// URL; nothing is uploaded. (A blob document inherits this page's Content-Security-Policy, so the
// report's inline stylesheet is not applied: its tables and SVG charts show with browser styles.)

import { $ } from './dom.js';

export function init() {
  const input = $('#report-input');
  input.addEventListener('change', () => {
    const file = input.files && input.files[0];
    if (!file) return;
    if (!/\.html?$/i.test(file.name) && file.type !== 'text/html') {
      $('#report-status').textContent = `${file.name} is not an HTML file; pick the file hearth bench --report wrote.`;
      return;
    }
    const url = URL.createObjectURL(new Blob([file], { type: 'text/html' }));
    const opened = window.open(url, '_blank');
    $('#report-status').textContent = opened === null
      ? 'The browser blocked the new tab; allow pop-ups for this page and pick the file again.'
      : `Opened ${file.name} in a new tab.`;
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    input.value = '';
  });
}
