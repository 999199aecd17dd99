// The preview of a cited page: the page's text put back together from the file's chunks
// (GET /v1/vector_stores/{id}/files/{file_id}/content gives each chunk's page and character
// range in the document), with the cited chunk's range marked. Chunks overlap, so each is laid at
// its offset; where the offsets do not fit the text (a parser that rewrote whitespace), the page's
// chunks are shown one after another with the cited one marked. Without the content (the file
// was removed since), the search result's text that the answer rested on is shown instead.
// No page images yet: the parse worker's PDFium renders pages only for OCR and no route serves
// them, so every format gets the text preview.

import { api } from './api.js';
import { $, h, fill } from './dom.js';

let opener = null;

export function closePreview() {
  $('#preview').hidden = true;
  if (opener && document.contains(opener)) opener.focus();
  opener = null;
}

let bound = false;
function bind() {
  if (bound) return;
  bound = true;
  $('#preview-close').addEventListener('click', closePreview);
  $('#preview').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closePreview();
  });
}

/** Open the preview of `citation` (a file_citation annotation), searched for in `storeIds`. */
export async function openPreview(citation, storeIds, results) {
  bind();
  opener = document.activeElement;
  const pane = $('#preview');
  const title = citation.page ? `${citation.filename}, page ${citation.page}` : citation.filename;
  $('#preview-title').textContent = title;
  $('#preview-note').textContent = 'Loading…';
  fill($('#preview-body'));
  pane.hidden = false;
  pane.dataset.fileId = citation.file_id;
  pane.dataset.page = citation.page ?? '';
  $('#preview-title').focus();

  let chunks = null;
  let lastError = null;
  for (const id of storeIds) {
    try {
      const content = await api(`/v1/vector_stores/${encodeURIComponent(id)}/files/${encodeURIComponent(citation.file_id)}/content`);
      chunks = content.data;
      break;
    } catch (e) {
      lastError = e;
    }
  }
  const body = $('#preview-body');
  if (chunks) {
    const page = chunks.filter((c) => citation.page === null || citation.page === undefined || c.page === citation.page);
    renderPage(body, page, citation);
    $('#preview-note').textContent = `The text of this page as hearth parsed it; the cited passage is marked (characters ${citation.char_start}–${citation.char_end} of the document).`;
  } else {
    const hit = (results || []).find((r) => r.file_id === citation.file_id && r.char_start === citation.char_start);
    if (hit) {
      fill(body, h('mark', {}, hit.text));
      $('#preview-note').textContent = 'The passage the answer rested on (the file\'s full text could not be loaded).';
    } else {
      $('#preview-note').textContent = `The file's text could not be loaded${lastError ? `: ${lastError.message}` : ''}.`;
    }
  }
  // Bring the mark into view inside the preview only: the conversation beside it stays put.
  const mark = body.querySelector('mark');
  if (mark && pane.scrollHeight > pane.clientHeight) pane.scrollTop = Math.max(0, mark.offsetTop - pane.clientHeight / 3);
}

function renderPage(body, chunks, citation) {
  const sorted = [...chunks].sort((a, b) => a.char_start - b.char_start);
  const laid = layOut(sorted);
  if (laid) {
    const from = Math.max(0, citation.char_start - laid.start);
    const to = Math.min(laid.chars.length, citation.char_end - laid.start);
    if (from < to) {
      fill(body, laid.chars.slice(0, from).join(''), h('mark', {}, laid.chars.slice(from, to).join('')), laid.chars.slice(to).join(''));
      return;
    }
  }
  fill(body, sorted.map((c) => {
    const cited = c.char_start === citation.char_start && c.char_end === citation.char_end;
    return h('div', { class: 'chunk' }, cited ? h('mark', {}, c.text) : c.text);
  }));
}

/** The page's characters from overlapping chunks, or null when a chunk's text and range disagree. */
export function layOut(chunks) {
  if (chunks.length === 0) return null;
  const start = chunks[0].char_start;
  const chars = [];
  for (const c of chunks) {
    const text = [...c.text];
    if (text.length !== c.char_end - c.char_start) return null;
    const end = start + chars.length;
    if (c.char_end <= end) continue;
    for (let gap = end; gap < c.char_start; gap += 1) chars.push(' ');
    for (const ch of text.slice(Math.max(0, end - c.char_start))) chars.push(ch);
  }
  return { start, chars };
}
