// LR charts on uPlot (vendored, see ../vendor/README.md): a log-scaled LR axis, every arm overlaid,
// each suggestion marked with a dot and its name, the recommended LR as a dashed line, and hover
// values in the legend. The two charts of a job share their cursor.

import * as fmt from './format.js';

const AXIS = {stroke: '#64748b', grid: {stroke: '#eef2f7', width: 1}, ticks: {stroke: '#e2e8f0', width: 1}};

/**
 * One chart. `setArms(arms)` redraws it from
 *   [{label, color, x: [lr...], y: [value...], faint?: [value...], markers: [{name, lr, recommended}]}]
 * where `faint` is drawn as a thin line of the same color behind `y` (the raw losses behind the
 * smoothed ones). Markers are dots named by their rule (`labels: false`: dots only, but for the
 * recommended one). The number of points drawn is kept in the container's `data-points`. `kind` picks
 * the value axis: `loss` (curves), `delta` (their derivative) or `score` (a few measured points).
 */
export class LrChart {
  constructor(container, {yLabel, kind = 'loss', syncKey, height = 300, labels = true, emptyText = 'Waiting for the first steps…'}) {
    this.container = container;
    this.labels = labels;
    this.yLabel = yLabel;
    this.kind = kind;
    this.syncKey = syncKey;
    this.height = height;
    this.arms = [];
    this.plot = null;
    this.shape = '';
    this.empty = container.appendChild(Object.assign(document.createElement('div'), {
      className: 'chart-empty', textContent: emptyText,
    }));
    container.dataset.points = '0';
    this.resize = new ResizeObserver(() => this.plot?.setSize(this.size()));
    this.resize.observe(container);
  }

  size() {
    return {width: Math.max(280, this.container.clientWidth), height: this.height};
  }

  destroy() {
    this.resize.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }

  /** Fix the LR axis to the sweep's range (a running job's curve then grows across it), or null. */
  setLrRange(range) {
    this.lrRange = range && range[0] > 0 && range[1] > range[0] ? range : null;
  }

  setArms(arms) {
    this.arms = arms.map((arm) => clean(arm));
    const drawn = this.arms.filter((arm) => arm.x.length);
    const points = drawn.reduce((n, arm) => n + arm.x.length, 0);
    this.container.dataset.points = String(points);
    this.empty.hidden = points > 0;
    if (!points) return;

    const withFaint = drawn.some((arm) => arm.faint);
    const shape = JSON.stringify([drawn.map((a) => [a.label, a.color, a.x.length < 40]), withFaint]);
    const tables = [];
    const series = [{label: 'learning rate', value: (u, v) => (v == null ? '—' : fmt.lr(v))}];
    for (const arm of drawn) {
      if (withFaint) {
        tables.push([arm.x, arm.faint || arm.y.map(() => null)]);
        series.push({label: `${arm.label} (raw)`, stroke: fade(arm.color), width: 1, spanGaps: true,
          points: {show: false}, value: (u, v) => (v == null ? '—' : fmt.loss(v))});
      }
      tables.push([arm.x, arm.y]);
      series.push({
        label: arm.label, stroke: arm.color, width: 2, spanGaps: true,
        points: {show: arm.x.length < 40, size: 6, fill: arm.color},
        value: (u, v) => (v == null ? '—' : fmt.loss(v)),
      });
    }
    const data = window.uPlot.join(tables);
    this.yRange = {delta: deltaRange, score: scoreRange}[this.kind]?.(drawn) ?? lossRange(drawn);

    if (this.plot && shape === this.shape) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.shape = shape;
    this.plot = new window.uPlot(this.options(series), data, this.container);
  }

  options(series) {
    return {
      ...this.size(),
      series,
      scales: {
        x: {time: false, distr: 3, log: 10, range: (u, min, max) => this.lrRange || [min, max]},
        y: {range: () => this.yRange},
      },
      axes: [
        {...AXIS, label: 'learning rate (log scale)', labelSize: 24, values: lrTickLabels, filter: (u, splits) => splits},
        {...AXIS, label: this.yLabel, labelSize: 28, size: 60},
      ],
      cursor: {sync: this.syncKey ? {key: this.syncKey} : undefined, drag: {x: true, y: false}, points: {size: 7}},
      legend: {live: true},
      hooks: {draw: [(u) => this.drawMarkers(u)]},
    };
  }

