// The submit page. Fields, defaults, limits and help texts come from the job spec's JSON schema
// (served at /dashboard/form.json from lrrt/spec.py), so the form follows the spec. The API is
// the validator: its problem `errors` are shown next to the fields they name.

import {api, ApiError, fieldErrors, newIdempotencyKey, send} from './api.js';
import {h, fill, loading} from './dom.js';
import * as fmt from './format.js';
import {errorText} from './jobs.js';

const DRAFT_KEY = 'lrrt.draftModel';
const LOSSES = [
  'sparse_categorical_crossentropy', 'categorical_crossentropy', 'binary_crossentropy',
  'mean_squared_error', 'mean_absolute_error', 'huber', 'kl_divergence',
];

let formDescription = null;

export function renderSubmitPage(app) {
  let stopped = false;
  fill(app, loading('Loading the form…'));
  (async () => {
    try {
      formDescription ??= await api('/dashboard/form.json');
      if (!stopped) build(app, formDescription);
    } catch (err) {
      fill(app, h('div', {class: 'alert alert-error'}, h('strong', {}, 'Could not load the form'), errorText(err)));
    }
  })();
  return () => { stopped = true; };
}

/** Schema helpers: a property of a schema definition, with `anyOf: [T, null]` unwrapped. A `T` that is a
 * `$ref` (an object field such as `sweep.confirm`) is followed to its definition, whose name is kept
 * in `ref` so that the definition's own fields can be read with `schemaField(schema, ref, name)`. */
function schemaField(schema, defName, name) {
  const def = defName ? schema.$defs?.[defName] : schema;
  const prop = def?.properties?.[name];
  if (!prop) return null;
  const inner = (prop.anyOf || []).find((s) => s.$ref || (s.type && s.type !== 'null')) || prop;
  const ref = inner.$ref?.split('/').pop();
  return {...(ref ? schema.$defs?.[ref] : inner), ref, default: prop.default, description: prop.description,
    title: prop.title, nullable: Boolean(prop.anyOf?.some((s) => s.type === 'null'))};
}

