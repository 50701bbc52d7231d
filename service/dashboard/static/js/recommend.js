// The recommendation card, the rules and diagnostics in plain words, and copy-ready Keras code.

import {h, copyText, toast} from './dom.js';
import * as fmt from './format.js';

/** What each suggestion rule means (docs/design.md, "Suggestion rules users already know"). */
export const RULES = {
  median3: 'Median of three rules: the middle of valley, steepest and minimum (on a log scale). It had the lowest regret against learning rates found by training on a grid (bench/quality.py).',
  steepest: 'Steepest descent (pytorch-lr-finder): the learning rate where its smoothed loss falls fastest, step to step.',
  valley: "Valley (fastai's default): inside the longest stretch where the loss keeps falling, before its minimum.",
  minimum: 'Minimum / 10: a tenth of the learning rate at the lowest smoothed loss (fastai\u2019s classic rule).',
  slide: "Slide (fastai): the largest learning rate before the loss starts rising faster than a tolerance.",
  confirm: 'Confirm (sweep.confirm): every arm trained at a few constant candidate learning rates from the job\u2019s initial weights; this one reached the lowest loss on the held-out rows.',
};

/** Diagnostics flags in plain words: [headline, what it means and what to change]. */
const DIAGNOSTICS = {
  never_diverged: ['The loss never rose',
    'The loss did not rise after its minimum, so the top of the useful range is not known. Raise end_lr or the number of steps and run it again.'],
  never_fell: ['The loss never fell',
    'It did not fall below its starting level anywhere in the range, so there is no learning rate to recommend. Lower start_lr; if the curve is noisy, raise batch_size.'],
  raw_spike: ['The raw loss blew up',
    'A run of batch losses jumped far above the best smoothed loss, which the smoothed curve (and the divergence stop) hid. Learning rates from there up do not train.'],
  diverged_early: ['The loss diverged early',
    'It blew up in the first part of the sweep: even small learning rates are too high here. Lower start_lr, normalize the inputs, or check that the loss matches the labels.'],
  flat: ['The loss stayed flat',
    'It barely moved across the whole sweep, so there is no learning rate to recommend. Widen the learning-rate range (raise end_lr), or check the labels against the loss and normalize the inputs.'],
  nan_at_step: ['The loss became NaN',
    'From that step on the loss was not a number and the arm stopped. Usually the learning rate is far too high, the inputs are not normalized, or the loss does not fit the outputs.'],
  noisy: ['The curve is noisy',
    'Batch-to-batch noise is large next to the trend, so the suggestions may move from run to run. Use a larger batch_size, stronger smoothing, or repeats to see the spread.'],
  too_few_points: ['Too few points',
    'There are too few points for the rules to be reliable. Raise num_steps or lower start_lr.'],
  unstable: ['The suggestions disagree across seeds',
    'The spread over repeats is wide: treat the recommended value as a rough range, not a point.'],
};

const STOP_REASONS = {
  diverged: 'stopped when the loss diverged',
  completed: 'ran every step',
  finished: 'ran every step',
  end: 'ran every step',
  max_steps: 'ran every step',
  nan: 'stopped at a NaN loss',
  cancelled: 'cancelled',
  time_limit: 'stopped at the time limit',
};

export function stopReasonText(reason) {
  return reason ? (STOP_REASONS[reason] || reason.replaceAll('_', ' ')) : '—';
}

/** A suggestion is a number, or an object carrying its LR (and perhaps its rule's details). */
export function suggestionLr(value) {
  if (typeof value === 'number') return value;
  return value?.lr ?? value?.learning_rate ?? value?.value ?? null;
}

export function suggestionEntries(arm) {
  return Object.entries(arm.suggestions || {})
    .map(([name, value]) => [name, suggestionLr(value)])
    .filter(([, lr]) => lr != null && Number.isFinite(lr));
}

/** The rule that produced the recommended LR: named by the API, or the suggestion equal to it. */
export function chosenRule(result, arm) {
  const named = result.recommendation?.rule ?? arm?.recommended_rule ?? arm?.rule;
  if (named) return named;
  const target = result.recommendation?.learning_rate ?? arm?.recommended_lr;
  if (!arm || target == null) return null;
  const match = suggestionEntries(arm).find(([, lr]) => Math.abs(lr - target) <= 1e-9 * Math.max(1, Math.abs(target)));
  return match ? match[0] : null;
}

export function bestArm(result) {
  const label = result.best_arm ?? result.recommendation?.optimizer;
  return (result.arms || []).find((arm) => arm.label === label) || null;
}

// ------------------------------------------------------------------ Keras code