  drawMarkers(u) {
    const ctx = u.ctx;
    const px = window.uPlot.pxRatio || 1;
    const {left, top, width, height} = u.bbox;
    const [xmin, xmax] = [u.scales.x.min, u.scales.x.max];
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.font = `${11 * px}px system-ui, "DejaVu Sans", sans-serif`;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'left';
    // Where each marker sits; dots are drawn recommended-last (on top), labels recommended-first (a
    // free spot is always found for it). With many arms only the recommended marker is named: the
    // others are dots, their values in the arms table.
    const spots = [];
    for (const arm of this.arms) {
      for (const marker of arm.markers) {
        if (!(marker.lr > 0) || marker.lr < xmin || marker.lr > xmax) continue;
        const value = valueAt(arm, marker.lr);
        if (value == null) continue;
        const y = Math.min(top + height - 4 * px, Math.max(top + 4 * px, u.valToPos(value, 'y', true)));
        spots.push({arm, marker, x: u.valToPos(marker.lr, 'x', true), y});
      }
    }
    spots.sort((a, b) => Number(a.marker.recommended) - Number(b.marker.recommended));
    for (const {arm, marker, x, y} of spots) {
      if (marker.recommended) {
        ctx.save();
        ctx.strokeStyle = arm.color;
        ctx.globalAlpha = 0.55;
        ctx.lineWidth = 1.5 * px;
        ctx.setLineDash([5 * px, 4 * px]);
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        ctx.restore();
      }
      ctx.beginPath();
      ctx.arc(x, y, (marker.recommended ? 6 : 4.5) * px, 0, 2 * Math.PI);
      ctx.fillStyle = marker.recommended ? arm.color : '#fff';
      ctx.strokeStyle = arm.color;
      ctx.lineWidth = 2 * px;
      ctx.fill();
      ctx.stroke();
    }
    const many = this.arms.length >= MANY_ARMS;
    const placed = [];
    let skipped = 0;
    for (const {arm, marker, x, y} of [...spots].sort((a, b) => Number(b.marker.recommended) - Number(a.marker.recommended))) {
      if ((!this.labels || many) && !marker.recommended) continue;
      const text = marker.recommended ? `★ ${marker.name} ${fmt.lr(marker.lr)}` : marker.name;
      if (!placeLabel(ctx, placed, text, x, y, arm.color, px, {left, top, width, height}, marker.recommended)) skipped += 1;
    }
    ctx.restore();
    this.container.dataset.labels = String(placed.length);
    this.container.dataset.labelsSkipped = String(skipped);
  }
}

/** From this many arms on, suggestion labels other than the recommended one are left out. */
const MANY_ARMS = 4;

/** A label near (x, y), moved up or down until it overlaps no label placed before it. When no spot is
 * free it is left out (returns false) rather than drawn over another: a recommended label, placed
 * first, always fits. */
function placeLabel(ctx, placed, text, x, y, color, px, box, bold) {
  ctx.font = `${bold ? '600 ' : ''}${11 * px}px system-ui, "DejaVu Sans", sans-serif`;
  const w = ctx.measureText(text).width + 8 * px;
  const hgt = 16 * px;
  let lx = x + 8 * px;
  if (lx + w > box.left + box.width) lx = x - 8 * px - w;
  const candidates = [];
  for (let step = 0; step < 12; step += 1) {
    const offset = (step % 2 ? 1 : -1) * Math.ceil(step / 2) * (hgt + 2 * px);
    candidates.push(y - hgt - 4 * px + offset);
  }
  let ly = null;
  for (const cy of candidates) {
    if (cy < box.top || cy + hgt > box.top + box.height) continue;
    if (!placed.some((p) => lx < p.x + p.w && lx + w > p.x && cy < p.y + p.h && cy + hgt > p.y)) { ly = cy; break; }
  }
  if (ly == null) {
    if (!bold) return false;
    ly = candidates[0];
  }
  placed.push({x: lx, y: ly, w, h: hgt});
  ctx.fillStyle = 'rgba(255,255,255,0.88)';
  ctx.strokeStyle = color;
  ctx.lineWidth = 1 * px;
  ctx.beginPath();
  ctx.roundRect(lx, ly, w, hgt, 4 * px);
  ctx.fill();
  ctx.stroke();
  ctx.fillStyle = color;
  ctx.fillText(text, lx + 4 * px, ly + hgt / 2);
  return true;
}