function build(app, desc) {
  const schema = desc.schema;
  const idempotencyKey = newIdempotencyKey();
  const form = h('form', {novalidate: true, autocomplete: 'off', 'data-testid': 'submit-form'});
  const summaryBox = h('div', {'data-testid': 'form-errors'});

  // ------------------------------------------------------------ field builders
  /** A labelled control inside a wrapper named by `path` (where the API's errors for it land). */
  function field(path, label, control, hint) {
    return h('div', {class: 'field', dataset: {field: path}},
      h('label', {class: 'field-label', for: control.id || null}, label),
      control,
      hint ? h('div', {class: 'field-hint'}, hint) : null,
      h('div', {class: 'field-error', 'data-testid': `error-${path}`}));
  }

  function numberInput(path, spec, {placeholder} = {}) {
    const input = h('input', {
      type: 'number', step: 'any', id: `f-${path}`, name: path, inputmode: 'decimal',
      min: spec?.minimum ?? spec?.exclusiveMinimum, max: spec?.maximum ?? spec?.exclusiveMaximum,
      placeholder: placeholder ?? (spec?.default != null ? String(spec.default) : ''),
    });
    if (spec?.default != null) input.value = numberText(spec.default);
    return input;
  }

  function selectInput(path, options, value) {
    return h('select', {id: path ? `f-${path}` : null, name: path || null},
      options.map((o) => h('option', {value: o, selected: o === value}, o)));
  }

  function checkbox(path, spec, text) {
    const input = h('input', {type: 'checkbox', id: `f-${path}`, name: path, checked: Boolean(spec?.default)});
    return h('div', {class: 'field', dataset: {field: path}},
      h('label', {class: 'check', title: spec?.description || ''}, input, text),
      spec?.description ? h('div', {class: 'field-hint'}, spec.description) : null,
      h('div', {class: 'field-error'}));
  }

  const sweepSpec = (name) => schemaField(schema, 'Sweep', name);
  const dataSpec = (name) => schemaField(schema, 'DatasetRef', name);

  // ------------------------------------------------------------ 1. model
  const modelText = h('textarea', {id: 'f-model', name: 'model', rows: 12, spellcheck: 'false',
    placeholder: 'Paste the output of model.to_json() here, or upload the .json file.', 'data-testid': 'model-input'});
  try { modelText.value = localStorage.getItem(DRAFT_KEY) || ''; } catch { /* storage off */ }
  const modelSummary = h('div', {class: 'model-summary'});
  const modelFile = h('input', {type: 'file', accept: '.json,application/json', 'data-testid': 'model-file',
    onchange: async () => {
      const file = modelFile.files[0];
      if (file) { modelText.value = await file.text(); onModelInput(); }
    }});
  const exampleButton = h('button', {type: 'button', class: 'btn btn-sm', 'data-testid': 'example-model', onclick: async () => {
    const example = await api('/dashboard/examples/digits-mlp.json');
    modelText.value = JSON.stringify(example, null, 2);
    onModelInput();
  }}, 'Use the example (digits MLP)');
  function onModelInput() {
    try { localStorage.setItem(DRAFT_KEY, modelText.value); } catch { /* storage off */ }
    const parsed = parseModel();
    if (!modelText.value.trim()) { modelSummary.className = 'model-summary muted'; modelSummary.textContent = ''; return; }
    if (parsed.error) { modelSummary.className = 'model-summary bad'; modelSummary.textContent = parsed.error; return; }
    const layers = parsed.model?.config?.layers;
    const names = Array.isArray(layers) ? layers.map((l) => l.class_name) : [];
    modelSummary.className = 'model-summary ok';
    modelSummary.textContent = `✓ ${parsed.model.class_name || 'model'}` +
      (names.length ? `, ${names.length} layers: ${names.slice(0, 8).join(' → ')}${names.length > 8 ? ' → …' : ''}` : '');
  }
  modelText.addEventListener('input', onModelInput);
  function parseModel() {
    const text = modelText.value.trim();
    if (!text) return {error: 'Paste or upload the model JSON (what model.to_json() returns).'};
    try {
      const model = JSON.parse(text);
      if (!model || typeof model !== 'object' || Array.isArray(model)) return {error: 'The model JSON must be an object.'};
      return {model};
    } catch (err) {
      return {error: `Not valid JSON: ${err.message}`};
    }
  }

  // Where every arm starts (`weights`): a fresh initialisation (null, nothing sent), or a Keras 3
  // `.weights.h5` uploaded with this API key (`weights:<id>`), picked from the list or uploaded here.
  const weightsSelect = h('select', {id: 'f-weights', name: 'weights', 'data-testid': 'weights-select'});
  const weightsFile = h('input', {type: 'file', accept: '.h5', 'data-testid': 'weights-file', onchange: uploadWeights});
  const weightsButton = h('label', {class: 'btn btn-sm file-pick', style: {flexShrink: '0'}}, 'Upload a .weights.h5…', weightsFile);
  const weightsNote = h('div', {class: 'field-hint', 'data-testid': 'weights-note'},
    'Fine-tuning: start every arm from trained weights saved with model.save_weights("model.weights.h5") '
    + '(the model built from this JSON). Layers with "trainable": false stay frozen.');
  async function loadWeights(selectUri) {
    const fresh = h('option', {value: ''}, 'Fresh initialisation (seeded by sweep.seed)');
    try {
      const body = await api('/v1/weights');
      fill(weightsSelect, fresh, (body.items || []).map((w) => h('option', {value: w.uri, selected: w.uri === selectUri},
        `${w.filename || fmt.shortId(w.id)} · ${fmt.bytes(w.bytes)} · ${w.sha256.slice(0, 12)}`)));
    } catch (err) {
      fill(weightsSelect, fresh);
      weightsNote.textContent = `Could not list your weights: ${errorText(err)}`;
    }
    updateSummary();
  }
  // POST one chosen file to an upload route (`/v1/datasets`, `/v1/weights`): progress in `status`, the
  // problem under the form's `field`, `done(created)` with the stored record; `button` is busy meanwhile
  // and the file `input` is reset after, so the same file can be chosen again.
  async function uploadFile(file, {route, field, button, input, status, done}) {
    button.classList.add('busy');
    status.textContent = `Uploading ${file.name} (${fmt.bytes(file.size)})…`;
    try {
      const data = new FormData();
      data.append('file', file);
      const created = await api(route, {method: 'POST', body: data});
      await done(created);
    } catch (err) {
      status.textContent = '';
      const fields = err instanceof ApiError ? fieldErrors(err.problem) : [];
      showError(field, fields.length ? fields.map((f) => f.message).join('; ') : errorText(err));
    } finally {
      button.classList.remove('busy');
      input.value = '';
    }
  }

  async function uploadWeights() {
    const file = weightsFile.files[0];
    if (!file) return;
    clearError('weights');
    await uploadFile(file, {route: '/v1/weights', field: 'weights', button: weightsButton, input: weightsFile,
      status: weightsNote, done: async (created) => {
        await loadWeights(created.uri);
        weightsNote.textContent = `Uploaded ${file.name}: every arm starts from it (${created.uri}).`;
      }});
  }

  const modelSection = h('section', {class: 'panel'},
    h('h2', {}, h('span', {class: 'section-num'}, '1'), 'Model'),
    h('div', {class: 'field', dataset: {field: 'model'}},
      h('label', {class: 'field-label', for: 'f-model'}, 'Keras model JSON'),
      modelText,
      h('div', {class: 'row', style: {justifyContent: 'space-between'}},
        modelSummary,
        h('div', {class: 'row'}, h('label', {class: 'btn btn-sm file-pick'}, 'Upload .json', modelFile), exampleButton)),
      h('div', {class: 'field-hint'}, 'Built-in Keras layers only: Lambda and custom layers are rejected. Keras 2 (tf.keras) JSON is accepted where it maps onto Keras 3.'),
      h('div', {class: 'field-error', 'data-testid': 'error-model'})),
    h('div', {class: 'grid-2', style: {marginTop: '14px'}},
      field('loss', 'Loss', h('input', {type: 'text', id: 'f-loss', name: 'loss', list: 'loss-list',
        value: schemaField(schema, null, 'loss')?.default ?? ''}),
      'A Keras loss identifier.'),
      h('datalist', {id: 'loss-list'}, LOSSES.map((l) => h('option', {value: l})))),
    h('div', {class: 'field', dataset: {field: 'weights'}, style: {marginTop: '14px'}},
      h('label', {class: 'field-label', for: 'f-weights'}, 'Start from weights'),
      h('div', {class: 'row', style: {flexWrap: 'nowrap'}}, weightsSelect, weightsButton),
      weightsNote,
      h('div', {class: 'field-error', 'data-testid': 'error-weights'})));
  form.append(modelSection);
  onModelInput();

  // ------------------------------------------------------------ 2. dataset
  const sources = [['builtin', 'Built-in'], ['uploaded', 'Uploaded'], ['upload', 'Upload .npz'], ['file', 'Server file']];
  const sourceRadios = h('div', {class: 'segmented', role: 'radiogroup', 'aria-label': 'Dataset source'},
    sources.map(([value, text]) => h('label', {'data-testid': `dataset-source-${value}`},
      h('input', {type: 'radio', name: 'dataset-source', value, checked: value === 'builtin', onchange: showSource}), text)));
  const builtinSelect = selectInput('dataset.builtin', desc.datasets, dataSpec('uri')?.examples?.[0] ?? desc.datasets[0]);
  const uploadedSelect = h('select', {id: 'f-dataset-uploaded', 'data-testid': 'uploaded-datasets'});
  const filePath = h('input', {type: 'text', id: 'f-dataset-file', placeholder: 'path/under/the/data/root.npz'});
  const npzFile = h('input', {type: 'file', accept: '.npz', 'data-testid': 'npz-file', onchange: uploadDataset});
  const uploadStatus = h('div', {class: 'field-hint'});
  const uploadedNote = h('div', {class: 'field-hint'}, 'Datasets uploaded with this API key.');
  const uploadButton = h('label', {class: 'btn btn-sm file-pick'}, 'Choose an .npz file to upload…', npzFile);
  const panes = {
    builtin: h('div', {}, builtinSelect,
      h('div', {class: 'field-hint'}, 'builtin:digits works offline (8×8 handwritten digits, 1,797 images). keras: datasets are downloaded once into the worker\u2019s cache.')),
    uploaded: h('div', {}, uploadedSelect, uploadedNote),
    upload: h('div', {}, h('div', {class: 'row'}, uploadButton), uploadStatus,
      h('div', {class: 'field-hint'}, 'An .npz with arrays x and y (optionally x_val and y_val); no pickled objects.')),
    file: h('div', {}, h('div', {class: 'row', style: {flexWrap: 'nowrap'}}, h('span', {class: 'mono muted'}, 'file:'), filePath),
      h('div', {class: 'field-hint'}, 'Under the server\u2019s data root: an .npz, or a folder ending in / of .npy arrays or of class subfolders of images. Parquet and CSV tables need dataset.columns: send them with the CLI or the API.')),
  };
  const sourceError = h('div', {class: 'field-error', 'data-testid': 'error-dataset.uri'});
  const uriField = h('div', {class: 'field', dataset: {field: 'dataset.uri'}},
    h('span', {class: 'field-label'}, 'Dataset'), sourceRadios, ...Object.values(panes), sourceError);
  function source() { return form.querySelector('input[name=dataset-source]:checked').value; }
  function showSource() {
    for (const [key, pane] of Object.entries(panes)) pane.hidden = key !== source();
    if (source() === 'uploaded') loadDatasets();
  }

  let datasetsLoaded = false;
  async function loadDatasets(selectId) {
    if (datasetsLoaded && !selectId) return;
    fill(uploadedSelect, h('option', {value: ''}, 'Loading…'));
    try {
      const body = await api('/v1/datasets');
      const items = Array.isArray(body) ? body : (body.items || body.datasets || []);
      datasetsLoaded = true;
      fill(uploadedSelect, items.length ? items.map((d) => h('option', {value: d.uri || `dataset:${d.id}`, selected: d.id === selectId},
        `${d.name || d.filename || fmt.shortId(d.id)} · ${shapesText(d.shapes)} · ${fmt.bytes(d.bytes)}`))
        : h('option', {value: ''}, 'No uploaded datasets yet'));
      updateSummary();
    } catch (err) {
      fill(uploadedSelect, h('option', {value: ''}, `Could not list datasets: ${errorText(err)}`));
    }
  }

  async function uploadDataset() {
    const file = npzFile.files[0];
    clearError('dataset.uri');
    if (!file) { showError('dataset.uri', 'Choose an .npz file first.'); return; }
    await uploadFile(file, {route: '/v1/datasets', field: 'dataset.uri', button: uploadButton, input: npzFile,
      status: uploadStatus, done: async (created) => {
        uploadStatus.textContent = '';
        datasetsLoaded = false;
        form.querySelector('input[name=dataset-source][value=uploaded]').checked = true;
        showSource();
        await loadDatasets(created.id);
        uploadedSelect.value = created.uri || `dataset:${created.id}`;
        updateSummary();
        uploadedNote.textContent = `Uploaded ${file.name}: ${shapesText(created.shapes)}. Use it as ${created.uri}.`;
      }});
  }

  const datasetSection = h('section', {class: 'panel', dataset: {field: 'dataset'}},
    h('h2', {}, h('span', {class: 'section-num'}, '2'), 'Dataset'),
    uriField,
    h('div', {class: 'grid-3', style: {marginTop: '14px'}},
      field('dataset.validation_split', 'Validation split', numberInput('dataset.validation_split', dataSpec('validation_split')), dataSpec('validation_split')?.description),
      field('dataset.max_samples', 'Max samples', numberInput('dataset.max_samples', dataSpec('max_samples'), {placeholder: 'all'}), dataSpec('max_samples')?.description),
      checkbox('dataset.normalize', dataSpec('normalize'), 'Normalize inputs to [0, 1]')),
    h('div', {class: 'field-error group-error'}));
  form.append(datasetSection);
  showSource();

  // ------------------------------------------------------------ 3. optimizers
  const armsBox = h('div', {});
  const addArmButton = h('button', {type: 'button', class: 'btn btn-sm', 'data-testid': 'add-optimizer', onclick: () => addArm({name: 'sgd', params: {momentum: 0.9}})}, '+ Add optimizer');
  function addArm(arm) {
    const paramsText = Object.entries(arm.params || {}).map(([k, v]) => `${k}=${v}`).join(', ');
    const index = () => Array.from(armsBox.children).indexOf(row);
    const name = selectInput('', desc.optimizers, arm.name);
    const label = h('input', {type: 'text', placeholder: arm.name, value: arm.label || '', maxlength: 80});
    name.addEventListener('change', () => { label.placeholder = name.value; });
    const params = h('input', {type: 'text', value: paramsText, placeholder: 'e.g. momentum=0.9, nesterov=true'});
    const remove = h('button', {type: 'button', class: 'btn btn-sm', title: 'Remove this optimizer', 'aria-label': 'Remove',
      onclick: () => { if (armsBox.children.length > 1) { row.remove(); renumber(); } }}, '✕');
    const cell = (part, control) => h('div', {class: 'field', dataset: {part}}, control, h('div', {class: 'field-error'}));
    const row = h('div', {class: 'arm-row', 'data-testid': 'optimizer-row'},
      cell('name', name), cell('label', label), cell('params', params), remove);
    row.read = () => ({index: index(), name: name.value, label: label.value.trim(), params: params.value.trim()});
    armsBox.append(row);
    renumber();
  }
  function renumber() {
    Array.from(armsBox.children).forEach((row, i) => {
      row.dataset.field = `optimizers.${i}`;
      row.querySelectorAll('[data-part]').forEach((cell) => { cell.dataset.field = `optimizers.${i}.${cell.dataset.part}`; });
    });
  }
  (desc.default_optimizers || [{name: 'adam'}]).forEach(addArm);
  form.append(h('section', {class: 'panel', dataset: {field: 'optimizers'}},
    h('div', {class: 'panel-head'}, h('h2', {}, h('span', {class: 'section-num'}, '3'), 'Optimizers'),
      h('span', {class: 'hint'}, 'Each arm sweeps from the same initial weights and batches.')),
    h('div', {class: 'arm-row arm-head'}, h('span', {}, 'Optimizer'), h('span', {}, 'Label'), h('span', {}, 'Constructor params (never learning_rate)'), h('span', {})),
    armsBox,
    h('div', {class: 'row', style: {marginTop: '12px'}}, addArmButton),
    h('div', {class: 'field-error group-error'})));

  // ------------------------------------------------------------ 4. sweep
  const mode = selectInput('sweep.mode', sweepSpec('mode')?.enum || ['exponential', 'linear'], sweepSpec('mode')?.default);
  const evaluateOn = selectInput('sweep.evaluate_on', sweepSpec('evaluate_on')?.enum || ['train', 'validation'], sweepSpec('evaluate_on')?.default);
  const lengthKind = h('select', {id: 'f-sweep-length-kind', 'aria-label': 'Sweep length in'},
    h('option', {value: 'num_steps'}, 'steps'), h('option', {value: 'epochs'}, 'epochs'));
  const lengthValue = numberInput('sweep.num_steps', null, {placeholder: String(desc.default_num_steps)});
  lengthValue.value = String(desc.default_num_steps);
  lengthKind.addEventListener('change', () => {
    lengthValue.value = lengthKind.value === 'epochs' ? '1' : String(desc.default_num_steps);
    lengthWrap.dataset.field = `sweep.${lengthKind.value}`;
  });
  const lengthWrap = field('sweep.num_steps', 'Length',
    h('div', {class: 'row', style: {flexWrap: 'nowrap'}}, lengthValue, lengthKind),
    sweepSpec('num_steps')?.description);
  const divergence = numberInput('sweep.divergence_threshold', sweepSpec('divergence_threshold'));
  const divergenceOn = h('input', {type: 'checkbox', checked: sweepSpec('divergence_threshold')?.default != null,
    onchange: () => { divergence.disabled = !divergenceOn.checked; }});
  const sweepFields = {
    start_lr: numberInput('sweep.start_lr', sweepSpec('start_lr')),
    end_lr: numberInput('sweep.end_lr', sweepSpec('end_lr')),
    batch_size: numberInput('sweep.batch_size', sweepSpec('batch_size')),
    smoothing: numberInput('sweep.smoothing', sweepSpec('smoothing')),
    moving_average: numberInput('sweep.moving_average', sweepSpec('moving_average')),
    seed: numberInput('sweep.seed', sweepSpec('seed')),
    repeats: numberInput('sweep.repeats', sweepSpec('repeats')),
  };
  const sweepField = (name, label, control = sweepFields[name]) => field(`sweep.${name}`, label, control, sweepSpec(name)?.description);

  // Verify by training (`sweep.confirm`: false, true or {candidates, steps}). Left off, nothing is sent
  // and the job is the one the form always sent; ticked, `collect` sends `true` for the schema's
  // defaults, or the settings that differ from them.
  const confirmSpec = (name) => schemaField(schema, sweepSpec('confirm').ref, name);
  const confirmFields = {
    candidates: numberInput('sweep.confirm.candidates', confirmSpec('candidates')),
    steps: numberInput('sweep.confirm.steps', confirmSpec('steps'), {placeholder: 'sweep length \u00d7 min(1, 3 / candidates)'}),
  };
  const confirmOn = h('input', {type: 'checkbox', id: 'f-sweep.confirm', name: 'sweep.confirm',
    checked: Boolean(sweepSpec('confirm').default), onchange: showConfirm});
  function showConfirm() {
    for (const input of Object.values(confirmFields)) input.disabled = !confirmOn.checked;
  }
  showConfirm();
  const confirmField = (name, label) => field(`sweep.confirm.${name}`, label, confirmFields[name], confirmSpec(name)?.description);
  form.append(h('section', {class: 'panel', dataset: {field: 'sweep'}},
    h('h2', {}, h('span', {class: 'section-num'}, '4'), 'Sweep'),
    h('div', {class: 'grid-3'},
      sweepField('start_lr', 'Start LR'),
      sweepField('end_lr', 'End LR'),
      sweepField('mode', 'LR spacing', mode),
      lengthWrap,
      sweepField('batch_size', 'Batch size'),
      field('sweep.divergence_threshold', 'Divergence threshold',
        h('div', {class: 'row', style: {flexWrap: 'nowrap'}}, h('label', {class: 'check', title: 'Stop an arm early when its loss diverges'}, divergenceOn), divergence),
        sweepSpec('divergence_threshold')?.description)),
    h('div', {class: 'confirm-box', dataset: {field: 'sweep.confirm'}},
      h('label', {class: 'check'}, confirmOn, 'Verify by training'),
      h('div', {class: 'field-hint'}, 'After the range test, each arm trains constant candidate learning rates '
        + 'in rounds from the same initial weights: the recommendation and one on each side, then one more per round '
        + 'beyond the best one until worse ones enclose it; the lowest loss on the held-out rows becomes the '
        + 'recommendation. Needs held-out rows (validation split above 0, or an upload with x_val and y_val). Costs '
        + 'at most candidates \u00d7 steps more steps per arm; by default the candidates share 3 sweeps\u2019 worth.'),
      h('div', {class: 'grid-3'},
        confirmField('candidates', 'Candidates per arm'),
        confirmField('steps', 'Steps per candidate')),
      h('div', {class: 'field-error'})),
    h('details', {class: 'more'},
      h('summary', {}, 'More settings: smoothing, evaluation, seeds, precision'),
      h('div', {class: 'grid-3'},
        sweepField('evaluate_on', 'Evaluate loss on', evaluateOn),
        sweepField('smoothing', 'Smoothing (β)'),
        sweepField('moving_average', 'Loss-delta window'),
        sweepField('seed', 'Seed'),
        sweepField('repeats', 'Repeats (seeds)'),
        h('div', {class: 'stack'},
          sweepSpec('mixed_precision') ? checkbox('sweep.mixed_precision', sweepSpec('mixed_precision'), 'Mixed precision') : null,
          sweepSpec('jit_compile') ? checkbox('sweep.jit_compile', sweepSpec('jit_compile'), 'XLA compile')
            : null))),
    h('div', {class: 'field-error group-error', 'data-testid': 'error-sweep'})));

  // ------------------------------------------------------------ 5. labels
  const labelsInput = h('input', {type: 'text', id: 'f-labels', placeholder: 'team=vision, project=resnet-lite'});
  form.append(h('section', {class: 'panel'},
    h('h2', {}, h('span', {class: 'section-num'}, '5'), 'Labels ', h('span', {class: 'muted small'}, '(optional)')),
    field('labels', 'Labels', labelsInput, 'key=value pairs, comma-separated, to find the job later.')));

  // ------------------------------------------------------------ side: summary and submit
  const submitButton = h('button', {type: 'submit', class: 'btn btn-primary', style: {width: '100%', padding: '12px'}, 'data-testid': 'submit-button'}, 'Start range test');
  const summaryList = h('ul', {class: 'summary-list'});
  const side = h('aside', {class: 'form-side'},
    h('section', {class: 'panel'},
      h('h2', {}, 'Summary'),
      summaryList,
      h('div', {style: {marginTop: '16px'}}, submitButton),
      h('div', {class: 'field-hint', style: {marginTop: '8px'}}, 'Runs on a worker; the job page shows the curves as they come in.')),
    summaryBox);
  function updateSummary() {
    const arms = Array.from(armsBox.children).map((row) => row.read());
    fill(summaryList,
      [['Dataset', datasetUri() || '—'],
        ['Weights', weightsSelect.value || 'fresh initialisation'],
        ['Optimizers', arms.map((a) => a.label || a.name).join(', ')],
        ['LR range', `${sweepFields.start_lr.value || '?'} → ${sweepFields.end_lr.value || '?'} (${mode.value})`],
        ['Length', `${lengthValue.value || '?'} ${lengthKind.value === 'epochs' ? 'epochs' : 'steps'} per arm`],
        ['Batch size', sweepFields.batch_size.value || '?'],
        ['Verify', confirmOn.checked
          ? `${confirmFields.candidates.value || '?'} \u00d7 ${confirmFields.steps.value || 'default'} steps per arm` : 'off']]
        .map(([k, v]) => h('li', {}, h('span', {class: 'muted'}, k), h('span', {title: v}, v))));
  }
  form.addEventListener('input', updateSummary);
  form.addEventListener('change', updateSummary);
  updateSummary();
  loadWeights();

  fill(app,
    h('div', {class: 'page-head'},
      h('div', {},
        h('a', {class: 'crumb', href: '#/jobs'}, '← All jobs'),
        h('h1', {}, 'New range test'),
        h('div', {class: 'meta-row'}, 'Sweep the learning rate from small to large on your model and data, and get the LR to train with.'))),
    h('div', {class: 'form-grid'}, h('div', {class: 'form-main'}, form), side));
  submitButton.setAttribute('form', 'submit-form');
  form.id = 'submit-form';

  // ------------------------------------------------------------ submit
  function datasetUri() {
    switch (source()) {
      case 'builtin': return builtinSelect.value;
      case 'uploaded': return uploadedSelect.value;
      case 'file': return filePath.value.trim() ? `file:${filePath.value.trim()}` : '';
      default: return '';
    }
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors();
    const {body, errors} = collect();
    if (errors.length) { showErrors(errors); return; }
    submitButton.disabled = true;
    submitButton.textContent = 'Submitting…';
    try {
      const response = await send('/v1/jobs', {method: 'POST', json: body, headers: {'Idempotency-Key': idempotencyKey}});
      const job = await response.json();
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      submitButton.disabled = false;
      submitButton.textContent = 'Start range test';
      if (!(err instanceof ApiError)) { showErrors([{path: '', message: errorText(err)}]); return; }
      const problem = err.problem;
      const errors = fieldErrors(problem);
      if (Array.isArray(problem.disallowed) && problem.disallowed.length) {
        const names = problem.disallowed.map((d) => (typeof d === 'string' ? d : d.class_name || JSON.stringify(d))).join(', ');
        errors.push({path: 'model', message: `Not allowed: ${names}. ${problem.detail || ''}`.trim()});
      }
      if (!errors.length) errors.push({path: '', message: [problem.title, problem.detail].filter(Boolean).join(': ')});
      showErrors(errors, problem);
    }
  });

  /** The request body, and the errors we can see before asking the API. */
  function collect() {
    const errors = [];
    const num = (input, path, {integer = false, optional = false} = {}) => {
      const text = String(input.value).trim();
      if (text === '') {
        if (!optional) errors.push({path, message: 'Enter a number.'});
        return undefined;
      }
      const value = Number(text);
      if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
        errors.push({path, message: integer ? 'Enter a whole number.' : 'Enter a number.'});
        return undefined;
      }
      return value;
    };
    const parsed = parseModel();
    if (parsed.error) errors.push({path: 'model', message: parsed.error});
    const uri = datasetUri();
    if (!uri) errors.push({path: 'dataset.uri', message: source() === 'upload' ? 'Upload the .npz first, or pick another source.' : 'Choose a dataset.'});

    const optimizers = Array.from(armsBox.children).map((row) => {
      const arm = row.read();
      const out = {name: arm.name};
      if (arm.label) out.label = arm.label;
      try {
        const params = parseParams(arm.params);
        if (Object.keys(params).length) out.params = params;
      } catch (err) {
        errors.push({path: `optimizers.${arm.index}.params`, message: err.message});
      }
      return out;
    });

    const sweep = {
      start_lr: num(sweepFields.start_lr, 'sweep.start_lr'),
      end_lr: num(sweepFields.end_lr, 'sweep.end_lr'),
      mode: mode.value,
      [lengthKind.value]: num(lengthValue, `sweep.${lengthKind.value}`, {integer: lengthKind.value === 'num_steps', optional: true}),
      batch_size: num(sweepFields.batch_size, 'sweep.batch_size', {integer: true}),
      divergence_threshold: divergenceOn.checked ? num(divergence, 'sweep.divergence_threshold') : null,
      smoothing: num(sweepFields.smoothing, 'sweep.smoothing'),
      moving_average: num(sweepFields.moving_average, 'sweep.moving_average', {integer: true}),
      evaluate_on: evaluateOn.value,
      seed: num(sweepFields.seed, 'sweep.seed', {integer: true}),
      repeats: num(sweepFields.repeats, 'sweep.repeats', {integer: true}),
    };
    if (confirmOn.checked) {
      const candidates = num(confirmFields.candidates, 'sweep.confirm.candidates', {integer: true});
      const steps = num(confirmFields.steps, 'sweep.confirm.steps', {integer: true, optional: true});
      const changed = dropUndefined({candidates: candidates === confirmSpec('candidates').default ? undefined : candidates, steps});
      sweep.confirm = Object.keys(changed).length ? changed : true;
    }
    for (const flag of ['mixed_precision', 'jit_compile']) {
      const box = form.querySelector(`input[name="sweep.${flag}"]`);
      if (box) sweep[flag] = box.checked;
    }
    const dataset = {
      uri,
      validation_split: num(form.querySelector('[name="dataset.validation_split"]'), 'dataset.validation_split'),
      max_samples: num(form.querySelector('[name="dataset.max_samples"]'), 'dataset.max_samples', {integer: true, optional: true}),
      normalize: form.querySelector('[name="dataset.normalize"]').checked,
    };
    let labels = {};
    try { labels = parseLabels(labelsInput.value); } catch (err) { errors.push({path: 'labels', message: err.message}); }
    const loss = form.querySelector('[name=loss]').value.trim();
    const body = {model: parsed.model, dataset: dropUndefined(dataset), loss, optimizers, sweep: dropUndefined(sweep), labels};
    if (weightsSelect.value) body.weights = weightsSelect.value;
    return {body, errors};
  }

  // ------------------------------------------------------------ errors next to fields
  function target(path) {
    const parts = path ? path.split('.') : [];
    for (let n = parts.length; n > 0; n -= 1) {
      const el = form.querySelector(`[data-field="${CSS.escape(parts.slice(0, n).join('.'))}"]`);
      if (el) return el;
    }
    return null;
  }

  function showError(path, message) {
    const el = target(path);
    if (!el) return false;
    el.classList.add('invalid');
    const slot = el.querySelector(':scope > .field-error') || el.querySelector('.field-error');
    slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
    el.closest('details')?.setAttribute('open', '');
    return true;
  }

  function clearError(path) {
    const el = target(path);
    if (!el) return;
    el.classList.remove('invalid');
    el.querySelectorAll('.field-error').forEach((slot) => { slot.textContent = ''; });
  }

  function clearErrors() {
    form.querySelectorAll('.invalid').forEach((el) => el.classList.remove('invalid'));
    form.querySelectorAll('.field-error').forEach((slot) => { slot.textContent = ''; });
    fill(summaryBox);
  }

  function showErrors(errors, problem) {
    const unplaced = errors.filter((e) => !showError(e.path, e.message));
    const placed = errors.length - unplaced.length;
    fill(summaryBox, h('div', {class: 'alert alert-error', role: 'alert'},
      h('strong', {}, problem?.title || 'Please fix the highlighted fields'),
      placed ? h('div', {}, `${placed} field${placed > 1 ? 's need' : ' needs'} attention.`) : null,
      unplaced.length ? h('ul', {}, unplaced.map((e) => h('li', {}, e.path ? `${e.path}: ${e.message}` : e.message))) : null));
    const first = form.querySelector('.invalid');
    first?.scrollIntoView({behavior: 'smooth', block: 'center'});
    first?.querySelector('input, select, textarea')?.focus({preventScroll: true});
  }
}

