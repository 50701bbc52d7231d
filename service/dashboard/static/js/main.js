// Entry point: hash routing between the three pages, the API-key dialog, the header.
//   #/jobs            the tenant's jobs, newest first, live
//   #/jobs/<id>       one job: live charts, recommendation, diagnostics, cancel, downloads
//   #/new             the submit form

import {apiKey, forgetApiKey, onKeyChange, setApiKey, setKeyPrompt} from './api.js';
import {renderJobsPage} from './jobs.js';
import {renderJobPage} from './job.js';
import {renderSubmitPage} from './submit.js';
import {h, fill} from './dom.js';

const app = document.getElementById('app');
let teardown = null;

const routes = [
  [/^#\/jobs\/([\w-]+)$/, (m) => renderJobPage(app, m[1]), 'jobs'],
  [/^#\/new$/, () => renderSubmitPage(app), 'new'],
  [/^#\/jobs(?:\?status=(\w+))?$/, (m) => renderJobsPage(app, {status: m[1] || ''}), 'jobs'],
];

function route() {
  const hash = location.hash || '#/jobs';
  teardown?.();
  teardown = null;
  for (const [pattern, render, nav] of routes) {
    const match = hash.match(pattern);
    if (!match) continue;
    document.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active', a.dataset.nav === nav));
    window.scrollTo(0, 0);
    teardown = render(match) || null;
    return;
  }
  fill(app, h('div', {class: 'panel empty'},
    h('h2', {}, 'Page not found'),
    h('p', {}, h('a', {href: '#/jobs'}, 'Back to the jobs'))));
}

// ------------------------------------------------------------------ API key
const dialog = document.getElementById('key-dialog');
const keyInput = document.getElementById('key-input');
const keyReason = document.getElementById('key-reason');
const defaultReason = keyReason.cloneNode(true);

setKeyPrompt((reason) => new Promise((resolve) => {
  if (reason) keyReason.textContent = reason;
  else keyReason.replaceChildren(...defaultReason.cloneNode(true).childNodes);
  keyInput.value = '';
  const onClose = () => {
    const key = keyInput.value.trim();
    if (!key) { dialog.showModal(); return; } // Escape: the page cannot work without a key
    dialog.removeEventListener('close', onClose);
    setApiKey(key);
    resolve(key);
  };
  dialog.addEventListener('close', onClose);
  if (!dialog.open) dialog.showModal();
  keyInput.focus();
}));

const keyStatus = document.getElementById('key-status');
const showKeyStatus = (key) => { keyStatus.hidden = !key; };
onKeyChange(showKeyStatus);
showKeyStatus(apiKey());
document.getElementById('forget-key').addEventListener('click', () => {
  forgetApiKey();
  route();
});

window.addEventListener('hashchange', route);
if (!location.hash) history.replaceState(null, '', '#/jobs');
route();
