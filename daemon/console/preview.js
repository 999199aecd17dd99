// The preview of a cited page: the page's text put back together from the file's chunks
// (GET /v1/vector_stores/{id}/files/{file_id}/content gives each chunk's page and character
// range in the document), with the cited chunk's range marked. Chunks overlap, so each is laid at
// its offset; where the offsets do not fit the text (a parser that rewrote whitespace), the page's
// chunks are shown one after another with the cited one marked. Without the content (the file
// was removed since), the search result's text that the answer rested on is shown instead.
// For a PDF the page itself is shown above the text: GET /v1/files/{id}/pages/{page}/image renders
// it in hearth's sandboxed parse worker with the cited passage painted yellow. An <img src> cannot
// send the key, so the image is fetched with it and shown from a blob: URL (the CSP allows blob:
// images), which is revoked when the preview closes or shows another page. Other formats, and a
// PDF whose page could not be rendered, keep the text preview alone.

import { api, getKey } from './api.js';
import { $, h, fill } from './dom.js';

let opener = null;
/** The blob: URL of the page image shown, revoked when it goes. */
let imageUrl = null;
/** Aborts the image fetch of a preview that was closed or replaced. */
let imageFetch = null;
/** Counts previews opened, so a slow answer for an earlier one is dropped. */
let opened = 0;

/** The longest passage sent to be highlighted (the route takes up to 2,000 characters). */
const MAX_HIGHLIGHT = 1500;

function dropImage() {
  if (imageFetch) imageFetch.abort();
  imageFetch = null;
  if (imageUrl) URL.revokeObjectURL(imageUrl);
  imageUrl = null;
  const figure = $('#preview-figure');
  if (figure) {
    figure.hidden = true;
    fill(figure);
  }
}

export function closePreview() {
  $('#preview').hidden = true;
  dropImage();
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
  $('#preview-note').before(h('figure', { id: 'preview-figure', class: 'preview-figure', hidden: true }));
}

/** True for a citation whose page can be shown as an image (a PDF, by its name). */
export function hasPageImage(citation) {
  return Boolean(citation.page) && /\.pdf$/i.test(citation.filename || '');
}

/** The passage to highlight on the image: the cited text, cut at a word before MAX_HIGHLIGHT. */
export function highlightText(text) {
  const clean = (text || '').replace(/\s+/g, ' ').trim();
  if (clean.length <= MAX_HIGHLIGHT) return clean;
  const cut = clean.slice(0, MAX_HIGHLIGHT);
  const space = cut.lastIndexOf(' ');
  return space > 0 ? cut.slice(0, space) : cut;
}

/** Fetch the page image with the key; resolves to { url, highlight } or throws with hearth's message. */
async function fetchPageImage(citation, passage, width, signal) {
  const params = new URLSearchParams({ width: String(width) });
  if (passage) params.set('highlight', passage);
  const headers = new Headers();
  const key = getKey();
  if (key) headers.set('Authorization', `Bearer ${key}`);
  const path = `/v1/files/${encodeURIComponent(citation.file_id)}/pages/${encodeURIComponent(citation.page)}/image?${params}`;
  const response = await fetch(path, { headers, signal });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).error.message || message;
    } catch {
      // not JSON: keep the status line
    }
    throw new Error(message);
  }
  const blob = await response.blob();
  return { url: URL.createObjectURL(blob), highlight: response.headers.get('x-hearth-highlight') };
}

/** Show the page image above the text; false when it could not be shown (the text stays). */
async function showPageImage(citation, passage) {
  const figure = $('#preview-figure');
  const pane = $('#preview');
  // Twice the pane's CSS width for a sharp image on high-density screens, in steps of 100 px.
  const css = Math.max(300, $('#preview-body').clientWidth || pane.clientWidth || 600);
  const width = Math.min(1600, Math.max(400, Math.round((css * Math.max(1, window.devicePixelRatio || 1)) / 100) * 100));
  const label = `${citation.filename}, page ${citation.page}`;
  const caption = h('figcaption', { class: 'muted' }, 'Rendering the page…');
  fill(figure, caption);
  figure.hidden = false;
  const controller = new AbortController();
  imageFetch = controller;
  let image;
  try {
    image = await fetchPageImage(citation, passage, width, controller.signal);
  } catch (e) {
    if (e.name === 'AbortError') return false;
    caption.textContent = `The page image could not be shown: ${e.message}`;
    return false;
  } finally {
    if (imageFetch === controller) imageFetch = null;
  }
  if (controller.signal.aborted) {
    URL.revokeObjectURL(image.url);
    return false;
  }
  imageUrl = image.url;
  const found = image.highlight === 'whole' || image.highlight === 'partial';
  caption.textContent = found
    ? 'The page as it is printed; the cited passage is highlighted.'
    : 'The page as it is printed; the passage could not be located on it, so it is marked only in the text below.';
  fill(figure, h('img', { src: image.url, alt: label, class: 'page-image', 'data-highlight': image.highlight || '' }), caption);
  return true;
}

/** Open the preview of `citation` (a file_citation annotation), searched for in `storeIds`. */
export async function openPreview(citation, storeIds, results) {
  bind();
  dropImage();
  const mine = ++opened;
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
  if (mine !== opened) return; // another citation was opened meanwhile
  const body = $('#preview-body');
  const hit = (results || []).find((r) => r.file_id === citation.file_id && r.char_start === citation.char_start);
  const cited = (chunks || []).find((c) => c.char_start === citation.char_start && c.char_end === citation.char_end);
  const passage = highlightText((cited && cited.text) || (hit && hit.text) || '');
  const image = hasPageImage(citation) ? showPageImage(citation, passage) : Promise.resolve(false);
  if (chunks) {
    const page = chunks.filter((c) => citation.page === null || citation.page === undefined || c.page === citation.page);
    renderPage(body, page, citation);
    $('#preview-note').textContent = `The text of this page as hearth parsed it; the cited passage is marked (characters ${citation.char_start}–${citation.char_end} of the document).`;
  } else {
    if (hit) {
      fill(body, h('mark', {}, hit.text));
      $('#preview-note').textContent = 'The passage the answer rested on (the file\'s full text could not be loaded).';
    } else {
      $('#preview-note').textContent = `The file's text could not be loaded${lastError ? `: ${lastError.message}` : ''}.`;
    }
  }
  // Bring the mark into view inside the preview only: the conversation beside it stays put. With
  // a page image the pane starts at the image, whose highlight shows the passage.
  const mark = body.querySelector('mark');
  if (mark && pane.scrollHeight > pane.clientHeight) pane.scrollTop = Math.max(0, mark.offsetTop - pane.clientHeight / 3);
  if (await image) pane.scrollTop = 0;
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
