/**
 * The traffic tools of issue 14, as the panel shows them: pure TypeScript, no DOM, no network.
 *
 * - per version: the warmup that ran when it loaded, and the latency of the last minute beside
 *   the one since load (`GET P/api/stats`, `warmup` and `recent_latency_us`);
 * - per model: request logging (`LoggingStatus`), the logged requests read back
 *   (`GET P/api/models/{m}/requests`), and the shadow of a candidate version with its output
 *   differences (`ShadowReport`, in the stats or `GET P/api/models/{m}/shadow`);
 * - their actions (`POST P/api/models/{m}:logging`, `:shadow`): requests, titles, the questions
 *   asked first and what the panel says of the server's answer;
 * - the compact text of tensors that a narrow panel can show.
 *
 * Every parser takes any JSON and never throws except with an `ApiError` of kind `parse` for an
 * answer that is not the object asked for; a field of the wrong type reads as its default.
 */

import type { IApiRequest, IConfirmation, IModelView } from './model';
import { formatCount, formatShare, NONE, trim } from './format';
import {
  ApiError,
  isObject,
  num,
  numOrNull,
  str,
  strOrNull,
  versionNumber
} from './parse';

// ------------------------------------------------------------------------------------------
// Per version: warmup and recent latency
// ------------------------------------------------------------------------------------------

/** `RecentLatency`: microseconds over the last `window_seconds`. */
export interface IRecentLatency {
  window_seconds: number;
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

/** `Warmup`: what ran when the version loaded. */
export interface IWarmup {
  requests: number;
  seconds: number;
}

/** A version entry's `recent_latency_us`; null when the server does not report it. */
export function parseRecentLatency(value: unknown): IRecentLatency | null {
  if (!isObject(value)) {
    return null;
  }
  return {
    window_seconds: num(value.window_seconds, 60),
    count: num(value.count),
    ...parseQuantiles(value)
  };
}

/** A version entry's `warmup`; null when no warmup ran (or the server does not say). */
export function parseWarmup(value: unknown): IWarmup | null {
  return isObject(value)
    ? { requests: num(value.requests), seconds: num(value.seconds) }
    : null;
}

/** "warmup: 12 requests in 0.35 s", or null when none ran. */
export function describeWarmup(warmup: IWarmup | null): string | null {
  if (!warmup) {
    return null;
  }
  return `warmup: ${formatCount(warmup.requests)} request${warmup.requests === 1 ? '' : 's'} in ${formatSeconds(warmup.seconds)}`;
}

/** A short duration in seconds: `0.004 s`, `0.35 s`, `12 s`. */
export function formatSeconds(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) {
    return NONE;
  }
  if (seconds < 10) {
    return `${Number(seconds.toPrecision(2))} s`;
  }
  return `${Math.round(seconds)} s`;
}

/** "1 min" for 60, "30 s" for 30: the span of the recent latency. */
export function formatWindow(seconds: number): string {
  return seconds % 60 === 0 ? `${seconds / 60} min` : `${trim(seconds, 0)} s`;
}

// ------------------------------------------------------------------------------------------
// Request logging
// ------------------------------------------------------------------------------------------

/** `LoggingStatus`: TF Serving's `logging_config` of a model, and what it wrote. */
export interface ILoggingStatus {
  sampling_rate: number;
  filename_prefix: string;
  logged: number;
  dropped: number;
  bytes: number;
  files: number;
  /** Why logging stopped (e.g. a directory that cannot be written); serving goes on. */
  error: string | null;
}

/** One `LoggingStatus` (a model's `logging` in the stats, the answer of `:logging`). */
export function parseLoggingStatus(doc: unknown): ILoggingStatus {
  if (!isObject(doc)) {
    throw new ApiError('parse', 200, 'a logging status is not an object');
  }
  return {
    sampling_rate: num(doc.sampling_rate),
    filename_prefix: str(doc.filename_prefix),
    logged: num(doc.logged),
    dropped: num(doc.dropped),
    bytes: num(doc.bytes),
    files: num(doc.files),
    error: strOrNull(doc.error) || null
  };
}

/** Whether the model logs requests now (a rate above 0). */
export function isLogging(logging: ILoggingStatus | null): boolean {
  return logging !== null && logging.sampling_rate > 0;
}