const KERAS_CLASSES = {
  sgd: 'SGD', adam: 'Adam', adamw: 'AdamW', rmsprop: 'RMSprop', adagrad: 'Adagrad', adadelta: 'Adadelta',
  adamax: 'Adamax', nadam: 'Nadam', ftrl: 'Ftrl', lion: 'Lion', lamb: 'Lamb', adafactor: 'Adafactor',
};

function pyValue(value) {
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (value == null) return 'None';
  if (typeof value === 'number') return String(value);
  return JSON.stringify(String(value));
}

/** `keras.optimizers.Adam(\n    learning_rate=...,\n    beta_1=0.9,\n)`: one argument a line, so it fits the card. */
function optimizerCall(optimizer, learningRate) {
  const cls = KERAS_CLASSES[optimizer?.name] || optimizer?.name || 'Adam';
  const args = [`learning_rate=${learningRate}`]
    .concat(Object.entries(optimizer?.params || {}).map(([k, v]) => `${k}=${pyValue(v)}`));
  return `keras.optimizers.${cls}(\n${args.map((a) => `    ${a},`).join('\n')}\n)`;
}

/** {constant, oneCycle}: Python snippets that run as they are (tests exec them with Keras). */
export function kerasCode(result, jobId) {
  const arm = bestArm(result);
  const reco = result.recommendation;
  const rule = chosenRule(result, arm);
  const lr = reco.learning_rate;
  const bounds = reco.one_cycle || arm?.lr_bounds || {};
  const maxLr = bounds.max_lr ?? lr;
  const baseLr = bounds.base_lr ?? maxLr / 10;
  const finalLr = bounds.final_lr ?? baseLr / 10;
  const pctStart = bounds.pct_start ?? 0.3;
  const header = [`# lrrt job ${fmt.shortId(jobId)}: ${reco.optimizer}`, rule ? `# rule "${rule}"` : null];
  const constant = [
    'import keras',
    '',
    ...header.filter(Boolean),
    `optimizer = ${optimizerCall(arm?.optimizer, fmt.pyFloat(lr))}`,
    '',
  ].join('\n');
  const oneCycle = [
    'import keras',
    '',
    ...header.filter(Boolean),
    '# One-cycle: warm up linearly from base_lr to',
    '# max_lr, then anneal (cosine) down to final_lr.',
    `base_lr = ${fmt.pyFloat(baseLr)}`,
    `max_lr = ${fmt.pyFloat(maxLr)}`,
    `final_lr = ${fmt.pyFloat(finalLr)}`,
    '# epochs * steps_per_epoch of your training run:',
    'total_steps = 10_000',
    `warmup_steps = int(${pctStart} * total_steps)`,
    'schedule = keras.optimizers.schedules.CosineDecay(',
    '    initial_learning_rate=base_lr,',
    '    warmup_target=max_lr,',
    '    warmup_steps=warmup_steps,',
    '    decay_steps=total_steps - warmup_steps,',
    '    alpha=final_lr / max_lr,',
    ')',
    `optimizer = ${optimizerCall(arm?.optimizer, 'schedule')}`,
    '',
  ].join('\n');
  return {constant, oneCycle};
}

// ------------------------------------------------------------------ the card

