/**
 * How the panel writes numbers: counts, rates, latencies, shares. Pure functions, shared by
 * model.ts and traffic.ts.
 */

/** The dash shown for a value that is not known. */
export const NONE = '–';

/** A count: `987`, `12,345`, `1.2M`. */
export function formatCount(n: number | null): string {
  if (n === null || !Number.isFinite(n)) {
    return NONE;
  }
  if (Math.abs(n) >= 1e9) {
    return `${trim(n / 1e9, 1)}G`;
  }
  if (Math.abs(n) >= 1e6) {
    return `${trim(n / 1e6, 1)}M`;
  }
  return Math.round(n).toLocaleString('en-US');
}

/** Requests per second: `0`, `0.25`, `3.4`, `42`, `1.2k`. */
export function formatRate(r: number | null): string {
  if (r === null || !Number.isFinite(r)) {
    return NONE;
  }
  if (r <= 0) {
    return '0';
  }
  if (r < 0.01) {
    return '<0.01';
  }
  if (r < 1) {
    return trim(r, 2);
  }
  if (r < 10) {
    return trim(r, 1);
  }
  if (r < 1000) {
    return String(Math.round(r));
  }
  return `${trim(r / 1000, 1)}k`;
}

/** A latency in microseconds: `850 µs`, `1.2 ms`, `35 ms`, `1.50 s`. */
export function formatLatency(us: number | null): string {
  if (us === null || !Number.isFinite(us)) {
    return NONE;
  }
  if (us < 1000) {
    return `${Math.round(us)} µs`;
  }
  if (us < 10_000) {
    return `${trim(us / 1000, 1)} ms`;
  }
  if (us < 1_000_000) {
    return `${Math.round(us / 1000)} ms`;
  }
  return `${(us / 1_000_000).toFixed(2)} s`;
}

/** A share between 0 and 1: `0%`, `0.5%`, `10%`, `100%`. */
export function formatShare(f: number | null): string {
  if (f === null || !Number.isFinite(f)) {
    return NONE;
  }
  const p = f * 100;
  if (p === 0) {
    return '0%';
  }
  if (p < 1) {
    return `${trim(p, 1) === '0' ? '<0.1' : trim(p, 1)}%`;
  }
  return `${trim(p, p < 10 ? 1 : 0)}%`;
}

/** `n` with at most `digits` decimals, trailing zeros dropped. */
export function trim(n: number, digits: number): string {
  return String(Number(n.toFixed(digits)));
}
