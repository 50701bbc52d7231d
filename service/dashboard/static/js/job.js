// The job page: live progress and charts while the job runs (SSE `progress` events, with polling
// of the job resource as the contract that always works), then the final curves, the
// recommendation card, the per-arm suggestions and the diagnostics once it ends. A job with
// `sweep.confirm` also shows its confirm phase: the candidates' progress while they train, then each
// candidate's held-out loss (a table, and a chart against its LR) as they end.

import {api, ApiError, openEvents, send} from './api.js';
import {LrChart} from './charts.js';
import {alignToEnd, deltas, smooth} from './curves.js';
import {h, fill, loading, download, toast, copyText} from './dom.js';
import * as fmt from './format.js';
import {errorText} from './jobs.js';
import {
  bestArm, chosenRule, diagnosticsList, recommendationCard, stopReasonText, suggestionEntries,
} from './recommend.js';

export function renderJobPage(app, id) {
  const state = {
    job: null,
    result: null, // the final (or, for cancelled/failed jobs, partial) result
    partial: null, // partial curves of a running job, when the API offers them
    live: new Map(), // arm label -> [{step, lr, loss}] from progress events and polls
    colors: new Map(),
    etag: null,
    events: null,
    stopped: false,
    finishing: false,
    showRaw: false,
  };
  const timers = new Set();
  const cleanups = [];
  const later = (fn, ms) => { const t = setTimeout(() => { timers.delete(t); fn(); }, ms); timers.add(t); };

  const el = {
    head: h('div', {class: 'page-head'}),
    alerts: h('div', {class: 'stack', style: {marginBottom: '16px'}}),
    progress: h('section', {class: 'panel', 'data-testid': 'progress-panel'}),
    loss: h('div', {class: 'chart', 'data-testid': 'loss-chart'}),
    delta: h('div', {class: 'chart', 'data-testid': 'delta-chart'}),
    reco: h('div', {'data-testid': 'recommendation-slot'}),
    confirm: h('section', {class: 'panel', hidden: true, style: {marginTop: '16px'}, 'data-testid': 'confirm-panel'}),
    confirmTable: h('div', {class: 'table-wrap'}),
    confirmChart: h('div', {class: 'chart chart-small', 'data-testid': 'confirm-chart'}),
    arms: h('section', {class: 'panel', hidden: true, style: {marginTop: '16px'}}),
    diagnostics: h('section', {class: 'panel', hidden: true, 'data-testid': 'diagnostics'}),
    engine: h('div', {class: 'small muted'}),
  };
  let charts = null;

  fill(app, loading('Loading the job…'));
  start();

  async function start() {
    try {
      const job = await fetchJob();
      layout();
      onJob(job);
      if (!fmt.TERMINAL.has(job.status)) goLive();
    } catch (err) {
      if (state.stopped) return;
      const missing = err instanceof ApiError && err.status === 404;
      fill(app, h('div', {class: 'panel empty'},
        h('h2', {}, missing ? 'No such job' : 'Could not load the job'),
        h('p', {}, missing ? `There is no job ${id} for this API key. It may have expired or been deleted.` : errorText(err)),
        h('a', {class: 'btn', href: '#/jobs'}, 'Back to the jobs')));
    }
  }

  function layout() {
    const rawToggle = h('label', {class: 'check'},
      h('input', {type: 'checkbox', onchange: (e) => { state.showRaw = e.target.checked; redraw(); }}),
      'Show raw batch losses');
    fill(app,
      el.head,
      el.alerts,
      h('div', {class: 'job-grid'},
        h('div', {class: 'col'},
          el.progress,
          el.charts = h('section', {class: 'panel'},
            h('div', {class: 'panel-head'}, h('h2', {}, 'Loss vs learning rate'),
              h('span', {class: 'hint'}, 'Drag to zoom · double-click to reset · hover for values')),
            h('div', {class: 'chart-controls'}, rawToggle),
            el.loss,
            h('div', {class: 'panel-head', style: {marginTop: '18px'}}, h('h2', {}, 'Loss delta vs learning rate'),
              h('span', {class: 'hint'}, 'Change of the loss per step: most negative = falling fastest')),
            el.delta)),
        h('div', {class: 'col'}, el.reco, el.diagnostics, el.engine)),
      el.confirm,
      el.arms);
    fill(el.confirm,
      h('div', {class: 'panel-head'}, h('h2', {}, 'Verification by training'),
        h('span', {class: 'hint'}, 'Each candidate trained at a constant learning rate from the job\u2019s initial weights, '
          + 'scored on the held-out rows: lowest wins')),
      h('div', {class: 'confirm-grid'}, el.confirmTable, el.confirmChart));
    fill(el.reco, h('section', {class: 'panel reco pending', 'data-testid': 'recommendation-pending'},
      h('div', {class: 'reco-head'}, 'Recommended learning rate'),
      h('p', {class: 'muted'}, 'Appears when the sweep ends: the optimizer and learning rate to train with, the rule '
        + 'that chose it, the bounds for a one-cycle schedule, and Keras code to copy.')));
    const ticker = setInterval(() => { if (state.job && unfinished(state.job)) renderHead(); }, 1000);
    cleanups.push(() => clearInterval(ticker));
    charts = {
      loss: new LrChart(el.loss, {yLabel: 'loss', kind: 'loss', syncKey: `lr-${id}`, height: 330}),
      delta: new LrChart(el.delta, {yLabel: 'loss delta', kind: 'delta', syncKey: `lr-${id}`, height: 230, labels: false}),
      confirm: new LrChart(el.confirmChart, {yLabel: 'held-out loss', kind: 'score', height: 240,
        emptyText: 'No candidate has a held-out loss yet'}),
    };
  }

  // ---------------------------------------------------------------- data in

  async function fetchJob() {
    const response = await send(`/v1/jobs/${id}`, {headers: state.etag ? {'If-None-Match': state.etag} : {}});
    const retryAfter = Number(response.headers.get('Retry-After'));
    state.retryAfter = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 2;
    if (response.status === 304) return null;
    state.etag = response.headers.get('ETag');
    return response.json();
  }

  function goLive() {
    state.events = openEvents(`/v1/jobs/${id}/events`, {
      onEvent: ({event, data}) => {
        if (state.stopped || state.finishing) return;
        if (event === 'progress') onProgress(data);
        else if (event === 'status' && data?.status) {
          if (fmt.TERMINAL.has(data.status)) finish();
          else if (state.job && state.job.status !== data.status) onJob({...state.job, status: data.status});
        }
      },
      onGiveUp: () => { state.events = null; },
    });
    poll();
  }

  async function poll() {
    if (state.stopped || state.finishing) return;
    try {
      const job = await fetchJob();
      if (job) onJob(job);
    } catch (err) {
      state.retryAfter = 3;
    }
    if (state.stopped || state.finishing) return;
    const seconds = state.events ? 5 : Math.min(5, Math.max(1, state.retryAfter));
    later(poll, seconds * 1000);
  }

  function onJob(job) {
    state.job = job;
    renderHead();
    if (job.progress) onProgress(job.progress);
    else renderProgress();
    if (fmt.TERMINAL.has(job.status)) finish();
  }

  function onProgress(progress) {
    if (!state.job) return;
    state.job = {...state.job, progress};
    if (state.job.status === 'queued') state.job.status = 'running';
    for (const arm of progress.arms || []) {
      color(arm.label);
      if (!(arm.lr > 0) || arm.loss == null || !Number.isFinite(arm.loss)) continue;
      const points = state.live.get(arm.label) || [];
      if (!points.length || arm.steps_done > points[points.length - 1].step) {
        points.push({step: arm.steps_done, lr: arm.lr, loss: arm.loss});
        state.live.set(arm.label, points);
      }
    }
    renderProgress();
    renderHead();
    if (!state.result) {
      redraw();
      // Curves exist once a step is recorded (progress and curve points are written together);
      // asking earlier would be a 409 in the console.
      if (progress.steps_done > 0) refreshPartial();
    }
  }

  let partialBusy = false;
  let partialAgain = false;
  async function refreshPartial() {
    if (state.finishing || !(await offersPartialCurves())) return;
    if (partialBusy) { partialAgain = true; return; }
    partialBusy = true;
    try {
      const result = await api(`/v1/jobs/${id}/result?partial=true`);
      if (!state.result && !state.stopped && !state.finishing) {
        state.partial = result;
        redraw();
        renderConfirm(result);
        renderHead();
      }
    } catch { /* the progress points stay on the chart */ } finally {
      partialBusy = false;
      if (partialAgain && !state.finishing) { partialAgain = false; later(refreshPartial, 1000); }
    }
  }

  async function finish() {
    if (state.finishing) return;
    state.finishing = true;
    state.events?.close();
    state.events = null;
    try {
      state.etag = null;
      const job = await fetchJob();
      if (job) state.job = job;
    } catch { /* keep what we have */ }
    if (state.stopped) return;
    renderHead();
    renderProgress();
    await loadResult();
  }

  async function loadResult() {
    const ran = state.job.status === 'succeeded' || state.job.progress?.steps_done > 0;
    try {
      if (!ran) throw new ApiError({title: 'No steps ran'}, 409);
      state.result = await api(`/v1/jobs/${id}/result`);
    } catch (err) {
      state.result = null;
      if (!(err instanceof ApiError && (err.status === 409 || err.status === 404))) {
        el.alerts.append(h('div', {class: 'alert alert-error'}, h('strong', {}, 'Could not load the result'), errorText(err)));
      }
    }
    if (state.stopped) return;
    renderHead();
    redraw();
    renderResult();
  }

  // ---------------------------------------------------------------- rendering

  function color(label) {
    if (!state.colors.has(label)) state.colors.set(label, fmt.ARM_COLORS[state.colors.size % fmt.ARM_COLORS.length]);
    return state.colors.get(label);
  }

  /** The header: built once, its parts updated in place so an open menu survives live updates. */
  let head = null;
  function buildHead() {
    const badge = h('span', {class: 'badge', 'data-testid': 'job-status'});
    const meta = h('div', {class: 'meta-row'});
    const cancelButton = h('button', {class: 'btn btn-danger', type: 'button', 'data-testid': 'cancel-button', onclick: cancel});
    const menu = h('div', {class: 'menu-list', role: 'menu', hidden: true});
    const item = (text, fn, testid) => h('button', {type: 'button', role: 'menuitem', 'data-testid': testid,
      onclick: () => { menu.hidden = true; fn(); }}, text);
    const items = {
      json: item('Result (JSON)', downloadJson, 'download-json'),
      csv: item('Curves (CSV)', downloadCsv, 'download-csv'),
      png: item('Charts (PNG)', downloadPng, 'download-png'),
      remove: item('Delete this job…', deleteJob, 'delete-job'),
    };
    menu.append(...Object.values(items));
    const menuButton = h('button', {class: 'btn', type: 'button', 'aria-haspopup': 'menu', 'data-testid': 'download-menu',
      onclick: (e) => { e.stopPropagation(); menu.hidden = !menu.hidden; }}, 'Download ▾');
    const closeMenu = () => { menu.hidden = true; };
    document.addEventListener('click', closeMenu);
    cleanups.push(() => document.removeEventListener('click', closeMenu));
    fill(el.head,
      h('div', {},
        h('a', {class: 'crumb', href: '#/jobs'}, '← All jobs'),
        h('div', {class: 'row'},
          h('h1', {}, 'Job ', h('span', {class: 'mono', style: {fontSize: '20px'}}, fmt.shortId(id))), badge),
        meta),
      h('span', {class: 'spacer'}),
      h('div', {class: 'btn-group'}, cancelButton, h('div', {class: 'menu'}, menuButton, menu)));
    return {badge, meta, cancelButton, items};
  }

  function renderHead() {
    head ??= buildHead();
    const job = state.job;
    const unfinished = !fmt.TERMINAL.has(job.status);
    const cancelling = Boolean(job.cancel_requested || state.cancelRequested);
    const hasResult = Boolean(state.result || state.partial);
    head.badge.className = `badge ${job.status}`;
    head.badge.textContent = job.status;
    head.cancelButton.hidden = !unfinished;
    head.cancelButton.disabled = cancelling;
    head.cancelButton.textContent = cancelling ? 'Cancelling…' : 'Cancel job';
    head.items.json.disabled = !hasResult;
    head.items.csv.disabled = !hasResult;
    head.items.png.disabled = !(job.progress?.steps_done > 0 || state.result);
    head.items.remove.hidden = unfinished;
    const labels = Object.entries(job.labels || {});
    fill(head.meta,
      h('span', {title: job.created_at}, `submitted ${fmt.relativeTime(job.created_at)}`),
      job.started_at ? h('span', {}, `${unfinished ? 'running for' : 'ran'} ${fmt.duration(job.started_at, job.finished_at)}`) : null,
      job.spec?.dataset?.uri ? h('span', {class: 'mono'}, job.spec.dataset.uri) : null,
      h('button', {class: 'link mono small', type: 'button', title: 'Copy the job id',
        onclick: async () => toast((await copyText(job.id)) ? 'Job id copied' : job.id)}, job.id),
      labels.length ? h('span', {}, labels.map(([k, v]) => h('span', {class: 'chip'}, `${k}: ${v}`))) : null);

    if (job.status === 'failed' && job.error && !el.alerts.querySelector('[data-error]')) {
      const e = job.error;
      el.alerts.append(h('div', {class: 'alert alert-error', 'data-error': '', 'data-testid': 'job-error'},
        h('strong', {}, e.title || 'The job failed'),
        e.detail || '',
        Array.isArray(e.disallowed) && e.disallowed.length
          ? h('div', {}, 'Not allowed: ', e.disallowed.map((d) => h('span', {class: 'chip mono'}, typeof d === 'string' ? d : JSON.stringify(d))))
          : null));
    }
    if (job.status === 'cancelled' && !el.alerts.querySelector('[data-cancelled]')) {
      el.alerts.append(h('div', {class: 'alert alert-warn', 'data-cancelled': ''},
        h('strong', {}, 'Cancelled'), 'The job was cancelled; the curves it recorded before stopping are kept below.'));
    }
  }

  function renderProgress() {
    const job = state.job;
    const p = job.progress;
    if (job.status === 'succeeded') { el.progress.hidden = true; return; }
    el.progress.hidden = false;
    if (job.status === 'queued' || !p) {
      fill(el.progress, h('div', {class: 'row'},
        unfinished(job) ? h('span', {class: 'spinner'}) : null,
        h('span', {class: 'muted'}, job.status === 'queued' ? 'Queued: waiting for a worker to pick this job up…'
          : unfinished(job) ? 'Starting: loading the dataset and building the model…' : 'No steps ran.')));
      return;
    }
    const cls = job.status === 'running' ? '' : 'stopped';
    const confirming = p.phase === 'confirm';
    const verifies = Boolean(job.spec?.sweep?.confirm);
    const budget = confirmBudget(job);
    // An arm's range test is run_steps per seed; steps_total also counts the confirm candidates' steps.
    const armTotal = (p.run_steps || 0) * (job.spec?.sweep?.repeats || 1) || p.steps_total / Math.max(1, (p.arms || []).length);
    const started = (p.confirm || []).length;
    /** One run's card; a run still marked running or pending in a job that ended shows how the job ended. */
    const card = (label, runState, fraction, detail) => h('div', {class: 'arm-card'},
      h('div', {class: 'arm-name'}, h('span', {}, h('span', {class: 'swatch', style: {background: color(label)}}), label),
        h('span', {class: 'arm-state'},
          (unfinished(job) || !['running', 'pending'].includes(runState) ? runState || '' : job.status).replaceAll('_', ' '))),
      h('div', {class: 'progress'}, h('span', {style: {width: fmt.pct(fraction)}})),
      h('div', {class: 'muted mono'}, detail));
    fill(el.progress,
      h('div', {class: 'panel-head'}, h('h2', {}, job.status !== 'running' ? 'Stopped' : confirming ? 'Verifying' : 'Sweeping'),
        h('span', {class: 'hint', 'data-testid': 'progress-text'},
          `${p.steps_done} of ${p.steps_total} steps · ${fmt.pct(p.fraction ?? p.steps_done / p.steps_total)}`)),
      h('div', {class: `progress ${cls}`}, h('span', {style: {width: fmt.pct(p.fraction ?? p.steps_done / p.steps_total)}})),
      verifies ? h('div', {class: 'small muted phase', 'data-testid': 'progress-phase', dataset: {phase: p.phase || 'sweep'}},
        !confirming ? 'Range test first; then each arm trains at a few candidate learning rates to verify the recommendation.'
          : unfinished(job) ? `Range test done; verifying: ${started} candidate${started === 1 ? '' : 's'} started so far, `
            + `${budget ? `${budget} steps each, ` : ''}scored on the held-out rows.`
            : `Stopped while verifying, after ${started} candidate${started === 1 ? '' : 's'} started.`) : null,
      h('div', {class: 'arm-progress'}, (p.arms || []).map((arm) => card(arm.label, arm.state,
        arm.steps_done / (arm.steps_total || armTotal),
        [`step ${arm.steps_done ?? 0}`, arm.lr ? ` · lr ${fmt.lr(arm.lr)}` : '', arm.loss != null ? ` · loss ${fmt.loss(arm.loss)}` : '']))),
      p.confirm?.length ? h('div', {class: 'arm-progress', 'data-testid': 'confirm-progress'}, p.confirm.map((c) => {
        const label = p.arms?.[c.arm_index]?.label ?? `arm ${c.arm_index + 1}`;
        return card(label, c.state, budget ? c.steps_done / budget : 0,
          `candidate ${c.candidate + 1} · lr ${fmt.lr(c.lr)} · step ${c.steps_done}${budget ? ` of ${budget}` : ''}`);
      })) : null);
  }

  /** Chart series from the result, the partial curves, or the progress points, best first. */
  function redraw() {
    if (!charts) return;
    const source = state.result || state.partial;
    const sweep = state.job?.spec?.sweep || {};
    if (source?.arms?.some((arm) => (arm.lrs || []).length)) {
      const range = !state.result && sweep.start_lr && sweep.end_lr ? [sweep.start_lr, sweep.end_lr] : null;
      charts.loss.setLrRange(range);
      charts.delta.setLrRange(range);
      const best = state.result ? bestArm(state.result) : null;
      const rule = state.result ? chosenRule(state.result, best) : null;
      const lossArms = [];
      const deltaArms = [];
      for (const arm of source.arms) {
        const lrs = arm.lrs || [];
        const smoothed = arm.smoothed_losses?.length ? arm.smoothed_losses : smooth(arm.losses || [], sweep.smoothing ?? 0.98);
        const loss_deltas = arm.loss_deltas?.length ? alignToEnd(arm.loss_deltas, lrs.length)
          : deltas(arm.losses || [], sweep.moving_average ?? 20);
        const markers = suggestionEntries(arm).map(([name, lr]) => ({name, lr, recommended: arm === best && name === rule}));
        // A rule that is not one of the suggestions (median3 combines three) still gets its marker.
        const reco = state.result?.recommendation;
        if (arm === best && reco?.learning_rate != null && !markers.some((m) => m.recommended)) {
          markers.push({name: rule || 'recommended', lr: reco.learning_rate, recommended: true});
        }
        const base = {label: arm.label, color: color(arm.label), x: lrs, markers};
        lossArms.push({...base, y: smoothed, faint: state.showRaw ? arm.losses : null});
        deltaArms.push({...base, y: loss_deltas});
      }
      charts.loss.setArms(lossArms);
      charts.delta.setArms(deltaArms);
      return;
    }
    // Progress points only: the sweep's LR range (when the job tells it) fixes the axis, so the curve
    // visibly grows from start_lr towards end_lr.
    const range = sweep.start_lr && sweep.end_lr ? [sweep.start_lr, sweep.end_lr] : null;
    charts.loss.setLrRange(range);
    charts.delta.setLrRange(range);
    const lossArms = [];
    const deltaArms = [];
    for (const [label, points] of state.live) {
      const x = points.map((pt) => pt.lr);
      const perStep = points.map((pt, i) => (i ? (pt.loss - points[i - 1].loss) / Math.max(1, pt.step - points[i - 1].step) : null));
      lossArms.push({label, color: color(label), x, y: points.map((pt) => pt.loss)});
      deltaArms.push({label, color: color(label), x, y: perStep});
    }
    charts.loss.setArms(lossArms);
    charts.delta.setArms(deltaArms);
  }

  function renderResult() {
    const result = state.result;
    const job = state.job;
    if (job.status === 'succeeded' || result?.recommendation) {
      fill(el.reco, result ? recommendationCard(result, id, {partial: job.status !== 'succeeded'}) : null);
    } else {
      fill(el.reco);
    }
    if (!result) {
      if (job.status !== 'succeeded') { // ended before any step: nothing to chart
        el.charts.hidden = true;
        el.progress.hidden = true;
        el.alerts.append(h('div', {class: 'alert alert-info'}, 'No training step ran, so there are no curves. ',
          h('a', {href: '#/new'}, 'Submit a corrected job'), '.'));
      }
      return;
    }
    const diag = diagnosticsList(result);
    el.diagnostics.hidden = !diag.length;
    fill(el.diagnostics, h('h2', {}, 'Diagnostics'), h('ul', {class: 'diag'}, diag));
    renderConfirm(result);
    el.arms.hidden = false;
    fill(el.arms, h('h2', {}, 'Arms and suggestions'), h('div', {class: 'table-wrap'}, armsTable(result)));
    const engine = result.engine;
    fill(el.engine, engine
      ? `Engine: Keras ${engine.keras ?? '?'} · ${engine.backend ?? '?'} · ${engine.device ?? '?'}${engine.seconds != null ? ` · ${engine.seconds.toFixed(1)} s` : ''}`
      : '');
  }

  /** The confirm candidates that ended (all of them once the job has): a table, and held-out loss vs LR. */
  function renderConfirm(result) {
    const arms = (result.arms || []).filter((arm) => arm.confirm?.length);
    el.confirm.hidden = !arms.length;
    if (!arms.length) return;
    const reco = result.recommendation;
    const chosen = (arm, row) => Boolean(reco?.verified && reco.optimizer === arm.label && reco.learning_rate === row.lr);
    const budget = confirmBudget(state.job);
    fill(el.confirmTable, h('table', {class: 'arms', 'data-testid': 'confirm-table'},
      h('thead', {}, h('tr', {},
        ['Arm', 'Round', 'Candidate LR', 'Held-out loss', 'Last train loss', 'Steps', 'Stopped'].map((t) => h('th', {}, t)))),
      h('tbody', {}, arms.flatMap((arm) => arm.confirm.map((row) => h('tr', {
        class: row.winner ? 'best' : '', 'data-testid': 'confirm-row',
        dataset: {arm: arm.label, lr: String(row.lr), winner: String(row.winner), recommended: String(chosen(arm, row))},
      },
      h('td', {}, h('span', {class: 'swatch', style: {background: color(arm.label)}}), arm.label),
      h('td', {class: 'num'}, row.round != null ? String(row.round + 1) : ''),
      h('td', {class: 'num'}, fmt.lr(row.lr)),
      h('td', {class: 'num'}, row.winner
        ? [h('strong', {}, fmt.loss(row.val_loss)), ' ', h('span', {class: 'chip verified', 'data-testid': 'confirm-winner'},
          chosen(arm, row) ? '\u2605 recommended' : '\u2605 best of arm')]
        : fmt.loss(row.val_loss)),
      h('td', {class: 'num'}, fmt.loss([...(row.losses || [])].reverse().find((v) => v != null))),
      h('td', {class: 'num'}, budget ? `${row.steps} of ${budget}` : String(row.steps)),
      h('td', {class: 'wrap'}, stopReasonText(row.stop_reason)))))),
      // Per arm: whether worse candidates enclose its winner, or it lies at an edge and what to change.
      h('ul', {class: 'small muted', 'data-testid': 'confirm-brackets'}, arms.filter((arm) => arm.confirm_bracket).map((arm) => {
        const b = arm.confirm_bracket;
        return h('li', {'data-testid': 'confirm-bracket', dataset: {arm: arm.label, enclosed: String(b.enclosed)}},
          `${arm.label}: `, b.enclosed
            ? `winner enclosed by worse candidates on both sides (${b.candidates} candidates, ${b.rounds} round${b.rounds === 1 ? '' : 's'}).`
            : `winner at the ${b.edge} edge of what was tried: ${b.advice}.`);
      }))));
    // The chart has the scored candidates only (a diverged one has no held-out loss: the table says
    // why), with a little room either side of them (one alone would be a zero-width axis).
    const lrs = arms.flatMap((arm) => arm.confirm.map((row) => row.lr)).filter((lr) => lr > 0);
    charts.confirm.setLrRange([Math.min(...lrs) / 2, Math.max(...lrs) * 2]);
    charts.confirm.setArms(arms.map((arm) => {
      const scored = arm.confirm.filter((row) => row.val_loss != null);
      return {label: arm.label, color: color(arm.label), x: scored.map((row) => row.lr), y: scored.map((row) => row.val_loss),
        markers: scored.filter((row) => row.winner)
          .map((row) => ({name: chosen(arm, row) ? 'verified' : 'best', lr: row.lr, recommended: chosen(arm, row)}))};
    }));
  }

  function armsTable(result) {
    const best = bestArm(result);
    const rules = [...new Set(result.arms.flatMap((arm) => suggestionEntries(arm).map(([name]) => name)))];
    return h('table', {class: 'arms', 'data-testid': 'arms-table'},
      h('thead', {}, h('tr', {},
        ['Arm', 'Stopped', 'Lowest loss', ...rules, 'Recommended', 'base_lr → max_lr'].map((t) => h('th', {}, t)))),
      h('tbody', {}, result.arms.map((arm) => {
        const byRule = Object.fromEntries(suggestionEntries(arm));
        const params = Object.entries(arm.optimizer?.params || {}).map(([k, v]) => `${k}=${v}`).join(', ');
        return h('tr', {class: arm === best ? 'best' : ''},
          h('td', {}, h('span', {class: 'swatch', style: {background: color(arm.label)}}), h('strong', {}, arm.label),
            h('div', {class: 'small muted mono'}, `${arm.optimizer?.name ?? ''}${params ? `(${params})` : ''}`)),
          h('td', {}, stopReasonText(arm.stop_reason), h('div', {class: 'small muted'}, `${(arm.lrs || []).length} steps`)),
          h('td', {class: 'num'}, arm.min_loss != null ? `${fmt.loss(arm.min_loss)} @ ${fmt.lr(arm.min_loss_lr)}` : '—'),
          rules.map((rule) => h('td', {class: 'num'}, fmt.lr(byRule[rule]))),
          h('td', {class: 'num'}, h('strong', {}, fmt.lr(arm.recommended_lr))),
          h('td', {class: 'num'}, arm.lr_bounds ? `${fmt.lr(arm.lr_bounds.base_lr)} → ${fmt.lr(arm.lr_bounds.max_lr)}` : '—'));
      })));
  }

  // ---------------------------------------------------------------- actions

  async function cancel() {
    state.cancelRequested = true;
    renderHead();
    try {
      await api(`/v1/jobs/${id}/cancel`, {method: 'POST'});
      toast('Cancel requested: the job stops at its next checkpoint');
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 409)) {
        state.cancelRequested = false;
        toast(`Could not cancel: ${errorText(err)}`);
      }
    }
    renderHead();
    if (!state.events && !state.finishing) { clearTimers(); poll(); }
  }

  async function deleteJob() {
    if (!window.confirm(`Delete job ${fmt.shortId(id)} and its results?`)) return;
    try {
      await api(`/v1/jobs/${id}`, {method: 'DELETE'});
      toast('Job deleted');
      location.hash = '#/jobs';
    } catch (err) {
      toast(`Could not delete: ${errorText(err)}`);
    }
  }

  function downloadJson() {
    const result = state.result || state.partial;
    download(new Blob([JSON.stringify(result, null, 2)], {type: 'application/json'}), `lrrt-${fmt.shortId(id)}.json`);
  }

  function downloadCsv() {
    const result = state.result || state.partial;
    const rows = [['arm', 'step', 'lr', 'loss', 'smoothed_loss', 'loss_delta', 'val_loss']];
    for (const arm of result.arms || []) {
      const n = (arm.lrs || []).length;
      const d = alignToEnd(arm.loss_deltas, n);
      for (let i = 0; i < n; i += 1) {
        rows.push([arm.label, i, arm.lrs[i], arm.losses?.[i], arm.smoothed_losses?.[i], d[i], arm.val_losses?.[i]]);
      }
    }
    const csv = rows.map((r) => r.map(csvCell).join(',')).join('\r\n') + '\r\n';
    download(new Blob([csv], {type: 'text/csv'}), `lrrt-${fmt.shortId(id)}.csv`);
  }

  async function downloadPng() {
    try {
      const response = await send(`/v1/jobs/${id}/plot.png?kind=both`, {headers: {Accept: 'image/png'}});
      download(await response.blob(), `lrrt-${fmt.shortId(id)}.png`);
    } catch (err) {
      toast(`Could not download the chart: ${errorText(err)}`);
    }
  }

  function clearTimers() { timers.forEach(clearTimeout); timers.clear(); }

  return () => {
    state.stopped = true;
    state.events?.close();
    clearTimers();
    cleanups.forEach((fn) => fn());
    charts?.loss.destroy();
    charts?.delta.destroy();
    charts?.confirm.destroy();
  };
}

/** Steps each confirm candidate trains: the progress's `confirm_steps` (`Confirm.budget`), else `sweep.confirm.steps`. */
function confirmBudget(job) {
  return job?.progress?.confirm_steps || job?.spec?.sweep?.confirm?.steps || null;
}

/**
 * Whether GET /v1/jobs/{id}/result takes `partial=true` (the curves of a running job so far), read
 * from the OpenAPI document once, so the page never probes with requests that fail.
 */
let partialCurves = null;
function offersPartialCurves() {
  partialCurves ??= api('/openapi.json')
    .then((doc) => (doc.paths?.['/v1/jobs/{job_id}/result']?.get?.parameters || []).some((p) => p.name === 'partial'))
    .catch(() => false);
  return partialCurves;
}

function unfinished(job) { return !fmt.TERMINAL.has(job.status); }

function csvCell(value) {
  if (value == null) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