/** The card; `partial` when the curves are those of a cancelled or failed job. */
export function recommendationCard(result, jobId, {partial = false} = {}) {
  const reco = result.recommendation;
  if (!reco || reco.learning_rate == null) {  // withheld by the engine: its reason, and no code to copy
    const reason = result.recommendation_reason || 'no arm produced a usable curve';
    return h('section', {class: 'panel reco pending', 'data-testid': 'recommendation-card'},
      h('div', {class: 'reco-head'}, 'Recommendation'),
      h('p', {'data-testid': 'no-recommendation'}, `No recommendation: ${reason}.`),
      h('p', {class: 'muted small'}, 'See the diagnostics below for what to change.'));
  }
  const arm = bestArm(result);
  const rule = chosenRule(result, arm);
  const bounds = arm?.lr_bounds;
  const cycle = reco.one_cycle;
  const code = kerasCode(result, jobId);
  const pre = h('pre', {'data-testid': 'keras-code'}, h('code', {}, code.constant));
  let current = 'constant';
  const copy = h('button', {class: 'btn btn-sm copy', type: 'button', onclick: async () => {
    toast((await copyText(code[current])) ? 'Keras code copied' : 'Select the code and copy it');
  }}, 'Copy');
  const tab = (key, text) => h('label', {},
    h('input', {type: 'radio', name: 'code-kind', value: key, checked: key === current, onchange: () => {
      current = key;
      pre.firstChild.textContent = code[key];
    }}), text);

  const spread = arm?.repeats?.iqr_log10?.recommended;
  return h('section', {class: `panel reco${partial ? ' partial' : ''}`, 'data-testid': 'recommendation-card'},
    h('div', {class: 'reco-head'}, partial ? 'Suggested from the partial curves' : 'Recommended learning rate'),
    partial ? h('div', {class: 'alert alert-warn small', style: {margin: '8px 0'}},
      'The job did not finish, so this comes from the steps it ran. Run it to the end before trusting it.') : null,
    h('div', {class: 'reco-lr', 'data-testid': 'recommended-lr'}, fmt.lr(reco.learning_rate)),
    h('div', {class: 'reco-opt'}, reco.optimizer,
      arm?.optimizer?.name ? h('span', {class: 'muted small'}, `  keras.optimizers.${KERAS_CLASSES[arm.optimizer.name] || arm.optimizer.name}`) : null),
    verification(reco),
    h('dl', {},
      h('dt', {}, 'Rule'), h('dd', {}, rule ? h('strong', {}, rule) : '—'),
      reco.verified ? [
        h('dt', {}, 'Held-out loss'), h('dd', {class: 'mono'}, fmt.loss(reco.val_loss)),
        h('dt', {}, 'Range test alone'), h('dd', {class: 'mono', 'data-testid': 'range-test-lr'}, fmt.lr(reco.range_test_lr)),
      ] : null,
      bounds ? [h('dt', {}, 'Cyclical bounds'), h('dd', {class: 'mono'}, `base_lr ${fmt.lr(bounds.base_lr)} · max_lr ${fmt.lr(bounds.max_lr)}`)] : null,
      cycle ? [h('dt', {}, 'One-cycle'), h('dd', {class: 'mono'}, `${fmt.lr(cycle.base_lr)} → ${fmt.lr(cycle.max_lr)}`)] : null,
      arm?.min_loss != null ? [h('dt', {}, 'Lowest loss'), h('dd', {class: 'mono'}, `${fmt.loss(arm.min_loss)} at ${fmt.lr(arm.min_loss_lr)}`)] : null,
      spread != null
        ? [h('dt', {}, 'Across seeds'), h('dd', {class: 'mono'}, `IQR ${spread.toFixed(2)} decades (${arm.repeats.seeds?.length ?? '?'} seeds)`)]
        : null),
    rule ? h('div', {class: 'rule-text'},
      RULES[rule] || rule,
      arm?.rules?.[rule] ? h('div', {class: 'muted small', style: {marginTop: '4px'}}, `Here: ${arm.rules[rule]}.`) : null) : null,
    h('div', {class: 'row', style: {marginTop: '14px'}},
      h('div', {class: 'segmented'}, tab('constant', 'Constant LR'), tab('oneCycle', 'One-cycle schedule'))),
    h('div', {class: 'code'}, pre, copy));
}

/** Whether the number was measured (`sweep.confirm` trained the candidates) or read off the curves,
 * with the criterion the API names either way: a range test alone is a guess worth saying so. */
function verification(reco) {
  return h('div', {class: `verification ${reco.verified ? 'verified' : 'unverified'}`, 'data-testid': 'verification',
    dataset: {verified: String(Boolean(reco.verified))}},
  h('strong', {}, reco.verified ? 'Verified by training' : 'Not verified'),
  reco.criterion ? `: ${reco.criterion}` : '');
}

/** Every arm's diagnostics in plain words (and a reassuring line when there are none). */
export function diagnosticsList(result) {
  const items = [];
  for (const arm of result.arms || []) {
    for (const flag of arm.diagnostics || []) {
      const code = typeof flag === 'string' ? flag : (flag.code ?? flag.flag ?? flag.type ?? flag.name ?? 'note');
      const [title, text] = DIAGNOSTICS[code] || [code.replaceAll('_', ' '), ''];
      const step = typeof flag === 'object' ? (flag.step ?? flag.at_step) : null;
      const detail = typeof flag === 'object' ? (flag.message ?? flag.detail) : null;
      items.push(h('li', {dataset: {code}},
        h('strong', {}, `${arm.label}: ${title}${step != null ? ` (step ${step})` : ''}`),
        text || detail, text && detail ? h('div', {class: 'small muted', style: {marginTop: '4px'}}, `Engine: ${detail}.`) : null));
    }
  }
  if (!items.length && (result.arms || []).some((arm) => (arm.lrs || []).length)) {
    items.push(h('li', {class: 'good'}, h('strong', {}, 'No warnings'),
      'The engine flagged nothing unusual in these curves.'));
  }
  return items;
}