/** "12% of requests · 1,234 logged · 2 dropped · 3 files, 1.2 MB" (or "off · …"). */
export function describeLogging(logging: ILoggingStatus | null): string {
  if (!logging) {
    return 'off';
  }
  const parts = [
    isLogging(logging)
      ? `${formatShare(logging.sampling_rate)} of requests`
      : 'off',
    `${formatCount(logging.logged)} logged`
  ];
  if (logging.dropped > 0) {
    parts.push(`${formatCount(logging.dropped)} dropped`);
  }
  parts.push(
    `${formatCount(logging.files)} file${logging.files === 1 ? '' : 's'}, ${formatBytes(logging.bytes)}`
  );
  return parts.join(' · ');
}

/** A size: `0 B`, `900 B`, `12 KB`, `1.2 MB`, `3.4 GB` (powers of 1024). */
export function formatBytes(bytes: number | null): string {
  if (bytes === null || !Number.isFinite(bytes) || bytes < 0) {
    return NONE;
  }
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 || value >= 10 ? Math.round(value) : trim(value, 1)} ${units[unit]}`;
}

/** `RequestRecord`: one logged request and its answer, tensors as nested JSON lists. */
export interface IRequestRecord {
  /** Seconds since the epoch. */
  time: number;
  version: number | null;
  method: string;
  signature_name: string;
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
}

/** `GET P/api/models/{m}/requests`: newest first. */
export interface IRequestList {
  model: string;
  requests: IRequestRecord[];
}

/** How many logged requests the panel lists per model. */
export const REQUESTS_SHOWN = 10;

/** `GET P/api/models/{m}/requests`. Entries that are not records are skipped. */
export function parseRequestList(doc: unknown): IRequestList {
  if (!isObject(doc) || !Array.isArray(doc.requests)) {
    throw new ApiError(
      'parse',
      200,
      'the requests answer has no "requests" list'
    );
  }
  const requests: IRequestRecord[] = [];
  for (const r of doc.requests) {
    if (!isObject(r)) {
      continue;
    }
    requests.push({
      time: num(r.time),
      version: versionNumber(r.version),
      method: str(r.method, 'predict'),
      signature_name: str(r.signature_name, 'serving_default'),
      inputs: isObject(r.inputs) ? r.inputs : {},
      outputs: isObject(r.outputs) ? r.outputs : {}
    });
  }
  return { model: str(doc.model), requests };
}

/** The request of `GET P/api/models/{m}/requests?n=...`. */
export function requestsRequest(
  model: string,
  n = REQUESTS_SHOWN
): IApiRequest {
  return {
    method: 'GET',
    path: `api/models/${encodeURIComponent(model)}/requests?n=${n}`
  };
}

/** A clock time of a record: seconds since the epoch, in the user's locale. */
export function formatTime(seconds: number | null): string {
  return seconds === null || !Number.isFinite(seconds) || seconds <= 0
    ? NONE
    : new Date(seconds * 1000).toLocaleTimeString();
}

/** What a record ran: "predict", or "classify (signature scores)". */
export function describeCall(record: IRequestRecord): string {
  return record.signature_name && record.signature_name !== 'serving_default'
    ? `${record.method} (${record.signature_name})`
    : record.method;
}

// ------------------------------------------------------------------------------------------
// Compact tensors
// ------------------------------------------------------------------------------------------

/** How much of a value `compactValue` writes. */
export interface ICompactOptions {
  /** Elements shown per list (the rest counted: `…+12`). */
  items: number;
  /** Characters of a string shown. */
  chars: number;
}

const COMPACT: ICompactOptions = { items: 3, chars: 16 };

/** A number in at most 4 significant digits: `2.5`, `0.0001235`, `1.235e+6`. */
export function formatNumber(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e6) {
    return String(n);
  }
  return String(Number(n.toPrecision(4)));
}

/** A JSON value (a tensor as nested lists, `{"b64": ...}` bytes, an example's features) in a
 * few characters: long lists keep their first `items` elements and count the rest. */
export function compactValue(
  value: unknown,
  options: ICompactOptions = COMPACT
): string {
  if (typeof value === 'number') {
    return formatNumber(value);
  }
  if (typeof value === 'string') {
    return JSON.stringify(
      value.length > options.chars ? value.slice(0, options.chars) + '…' : value
    );
  }
  if (typeof value === 'boolean' || value === null || value === undefined) {
    return String(value ?? null);
  }
  if (Array.isArray(value)) {
    const shown = value
      .slice(0, options.items)
      .map(v => compactValue(v, options));
    if (value.length > options.items) {
      shown.push(`…+${value.length - options.items}`);
    }
    return `[${shown.join(', ')}]`;
  }
  if (isObject(value)) {
    const keys = Object.keys(value);
    if (
      keys.length === 1 &&
      keys[0] === 'b64' &&
      typeof value.b64 === 'string'
    ) {
      // base64: 4 characters for 3 bytes
      return `<${formatBytes(Math.floor((value.b64.replace(/=+$/, '').length * 3) / 4))}>`;
    }
    const shown = keys
      .slice(0, options.items)
      .map(k => `${k}: ${compactValue(value[k], options)}`);
    if (keys.length > options.items) {
      shown.push(`…+${keys.length - options.items}`);
    }
    return `{${shown.join(', ')}}`;
  }
  return String(value);
}

/** Named tensors as `x=[[1, 3]] y=[0.5]`, cut at `maxChars` (with `…`). */
export function compactTensors(
  tensors: Record<string, unknown>,
  maxChars = 120,
  options: ICompactOptions = COMPACT
): string {
  const names = Object.keys(tensors).sort();
  if (!names.length) {
    return NONE;
  }
  const text = names
    .map(name => `${name}=${compactValue(tensors[name], options)}`)
    .join(' ');
  return text.length > maxChars ? text.slice(0, maxChars - 1) + '…' : text;
}

/** The longer form a tooltip shows. */
export const DETAILED: ICompactOptions = { items: 12, chars: 64 };

// ------------------------------------------------------------------------------------------
// Shadow traffic
// ------------------------------------------------------------------------------------------

/** p50/p90/p99 (null: nothing counted). */
export interface IQuantiles {
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

/** One output's differences between the serving version and the candidate. */
export interface IShadowOutput {
  pairs: number;
  mismatches: number;
  /** The share of pairs in which this output agrees (null: not reported). */
  agreement: number | null;
  max_abs_diff: number | null;
  mean_abs_diff: number | null;
  /** The share of pairs whose argmax agrees (class scores only). */
  argmax_agreement: number | null;
  abs_diff_quantiles: IQuantiles;
}

/** Latency of one side of the pairs, microseconds. */
export interface IShadowLatency extends IQuantiles {
  count: number;
}

/** One of the worst-disagreeing pairs. */
export interface IShadowPair {
  time: number;
  serving_version: number | null;
  output: string;
  max_abs_diff: number | null;
  /** Why the outputs could not be compared (shapes, dtypes), if so. */
  mismatch: string | null;
  /** The request, when request logging is on for the model. */
  request: Record<string, unknown> | null;
}

/** `ShadowReport`. */
export interface IShadowReport {
  model: string;
  active: boolean;
  candidate_version: number;
  fraction: number;
  started_at: number | null;
  ended_at: number | null;
  end_reason: string | null;
  pairs: number;
  dropped: number;
  errors: number;
  mismatches: number;
  agreement: number | null;
  outputs: Record<string, IShadowOutput>;
  latency_us: { serving: IShadowLatency; shadow: IShadowLatency };
  /** Worst first. */
  worst: IShadowPair[];
  /** Not the server's: false when the answer had no `outputs` or `worst` (a summary), so the
   * full report is `GET P/api/models/{m}/shadow`'s. */
  complete: boolean;
}

function parseQuantiles(value: unknown): IQuantiles {
  const q = isObject(value) ? value : {};
  return {
    p50: numOrNull(q.p50),
    p90: numOrNull(q.p90),
    p99: numOrNull(q.p99)
  };
}

function parseShadowLatency(value: unknown): IShadowLatency {
  return {
    count: num(isObject(value) ? value.count : 0),
    ...parseQuantiles(value)
  };
}

/** One `ShadowReport` (a model's `shadow` in the stats, `GET`/`POST` `.../shadow`). */
export function parseShadowReport(doc: unknown): IShadowReport {
  const candidate = isObject(doc) ? versionNumber(doc.candidate_version) : null;
  if (!isObject(doc) || candidate === null) {
    throw new ApiError(
      'parse',
      200,
      'a shadow report has no "candidate_version"'
    );
  }
  const outputs: Record<string, IShadowOutput> = {};
  if (isObject(doc.outputs)) {
    for (const [name, o] of Object.entries(doc.outputs)) {
      if (isObject(o)) {
        outputs[name] = {
          pairs: num(o.pairs),
          mismatches: num(o.mismatches),
          agreement: numOrNull(o.agreement),
          max_abs_diff: numOrNull(o.max_abs_diff),
          mean_abs_diff: numOrNull(o.mean_abs_diff),
          argmax_agreement: numOrNull(o.argmax_agreement),
          abs_diff_quantiles: parseQuantiles(o.abs_diff_quantiles)
        };
      }
    }
  }
  const worst: IShadowPair[] = [];
  for (const w of Array.isArray(doc.worst) ? doc.worst : []) {
    if (isObject(w)) {
      worst.push({
        time: num(w.time),
        serving_version: versionNumber(w.serving_version),
        output: str(w.output),
        max_abs_diff: numOrNull(w.max_abs_diff),
        mismatch: strOrNull(w.mismatch) || null,
        request: isObject(w.request) ? w.request : null
      });
    }
  }
  const latency = isObject(doc.latency_us) ? doc.latency_us : {};
  return {
    model: str(doc.model),
    active: doc.active === true,
    candidate_version: candidate,
    fraction: num(doc.fraction),
    started_at: numOrNull(doc.started_at),
    ended_at: numOrNull(doc.ended_at),
    end_reason: strOrNull(doc.end_reason) || null,
    pairs: num(doc.pairs),
    dropped: num(doc.dropped),
    errors: num(doc.errors),
    mismatches: num(doc.mismatches),
    agreement: numOrNull(doc.agreement),
    outputs,
    latency_us: {
      serving: parseShadowLatency(latency.serving),
      shadow: parseShadowLatency(latency.shadow)
    },
    worst,
    complete: isObject(doc.outputs) && Array.isArray(doc.worst)
  };
}

/** A model entry's `logging` or `shadow` in the stats: null when absent or unreadable (the
 * rest of the stats stays readable). */
export function optional<T>(
  parse: (doc: unknown) => T,
  value: unknown
): T | null {
  if (value === null || value === undefined) {
    return null;
  }
  try {
    return parse(value);
  } catch {
    return null;
  }
}

/** The request of `GET P/api/models/{m}/shadow`. */
export function shadowReportRequest(model: string): IApiRequest {
  return {
    method: 'GET',
    path: `api/models/${encodeURIComponent(model)}/shadow`
  };
}

/** A share that is never rounded up to 100%: `99.9%` for 0.9996, `100%` only for all. */
export function formatAgreement(f: number | null): string {
  if (f === null || !Number.isFinite(f)) {
    return NONE;
  }
  if (f >= 1) {
    return '100%';
  }
  return `${trim(Math.floor(Math.max(0, f) * 1000 + 1e-9) / 10, 1)}%`;
}

/** An absolute difference: `0`, `0.0123`, `1.25e-7`, `3.5`. */
export function formatDiff(d: number | null): string {
  if (d === null || !Number.isFinite(d)) {
    return NONE;
  }
  if (d === 0) {
    return '0';
  }
  return Math.abs(d) < 1e-3 || Math.abs(d) >= 1e5
    ? Number(d.toPrecision(3)).toExponential().replace('e+', 'e')
    : String(Number(d.toPrecision(3)));
}

/** "v2 · 50% of the unversioned requests · since 12:03:04" / "v2 · ended 12:10 (promote)". */
export function describeShadow(report: IShadowReport): string {
  const parts = [`v${report.candidate_version}`];
  if (report.active) {
    parts.push(`${formatShare(report.fraction)} of the unversioned requests`);
    if (report.started_at !== null) {
      parts.push(`since ${formatTime(report.started_at)}`);
    }
  } else {
    parts.push(
      `ended${report.ended_at !== null ? ` ${formatTime(report.ended_at)}` : ''}${report.end_reason ? ` (${report.end_reason})` : ''}`
    );
  }
  return parts.join(' · ');
}

/** One output of a report as a row of the panel's table, sorted by name. */
export interface IShadowOutputRow {
  name: string;
  pairs: string;
  mismatches: number;
  agreement: string;
  max: string;
  mean: string;
  argmax: string;
  p50: string;
  p90: string;
  p99: string;
}

export function shadowOutputRows(report: IShadowReport): IShadowOutputRow[] {
  return Object.keys(report.outputs)
    .sort()
    .map(name => {
      const o = report.outputs[name];
      return {
        name,
        pairs: formatCount(o.pairs),
        mismatches: o.mismatches,
        agreement: formatAgreement(o.agreement),
        max: formatDiff(o.max_abs_diff),
        mean: formatDiff(o.mean_abs_diff),
        argmax: formatAgreement(o.argmax_agreement),
        p50: formatDiff(o.abs_diff_quantiles.p50),
        p90: formatDiff(o.abs_diff_quantiles.p90),
        p99: formatDiff(o.abs_diff_quantiles.p99)
      };
    });
}

/** The versions a shadow may copy traffic to: AVAILABLE, and not the one serving the
 * unversioned requests (`stable`, else the one with the largest share), newest first. */
export function shadowCandidates(view: IModelView): number[] {
  const stable = view.labels['stable'];
  let serving = stable;
  if (serving === undefined) {
    let best = 0;
    for (const v of view.versions) {
      if (v.share > best) {
        best = v.share;
        serving = v.version;
      }
    }
  }
  return view.versions
    .filter(v => v.state === 'AVAILABLE' && v.version !== serving)
    .map(v => v.version);
}

// ------------------------------------------------------------------------------------------
// The actions
// ------------------------------------------------------------------------------------------

/** An action on a model's traffic tools. `logging` at rate 0 turns logging off. */
export type TrafficAction =
  | { kind: 'logging'; rate: number }
  | { kind: 'shadow'; version: number; fraction: number }
  | { kind: 'endShadow' };

/** The server's answer to a traffic action. */
export type TrafficAnswer =
  | { kind: 'logging'; logging: ILoggingStatus }
  | { kind: 'shadow'; shadow: IShadowReport };

/** The request of a traffic action (`POST P/api/models/{m}:logging` or `:shadow`). */
export function trafficRequest(
  model: string,
  action: TrafficAction
): IApiRequest {
  const m = `api/models/${encodeURIComponent(model)}`;
  switch (action.kind) {
    case 'logging':
      return {
        method: 'POST',
        path: `${m}:logging`,
        body: { sampling_rate: action.rate }
      };
    case 'shadow':
      return {
        method: 'POST',
        path: `${m}:shadow`,
        body: { version: action.version, fraction: action.fraction }
      };
    case 'endShadow':
      return { method: 'POST', path: `${m}:shadow`, body: { fraction: 0 } };
  }
}

/** The answer of a traffic action, read as its kind. */
export function parseTrafficAnswer(
  action: TrafficAction,
  doc: unknown
): TrafficAnswer {
  return action.kind === 'logging'
    ? { kind: 'logging', logging: parseLoggingStatus(doc) }
    : { kind: 'shadow', shadow: parseShadowReport(doc) };
}

/** A short name of a traffic action, e.g. "Shadow v2 at 50%". */
export function trafficTitle(action: TrafficAction): string {
  switch (action.kind) {
    case 'logging':
      return action.rate > 0
        ? `Log ${formatShare(action.rate)} of requests`
        : 'Logging off';
    case 'shadow':
      return `Shadow v${action.version} at ${formatShare(action.fraction)}`;
    case 'endShadow':
      return 'End the shadow';
  }
}

/** What to ask before a traffic action: turning logging on (request contents go to disk),
 * starting or moving a shadow (more work for the server), ending one. Null for a new rate
 * of logging that is already on, and for turning it off. */
export function trafficConfirmation(
  model: IModelView,
  action: TrafficAction
): IConfirmation | null {
  const name = model.name;
  switch (action.kind) {
    case 'logging':
      return action.rate > 0 && !isLogging(model.logging)
        ? {
            title: `Log the requests of ${name}?`,
            body: `The server writes ${formatShare(action.rate)} of the requests to ${name} with their answers (inputs and outputs) as PredictionLog records under the model repository, until logging is turned off.`,
            accept: 'Start logging'
          }
        : null;
    case 'shadow': {
      const current = model.shadow?.active ? model.shadow : null;
      const stable = model.labels['stable'];
      return {
        title: `Shadow v${action.version} of ${name}?`,
        body:
          `v${action.version} gets a copy of ${formatShare(action.fraction)} of the unversioned requests to ${name}, ` +
          `after ${stable !== undefined ? `stable v${stable}` : 'the serving version'} has answered: the clients' answers do not change, the server does more work.` +
          (current && current.candidate_version !== action.version
            ? ` It replaces the shadow of v${current.candidate_version}.`
            : ''),
        accept: 'Start shadow'
      };
    }
    case 'endShadow': {
      const current = model.shadow;
      return {
        title: `End the shadow of ${name}?`,
        body: current
          ? `v${current.candidate_version} stops getting copies of the traffic; its report (${formatCount(current.pairs)} pairs) stays.`
          : `The candidate stops getting copies of the traffic; its report stays.`,
        accept: 'End shadow',
        dismiss: 'Keep shadowing'
      };
    }
  }
}

/** What the panel says after a traffic action the server accepted. */
export function describeTrafficAnswer(answer: TrafficAnswer): string {
  if (answer.kind === 'logging') {
    const l = answer.logging;
    return `logging ${describeLogging(l)}${l.error ? `; error: ${l.error}` : ''}`;
  }
  const s = answer.shadow;
  return s.active
    ? `v${s.candidate_version} gets ${formatShare(s.fraction)} of the unversioned requests as a shadow.`
    : `the shadow of v${s.candidate_version} ended after ${formatCount(s.pairs)} pairs, agreement ${formatAgreement(s.agreement)}.`;
}
