// The jobs page: the tenant's jobs, newest first, with status, progress and the recommended LR,
// refreshed every couple of seconds while anything is unfinished.

import {api, ApiError} from './api.js';
import {h, fill, loading} from './dom.js';
import * as fmt from './format.js';

const FILTERS = ['', 'running', 'queued', 'succeeded', 'failed', 'cancelled'];
const PAGE_SIZE = 50;

/** Recommendations of succeeded jobs (immutable once there), shared across visits of the page. */
const recommendations = new Map();

export function renderJobsPage(app, {status}) {
  let timer = null;
  let stopped = false;
  let olderItems = [];
  let olderToken = null;
  let firstToken = null;

  const tbody = h('tbody');
  const live = h('span', {class: 'live-dot', title: 'This list refreshes by itself'}, 'Live');
  const more = h('button', {class: 'btn btn-sm', type: 'button', hidden: true, onclick: loadOlder}, 'Load older jobs');
  const tableWrap = h('div', {class: 'table-wrap'}, loading('Loading jobs…'));
  const errorBox = h('div');

  fill(app,
    h('div', {class: 'page-head'},
      h('div', {},
        h('h1', {}, 'Jobs'),
        h('div', {class: 'meta-row'}, 'Range tests of this API key, newest first.')),
      h('span', {class: 'spacer'}),
      h('a', {class: 'btn btn-primary', href: '#/new'}, '+ New range test')),
    h('div', {class: 'toolbar'},
      h('nav', {class: 'tabs', 'aria-label': 'Filter by status'},
        FILTERS.map((f) => h('a', {
          href: f ? `#/jobs?status=${f}` : '#/jobs',
          class: f === status ? 'active' : '',
        }, f ? f[0].toUpperCase() + f.slice(1) : 'All'))),
      h('span', {class: 'spacer'}),
      live),
    errorBox,
    h('div', {class: 'panel', style: {padding: '4px 8px'}}, tableWrap),
    h('div', {class: 'row', style: {justifyContent: 'center', marginTop: '14px'}}, more));

  const table = h('table', {class: 'jobs', 'data-testid': 'jobs-table'},
    h('thead', {}, h('tr', {},
      ['Status', 'Job', 'Optimizers', 'Progress', 'Recommended', 'Created'].map((t) => h('th', {}, t)))),
    tbody);

  const query = (token) => {
    const params = new URLSearchParams({page_size: String(PAGE_SIZE)});
    if (status) params.set('status', status);
    if (token) params.set('page_token', token);
    return `/v1/jobs?${params}`;
  };

  async function refresh() {
    if (stopped) return;
    let delay = 8000;
    try {
      const page = await api(query());
      if (stopped) return;
      firstToken = page.next_page_token;
      fill(errorBox);
      render(page.items);
      if (page.items.some((job) => !fmt.TERMINAL.has(job.status))) delay = 2000;
    } catch (err) {
      if (stopped) return;
      fill(errorBox, h('div', {class: 'alert alert-error', style: {marginBottom: '12px'}},
        h('strong', {}, 'Could not load the jobs'), errorText(err)));
      delay = 5000;
    }
    timer = setTimeout(refresh, document.hidden ? Math.max(delay, 15000) : delay);
  }

  async function loadOlder() {
    more.disabled = true;
    try {
      const page = await api(query(olderItems.length ? olderToken : firstToken));
      olderItems = olderItems.concat(page.items);
      olderToken = page.next_page_token;
      render(null);
    } finally {
      more.disabled = false;
    }
  }

  let lastFirst = [];
  function render(items) {
    if (items) lastFirst = items;
    const all = lastFirst.concat(olderItems.filter((o) => !lastFirst.some((j) => j.id === o.id)));
    more.hidden = !(olderItems.length ? olderToken : firstToken);
    if (!all.length) {
      fill(tableWrap, h('div', {class: 'empty'},
        h('h2', {}, status ? `No ${status} jobs` : 'No range tests yet'),
        h('p', {}, 'Submit a Keras model and a dataset to find its learning rate.'),
        h('a', {class: 'btn btn-primary', href: '#/new'}, 'Start a range test')));
      return;
    }
    if (table.parentNode !== tableWrap) fill(tableWrap, table);
    fill(tbody, all.map(row));
    all.filter((job) => job.status === 'succeeded' && !recommendations.has(job.id)).slice(0, 8).forEach(fetchRecommendation);
  }

  function row(job) {
    const href = `#/jobs/${job.id}`;
    const progress = job.progress || {};
    const arms = progress.arms || [];
    const armNames = arms.length ? arms.map((a) => a.label) : (job.spec?.optimizers || []).map((o) => o.label || o.name);
    return h('tr', {dataset: {jobId: job.id, status: job.status}, onclick: (e) => {
      if (!e.target.closest('a')) location.hash = href;
    }},
      h('td', {}, h('span', {class: `badge ${job.status}`}, job.status)),
      h('td', {},
        h('a', {class: 'job-id', href}, fmt.shortId(job.id)),
        job.spec?.dataset?.uri ? h('div', {class: 'small muted mono'}, job.spec.dataset.uri) : null,
        Object.keys(job.labels || {}).length
          ? h('div', {}, Object.entries(job.labels).map(([k, v]) => h('span', {class: 'chip'}, `${k}: ${v}`)))
          : null),
      h('td', {}, armNames.length ? armNames.map((n) => h('span', {class: 'chip'}, n)) : h('span', {class: 'muted'}, '—')),
      h('td', {class: 'cell-progress'}, progressCell(job)),
      h('td', {}, recommendationCell(job)),
      h('td', {class: 'small muted', title: job.created_at}, fmt.relativeTime(job.created_at),
        job.finished_at ? h('div', {}, `ran ${fmt.duration(job.started_at || job.created_at, job.finished_at)}`) : null));
  }

  function recommendationCell(job) {
    if (job.status === 'failed') {
      return h('span', {class: 'small', style: {color: 'var(--bad)'}}, job.error?.title || 'failed');
    }
    const reco = job.recommendation || recommendations.get(job.id);
    if (!reco) return h('span', {class: 'muted'}, job.status === 'succeeded' ? '…' : '—');
    if (reco.learning_rate == null) {  // the engine withheld it (flat or never-falling curve): say so, no number
      return h('span', {class: 'small muted', 'data-testid': 'no-recommendation', title: reco.reason || ''},
        'no recommendation');
    }
    return h('div', {},
      h('span', {class: 'lr-value', 'data-testid': 'recommended-lr'}, fmt.lr(reco.learning_rate)),
      h('div', {class: 'small muted'}, reco.optimizer,
        reco.verified ? [' ', h('span', {class: 'chip verified', 'data-testid': 'verified'}, 'verified')] : null));
  }

  async function fetchRecommendation(job) {
    recommendations.set(job.id, null);
    try {
      const result = await api(`/v1/jobs/${job.id}/result`);
      recommendations.set(job.id, result?.recommendation ?? {learning_rate: null, reason: result?.recommendation_reason});
      if (!stopped) render(null);
    } catch {
      recommendations.delete(job.id);
    }
  }

  const onVisible = () => { if (!document.hidden) { clearTimeout(timer); refresh(); } };
  document.addEventListener('visibilitychange', onVisible);
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisible);
  };
}

function progressCell(job) {
  const p = job.progress;
  const fraction = job.status === 'succeeded' ? 1 : (p?.fraction ?? 0);
  const cls = job.status === 'succeeded' ? 'done' : (job.status === 'running' || job.status === 'queued' ? '' : 'stopped');
  let text;
  if (job.status === 'queued') text = 'waiting for a worker';
  else if (p?.steps_total) text = `${p.steps_done} / ${p.steps_total} steps`;
  else text = job.status === 'running' ? 'starting…' : '—';
  return [
    h('div', {class: `progress ${cls}`}, h('span', {style: {width: fmt.pct(fraction)}})),
    h('div', {class: 'small muted'}, text),
  ];
}

export function errorText(err) {
  if (err instanceof ApiError) return [err.problem.title, err.problem.detail].filter(Boolean).join(': ');
  return String(err?.message || err);
}