/** "momentum=0.9, nesterov=true" or a JSON object -> {momentum: 0.9, nesterov: true}. */
function parseParams(text) {
  if (!text) return {};
  if (text.startsWith('{')) {
    let value;
    try { value = JSON.parse(text); } catch (err) { throw new Error(`Not valid JSON: ${err.message}`); }
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('Params must be an object.');
    return value;
  }
  const out = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`Write params as name=value (got "${part}").`);
    const key = part.slice(0, eq).trim();
    const raw = part.slice(eq + 1).trim();
    let value;
    if (/^(true|false)$/i.test(raw)) value = raw.toLowerCase() === 'true';
    else if (/^(none|null)$/i.test(raw)) value = null;
    else if (raw !== '' && Number.isFinite(Number(raw))) value = Number(raw);
    else value = raw.replace(/^["']|["']$/g, '');
    out[key] = value;
  }
  return out;
}

function parseLabels(text) {
  const out = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`Write labels as key=value (got "${part}").`);
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

/** A default as people write it: 1e-5 rather than 0.00001. */
function numberText(value) {
  if (typeof value !== 'number' || value === 0 || Math.abs(value) >= 1e-3) return String(value);
  return value.toExponential().replace(/\.?0+e/, 'e').replace('e-0', 'e-');
}

function dropUndefined(object) {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined));
}

function shapesText(shapes) {
  if (!shapes || typeof shapes !== 'object') return '';
  return Object.entries(shapes).map(([k, v]) => `${k} ${Array.isArray(v) ? `(${v.join(', ')})` : v}`).join(', ');
}
