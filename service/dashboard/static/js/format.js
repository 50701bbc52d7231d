// Number and time formatting shared by the pages.

/** A learning rate the way people write them: 1.1e-3, 0.02, 3e-5. */
export function lr(value) {
  if (value == null || !Number.isFinite(value)) return '—';
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 0.01 && abs < 100) return String(Number(value.toPrecision(3)));
  const [mantissa, exponent] = value.toExponential(2).split('e');
  return `${Number(mantissa)}e${Number(exponent)}`;
}

/** A learning rate as a Python literal (full precision kept short). */
export function pyFloat(value) {
  const text = lr(value);
  return text.includes('e') || text.includes('.') ? text : `${text}.0`;
}

export function loss(value) {
  if (value == null || !Number.isFinite(value)) return '—';
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(2);
  return value.toFixed(abs < 1 ? 4 : 3);
}

export function pct(fraction) {
  return `${Math.round(Math.max(0, Math.min(1, fraction || 0)) * 100)}%`;
}

export function relativeTime(iso) {
  if (!iso) return '—';
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  if (!Number.isFinite(seconds)) return '—';
  if (seconds < 45) return 'just now';
  const units = [[60, 'min', 60], [3600, 'h', 24], [86400, 'd', 365]];
  for (const [size, unit, limit] of units) {
    const n = Math.round(seconds / size);
    if (n < limit || unit === 'd') return `${Math.max(1, n)} ${unit} ago`;
  }
  return new Date(iso).toLocaleString();
}

export function duration(startIso, endIso) {
  if (!startIso) return '—';
  const end = endIso ? Date.parse(endIso) : Date.now();
  const seconds = Math.max(0, (end - Date.parse(startIso)) / 1000);
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function bytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function shortId(id) {
  return String(id || '').slice(0, 8);
}

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

/** Colors of the arms, in submission order: distinct, readable on white, colorblind-aware order. */
export const ARM_COLORS = [
  '#2563eb', '#e11d48', '#059669', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d',
  '#9333ea', '#ea580c', '#0d9488', '#4f46e5', '#be123c', '#15803d', '#a16207', '#475569',
];
