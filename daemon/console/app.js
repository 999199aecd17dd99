// The console's entry point: asks for a key when hearth checks keys, learns the key's scope from
// GET /v1/console/session, and switches between the sections (tabs, also by URL fragment).
// Each section module exports init(session), and optionally show() and hide().

import { api, getKey, setKey } from './api.js';
import { $ } from './dom.js';
import * as ask from './ask.js';
import * as library from './library.js';
import * as models from './models.js';
import * as metrics from './metrics.js';
import * as reports from './reports.js';

const SECTIONS = { ask, library, models, metrics, reports };
let current = null;

function tabs() {
  return [...document.querySelectorAll('#tabs [role="tab"]')];
}

function select(name, focus = false) {
  if (!(name in SECTIONS)) name = 'ask';
  if (current === name) return;
  if (current && SECTIONS[current].hide) SECTIONS[current].hide();
  current = name;
  for (const tab of tabs()) {
    const on = tab.id === `tab-${name}`;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    if (on && focus) tab.focus();
    $(`#${tab.getAttribute('aria-controls')}`).hidden = !on;
  }
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
  if (SECTIONS[name].show) SECTIONS[name].show();
}

function bindTabs() {
  for (const tab of tabs()) {
    tab.addEventListener('click', () => select(tab.id.slice(4)));
    tab.addEventListener('keydown', (e) => {
      const all = tabs();
      const i = all.indexOf(tab);
      const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: all.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      select(all[(to + all.length) % all.length].id.slice(4), true);
    });
  }
  window.addEventListener('hashchange', () => select(location.hash.slice(1)));
}

function showKeyPrompt(message) {
  $('#tabs').hidden = true;
  $('#forget-key').hidden = true;
  for (const panel of document.querySelectorAll('[role="tabpanel"]')) panel.hidden = true;
  $('#key-prompt').hidden = false;
  $('#key-error').textContent = message || '';
  $('#key-input').focus();
}

async function connect() {
  let session;
  try {
    session = await api('/v1/console/session');
  } catch (e) {
    if (e.status === 401) {
      showKeyPrompt(getKey() ? 'hearth did not accept this key. Check it and try again.' : '');
      return;
    }
    $('#fatal').textContent = `The console could not start: ${e.message}`;
    $('#fatal').hidden = false;
    return;
  }
  $('#key-prompt').hidden = true;
  $('#tabs').hidden = false;
  $('#forget-key').hidden = !session.keys_required;
  $('#who').textContent = session.keys_required ? `Key scope: ${session.scope}` : 'No API keys configured (loopback only)';
  document.body.dataset.scope = session.scope;
  for (const section of Object.values(SECTIONS)) section.init(session);
  select(location.hash.slice(1) || 'ask');
}

function start() {
  bindTabs();
  $('#key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('#key-input').value.trim();
    if (!key) {
      $('#key-error').textContent = 'Enter the API key first.';
      return;
    }
    setKey(key);
    $('#key-input').value = '';
    connect();
  });
  $('#forget-key').addEventListener('click', () => {
    setKey('');
    location.reload();
  });
  connect();
}

start();
