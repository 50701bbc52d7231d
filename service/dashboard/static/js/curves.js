// Curve arithmetic for the live view of a running job, whose partial curves come without the
// engine's smoothing; a finished job's result carries the engine's own arrays and these are unused.

/** fastai's bias-corrected exponential moving average (beta = the sweep's `smoothing`). */
export function smooth(losses, beta = 0.98) {
  const out = [];
  let avg = 0;
  let n = 0;
  for (const loss of losses) {
    if (loss == null || !Number.isFinite(loss)) { out.push(null); continue; }
    n += 1;
    avg = beta * avg + (1 - beta) * loss;
    out.push(avg / (1 - beta ** n));
  }
  return out;
}

/** The tutorial's loss delta: (loss[i] - loss[i - k]) / k, null for the first k steps. */
export function deltas(losses, k = 20) {
  return losses.map((loss, i) => {
    const before = losses[i - k];
    return i >= k && loss != null && before != null ? (loss - before) / k : null;
  });
}

/** Deltas shorter than the LRs belong to the last steps (each needs k steps before it). */
export function alignToEnd(values, length) {
  if (!values || values.length >= length) return values || [];
  return Array(length - values.length).fill(null).concat(values);
}