/** Label the decades; in a range narrower than two decades, the 1, 2 and 5 multiples. (The axis
 * keeps every log tick, see `filter` below, so a narrow range still gets labels.) */
function lrTickLabels(u, splits) {
  const mantissa = (v) => v / 10 ** Math.floor(Math.log10(v) + 1e-9);
  const near = (a, b) => Math.abs(a - b) < 1e-6;
  const decades = splits.filter((v) => v != null && near(mantissa(v), 1));
  const shown = decades.length >= 2 ? [1] : [1, 2, 5];
  return splits.map((v) => (v != null && shown.some((m) => near(mantissa(v), m)) ? fmt.lr(v) : ''));
}

/** Only points with a positive finite LR and a finite value (the API sends null for NaN/inf). */
function clean(arm) {
  const x = [];
  const y = [];
  const faint = arm.faint ? [] : null;
  for (let i = 0; i < (arm.x || []).length; i += 1) {
    const lr = arm.x[i];
    if (!(lr > 0) || !Number.isFinite(lr)) continue;
    if (x.length && lr <= x[x.length - 1]) continue; // uPlot.join needs ascending x
    const value = arm.y?.[i];
    x.push(lr);
    y.push(Number.isFinite(value) ? value : null);
    if (faint) faint.push(Number.isFinite(arm.faint[i]) ? arm.faint[i] : null);
  }
  return {...arm, x, y, faint, markers: arm.markers || []};
}

function valueAt(arm, lr) {
  let lo = 0;
  let hi = arm.x.length - 1;
  if (hi < 0) return null;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (arm.x[mid] < lr) lo = mid + 1; else hi = mid;
  }
  const near = lo > 0 && Math.abs(Math.log(arm.x[lo - 1] / lr)) < Math.abs(Math.log(arm.x[lo] / lr)) ? lo - 1 : lo;
  for (let d = 0; d < arm.y.length; d += 1) { // nearest finite value
    for (const i of [near - d, near + d]) if (arm.y[i] != null) return arm.y[i];
  }
  return null;
}

function finite(arms, key = 'y') {
  return arms.flatMap((arm) => (arm[key] || []).filter((v) => v != null && Number.isFinite(v)));
}

/** Loss axis: from the lowest point to a little above where the curves started, so a diverging
 * tail (losses in the thousands) does not flatten the part of the curve that matters. */
function lossRange(arms) {
  const values = finite(arms).concat(finite(arms, 'faint'));
  if (!values.length) return [0, 1];
  const lo = Math.min(...values);
  const hiData = Math.max(...values);
  const starts = arms.map((arm) => {
    const head = arm.y.filter((v) => v != null).slice(0, Math.max(3, Math.ceil(arm.y.length * 0.05)));
    return head.length ? Math.max(...head) : -Infinity;
  });
  const cap = Math.max(...starts) * 1.35;
  return padded(lo, Number.isFinite(cap) && cap > lo ? Math.min(hiData, cap) : hiData);
}

/** Score axis (held-out losses of confirm candidates): each point is a measurement, so all of them show. */
function scoreRange(arms) {
  const values = finite(arms);
  return values.length ? padded(Math.min(...values), Math.max(...values)) : [0, 1];
}

function padded(lo, hi) {
  const pad = (hi - lo || Math.abs(hi) || 1) * 0.08;
  return [lo - pad, hi + pad];
}

/** Delta axis: the 2nd..98th percentile and zero, padded: one spike must not hide the rest. */
function deltaRange(arms) {
  const values = finite(arms).sort((a, b) => a - b);
  if (!values.length) return [-1, 1];
  const q = (p) => values[Math.min(values.length - 1, Math.max(0, Math.round(p * (values.length - 1))))];
  const lo = Math.min(0, q(0.02));
  const hi = Math.max(0, q(0.98));
  const pad = (hi - lo || 1) * 0.1;
  return [lo - pad, hi + pad];
}

function fade(hex) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, 0.28)`;
}
