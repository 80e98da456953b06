/**
 * The panel's model: pure TypeScript, no DOM, no JupyterLab, no network.
 *
 * - parse the management API's answers (`GET P/api/stats`, `GET P/api/models`, an action's
 *   `ModelDescription`, an `{"error": ...}` body) defensively: an unexpected shape is an
 *   `ApiError` of kind `parse`, never an exception deeper in the view;
 * - `MetricsTracker` merges one poll's two answers into the view's snapshot: per version the
 *   state, labels, handles, counters, latency, requests per second and traffic share computed
 *   against the previous poll, and the recent history of p50 that the sparkline draws; a model
 *   or version that disappears is dropped (with its history);
 * - the actions (their requests, confirmations and titles), the REST URL and `curl` line, the
 *   pagination of versions, and the formatting of numbers, rates, latencies and shares;
 * - the bulk jobs (`GET P/api/jobs`): parsing, order, paging, progress, ETA, and their actions
 *   (cancel, resume, remove).
 */

import { formatCount, formatRate, formatShare, NONE } from './format';
import {
  ApiError,
  isObject,
  num,
  numOrNull,
  str,
  strOrNull,
  versionNumber
} from './parse';

import {
  ILoggingStatus,
  IRecentLatency,
  IShadowReport,
  IWarmup,
  optional,
  parseLoggingStatus,
  parseRecentLatency,
  parseShadowReport,
  parseWarmup
} from './traffic';

export { ApiError } from './parse';
export type { ApiErrorKind } from './parse';
export {
  formatCount,
  formatLatency,
  formatRate,
  formatShare,
  NONE
} from './format';

/** A servable's state (`ServableState` in openapi.json). */
export type ServableState =
  'START' | 'LOADING' | 'AVAILABLE' | 'UNLOADING' | 'END';

const STATES: ReadonlyArray<string> = [
  'START',
  'LOADING',
  'AVAILABLE',
  'UNLOADING',
  'END'
];

/** `LatencyHistogram`: microseconds since the version loaded (quantiles from the server's
 * sketch); buckets are cumulative `[upper bound, count]`. */
export interface ILatencyHistogram {
  p50: number | null;
  p90: number | null;
  p99: number | null;
  sum: number;
  count: number;
  buckets: Array<[string, number]>;
}

/** What every version entry of the management API carries (`VersionStatus`). */
export interface IVersionStatus {
  version: number;
  state: string;
  error_code: string;
  error_message: string;
  in_flight: number;
}

/** `StatsVersion` of `GET P/api/stats`. */
export interface IStatsVersion extends IVersionStatus {
  request_count: number;
  error_count: number;
  latency_us: ILatencyHistogram;
  /** The last minute (null: a server that does not report it). */
  recent_latency_us: IRecentLatency | null;
  /** What ran when the version loaded (null: no warmup). */
  warmup: IWarmup | null;
}

/** `StatsModel` of `GET P/api/stats`. */
export interface IStatsModel {
  name: string;
  labels: Record<string, number>;
  versions: IStatsVersion[];
  /** Request logging (null: never configured, or a server without it). */
  logging: ILoggingStatus | null;
  /** The shadow, active or the last one (null: none). */
  shadow: IShadowReport | null;
}

/** `StatsResponse`, plus the gRPC target where a server reports one. */
export interface IStatsResponse {
  models: IStatsModel[];
  grpc_target: string | null;
}

/** `ManagedVersion` of a `ModelDescription`. */
export interface IManagedVersion extends IVersionStatus {
  labels: string[];
  unloaded: boolean;
}

/** `Canary`. */
export interface ICanary {
  version: number;
  weight: number;
}

/** `ModelDescription`: `GET P/api/models/{m}` and every action's answer. */
export interface IModelDescription {
  name: string;
  base_path: string | null;
  platform: string | null;
  version_policy: string | null;
  labels: Record<string, number>;
  pending_labels: Record<string, number>;
  canary: ICanary | null;
  previous_stable: number | null;
  unloaded: number[];
  traffic: Record<string, number>;
  versions: IManagedVersion[];
}

/** `ModelDescriptionList` (`GET P/api/models`), plus the gRPC target where reported. */
export interface IModelDescriptionList {
  models: IModelDescription[];
  grpc_target: string | null;
}

/** The server's message of an error answer: `{"error": ...}` (TF Serving's body), else
 * jupyter_server's `{"message": ...}`, else the start of the body, else the status text. */
export function errorBodyMessage(body: string, statusText = ''): string {
  const text = body.trim();
  if (text) {
    try {
      const doc = JSON.parse(text);
      if (isObject(doc)) {
        for (const key of ['error', 'message', 'reason']) {
          const value = doc[key];
          if (typeof value === 'string' && value.trim()) {
            return value.trim();
          }
        }
      }
    } catch {
      // not JSON: fall through to the text itself
    }
    if (!text.startsWith('<')) {
      return text.length > 300 ? text.slice(0, 300) + '…' : text;
    }
  }
  return statusText || 'no message';
}

/** What the panel says for an error. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    switch (error.kind) {
      case 'network':
        return 'server unreachable, retrying';
      case 'forbidden':
        return 'not authorized / logged out';
      case 'parse':
        return `unexpected answer from the server: ${error.message}`;
      default:
        return error.status === 404 &&
          /^(not found|no message)$/i.test(error.message.trim())
          ? 'the TF Serving API was not found on this server (is the jupyter_tfserving server extension enabled?)'
          : `${error.message} (HTTP ${error.status})`;
    }
  }
  return error instanceof Error ? error.message : String(error);
}

// ------------------------------------------------------------------------------------------
// Parsing
// ------------------------------------------------------------------------------------------

function labelMap(value: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  if (isObject(value)) {
    for (const [label, v] of Object.entries(value)) {
      const n = versionNumber(v);
      if (n !== null) {
        out[label] = n;
      }
    }
  }
  return out;
}

function modelsArray(doc: unknown, what: string): unknown[] {
  if (!isObject(doc) || !Array.isArray(doc.models)) {
    throw new ApiError('parse', 200, `${what} has no "models" list`);
  }
  return doc.models;
}

function parseHistogram(value: unknown): ILatencyHistogram {
  const h = isObject(value) ? value : {};
  const buckets: Array<[string, number]> = [];
  if (Array.isArray(h.buckets)) {
    for (const b of h.buckets) {
      if (Array.isArray(b) && b.length >= 2) {
        buckets.push([String(b[0]), num(b[1])]);
      }
    }
  }
  return {
    p50: numOrNull(h.p50),
    p90: numOrNull(h.p90),
    p99: numOrNull(h.p99),
    sum: num(h.sum),
    count: num(h.count),
    buckets
  };
}

/** `GET P/api/stats`. Entries without a name or version number are skipped. */
/** The version entries of an answer's `versions` array that have a version number, each
 * parsed by `parse` from the raw entry and its common fields. */
function parseVersions<T>(
  entries: unknown,
  parse: (v: Record<string, unknown>, common: IVersionStatus) => T
): T[] {
  const out: T[] = [];
  for (const v of Array.isArray(entries) ? entries : []) {
    const version = isObject(v) ? versionNumber(v.version) : null;
    if (!isObject(v) || version === null) {
      continue;
    }
    out.push(
      parse(v, {
        version,
        state: str(v.state, 'START'),
        error_code: str(v.error_code, 'OK'),
        error_message: str(v.error_message),
        in_flight: num(v.in_flight)
      })
    );
  }
  return out;
}

export function parseStats(doc: unknown): IStatsResponse {
  const models: IStatsModel[] = [];
  for (const m of modelsArray(doc, 'the stats answer')) {
    if (!isObject(m) || typeof m.name !== 'string') {
      continue;
    }
    const versions = parseVersions<IStatsVersion>(m.versions, (v, common) => ({
      ...common,
      request_count: num(v.request_count),
      error_count: num(v.error_count),
      latency_us: parseHistogram(v.latency_us),
      recent_latency_us: parseRecentLatency(v.recent_latency_us),
      warmup: parseWarmup(v.warmup)
    }));
    models.push({
      name: m.name,
      labels: labelMap(m.labels),
      versions,
      logging: optional(parseLoggingStatus, m.logging),
      shadow: optional(parseShadowReport, m.shadow)
    });
  }
  return {
    models,
    grpc_target: isObject(doc) ? strOrNull(doc.grpc_target) : null
  };
}

/** One `ModelDescription` (`GET P/api/models/{m}`, an action's answer). */
export function parseModelDescription(doc: unknown): IModelDescription {
  if (!isObject(doc) || typeof doc.name !== 'string') {
    throw new ApiError('parse', 200, 'a model description has no "name"');
  }
  const versions = parseVersions<IManagedVersion>(
    doc.versions,
    (v, common) => ({
      ...common,
      labels: Array.isArray(v.labels)
        ? v.labels.filter((l): l is string => typeof l === 'string')
        : [],
      unloaded: v.unloaded === true
    })
  );
  let canary: ICanary | null = null;
  if (isObject(doc.canary)) {
    const version = versionNumber(doc.canary.version);
    if (version !== null) {
      canary = { version, weight: num(doc.canary.weight) };
    }
  }
  const traffic: Record<string, number> = {};
  if (isObject(doc.traffic)) {
    for (const [v, share] of Object.entries(doc.traffic)) {
      if (/^[0-9]+$/.test(v)) {
        traffic[String(Number(v))] = num(share);
      }
    }
  }
  return {
    name: doc.name,
    base_path: strOrNull(doc.base_path),
    platform: strOrNull(doc.platform),
    version_policy: strOrNull(doc.version_policy),
    labels: labelMap(doc.labels),
    pending_labels: labelMap(doc.pending_labels),
    canary,
    previous_stable: versionNumber(doc.previous_stable),
    unloaded: Array.isArray(doc.unloaded)
      ? doc.unloaded.map(versionNumber).filter((n): n is number => n !== null)
      : [],
    traffic,
    versions
  };
}

/** `GET P/api/models`. Entries that are not model descriptions are skipped. */
export function parseModelList(doc: unknown): IModelDescriptionList {
  const models: IModelDescription[] = [];
  for (const m of modelsArray(doc, 'the models answer')) {
    try {
      models.push(parseModelDescription(m));
    } catch {
      // skip an entry the panel cannot read rather than lose the whole list
    }
  }
  return {
    models,
    grpc_target: isObject(doc) ? strOrNull(doc.grpc_target) : null
  };
}

// ------------------------------------------------------------------------------------------
// The snapshot: one poll merged and compared with the previous one
// ------------------------------------------------------------------------------------------

/** One version as the panel shows it. */
export interface IVersionView {
  version: number;
  /** One of `ServableState` (an unknown state is passed through). */
  state: string;
  errorCode: string;
  errorMessage: string;
  /** A failed load: END with an error. */
  failed: boolean;
  /** A user unloaded this version (`:unload`). */
  unloaded: boolean;
  labels: string[];
  inFlight: number;
  /** Counters since the server started (null: the stats answer does not list the version). */
  requests: number | null;
  errors: number | null;
  /** Since the version loaded, microseconds. */
  p50: number | null;
  p99: number | null;
  /** The last minute's latency (null: not reported). */
  recent: IRecentLatency | null;
  /** What ran when the version loaded (null: no warmup). */
  warmup: IWarmup | null;
  /** Requests (and errors) per second between the previous poll and this one (null on the
   * first poll, after a counter reset, or when the stats do not list the version). */
  rate: number | null;
  errorRate: number | null;
  /** Share of the model's unversioned requests that the server routes here (`traffic`). */
  share: number;
  /** This version's share of the model's requests between the two polls (null: none). */
  observedShare: number | null;
  /** p50 of the requests of each recent poll interval (oldest first; null: no requests). */
  history: Array<number | null>;
}

/** One model as the panel shows it. */
export interface IModelView {
  name: string;
  platform: string | null;
  versionPolicy: string | null;
  basePath: string | null;
  labels: Record<string, number>;
  pendingLabels: Record<string, number>;
  canary: ICanary | null;
  previousStable: number | null;
  /** Newest first. */
  versions: IVersionView[];
  /** Versions whose load failed (END with an error), newest first. */
  failed: IVersionView[];
  requests: number;
  errors: number;
  rate: number | null;
  /** Request logging (null: never configured). */
  logging: ILoggingStatus | null;
  /** The shadow, active or the last one (null: none). */
  shadow: IShadowReport | null;
}

/** What one poll shows. */
export interface ISnapshot {
  /** Milliseconds (the clock given to `MetricsTracker.update`). */
  time: number;
  /** Sorted by name. */
  models: IModelView[];
  grpcTarget: string | null;
  totalRate: number | null;
}

interface IPrevious {
  requests: number;
  errors: number;
  buckets: Array<[string, number]>;
  history: Array<number | null>;
}

/** The upper bound (microseconds) of the bucket that holds quantile `q` of the requests
 * counted between two cumulative histograms (the server's rule: the largest finite bound for
 * the overflow bucket); null when there were none. */
export function intervalQuantile(
  previous: ReadonlyArray<[string, number]> | null,
  current: ReadonlyArray<[string, number]>,
  q: number
): number | null {
  const n = current.length;
  if (!n) {
    return null;
  }
  // The bounds are the same from one poll to the next (compare by index), unless the server
  // changed them (then by bound). No allocation on the common path: thousands of versions.
  let map: Map<string, number> | null = null;
  const aligned =
    previous !== null &&
    previous.length === n &&
    previous[n - 1][0] === current[n - 1][0];
  if (previous && !aligned) {
    map = new Map(previous.map(([b, c]) => [b, c]));
  }
  const before = (i: number): number => {
    if (!previous) {
      return 0;
    }
    if (map) {
      return map.get(current[i][0]) ?? 0;
    }
    return previous[i][0] === current[i][0] ? previous[i][1] : 0;
  };
  const total = current[n - 1][1] - before(n - 1);
  if (total <= 0) {
    return null;
  }
  const rank = q * total;
  let lastFinite: number | null = null;
  let found: number | null = null;
  for (let i = 0; i < n; i++) {
    const delta = current[i][1] - before(i);
    if (delta < 0) {
      return null; // a counter went back: the server restarted
    }
    const value = Number(current[i][0]);
    if (Number.isFinite(value)) {
      lastFinite = value;
      if (found === null && delta >= rank) {
        found = value;
      }
    }
  }
  return found ?? lastFinite;
}

/**
 * Merges each poll's stats and model list into a snapshot, computing rates and latency
 * history against the previous poll. Keeps state only for the models and versions of the
 * last poll: one that disappears is dropped, with its history.
 */
export class MetricsTracker {
  constructor(readonly historyLength = 40) {}

  /** The snapshot of a poll answered at `time` (milliseconds). */
  update(
    stats: IStatsResponse,
    list: IModelDescriptionList,
    time: number
  ): ISnapshot {
    const dt = this._time === null ? 0 : (time - this._time) / 1000;
    const statsByName = new Map(stats.models.map(m => [m.name, m]));
    const descByName = new Map(list.models.map(m => [m.name, m]));
    const names = Array.from(
      new Set([...statsByName.keys(), ...descByName.keys()])
    ).sort();
    const next = new Map<string, IPrevious>();
    const models: IModelView[] = [];
    let totalRate: number | null = null;
    for (const name of names) {
      const model = this._model(
        name,
        statsByName.get(name),
        descByName.get(name),
        dt,
        next
      );
      models.push(model);
      if (model.rate !== null) {
        totalRate = (totalRate ?? 0) + model.rate;
      }
    }
    this._previous = next;
    this._time = time;
    return {
      time,
      models,
      grpcTarget: stats.grpc_target ?? list.grpc_target ?? null,
      totalRate
    };
  }

  /** Forget every previous poll (the next one computes no rates). */
  reset(): void {
    this._previous.clear();
    this._time = null;
  }

  /** How many (model, version) pairs the tracker remembers. */
  get size(): number {
    return this._previous.size;
  }

  private _model(
    name: string,
    stats: IStatsModel | undefined,
    desc: IModelDescription | undefined,
    dt: number,
    next: Map<string, IPrevious>
  ): IModelView {
    const statsByVersion = new Map(
      (stats?.versions ?? []).map(v => [v.version, v])
    );
    const managedByVersion = new Map(
      (desc?.versions ?? []).map(v => [v.version, v])
    );
    const labels = desc?.labels ?? stats?.labels ?? {};
    const labelsOf = new Map<number, string[]>();
    for (const [label, version] of Object.entries(labels)) {
      labelsOf.set(version, [...(labelsOf.get(version) ?? []), label].sort());
    }
    const unloaded = new Set(desc?.unloaded ?? []);
    const numbers = Array.from(
      new Set([...statsByVersion.keys(), ...managedByVersion.keys()])
    ).sort((a, b) => b - a);

    const versions: IVersionView[] = [];
    for (const version of numbers) {
      const s = statsByVersion.get(version);
      const d = managedByVersion.get(version);
      const key = `${name}\u0000${version}`;
      const previous = this._previous.get(key);
      let rate: number | null = null;
      let errorRate: number | null = null;
      let point: number | null = null;
      if (s && previous && dt > 0) {
        if (s.request_count >= previous.requests) {
          rate = (s.request_count - previous.requests) / dt;
          errorRate = Math.max(0, s.error_count - previous.errors) / dt;
          point = intervalQuantile(previous.buckets, s.latency_us.buckets, 0.5);
        }
      }
      const history = previous ? previous.history.slice() : [];
      if (s && previous && dt > 0) {
        history.push(point);
        while (history.length > this.historyLength) {
          history.shift();
        }
      }
      if (s) {
        next.set(key, {
          requests: s.request_count,
          errors: s.error_count,
          buckets: s.latency_us.buckets,
          history
        });
      }
      const state = d?.state ?? s?.state ?? 'START';
      const errorCode = d?.error_code ?? s?.error_code ?? 'OK';
      const errorMessage = d?.error_message || s?.error_message || '';
      versions.push({
        version,
        state,
        errorCode,
        errorMessage,
        failed: state === 'END' && (errorCode !== 'OK' || errorMessage !== ''),
        unloaded: d?.unloaded ?? unloaded.has(version),
        labels: d?.labels.slice().sort() ?? labelsOf.get(version) ?? [],
        inFlight: s?.in_flight ?? d?.in_flight ?? 0,
        requests: s ? s.request_count : null,
        errors: s ? s.error_count : null,
        p50: s?.latency_us.p50 ?? null,
        p99: s?.latency_us.p99 ?? null,
        recent: s?.recent_latency_us ?? null,
        warmup: s?.warmup ?? null,
        rate,
        errorRate,
        share: desc?.traffic[String(version)] ?? 0,
        observedShare: null,
        history
      });
    }
    let rate: number | null = null;
    let requests = 0;
    let errors = 0;
    for (const v of versions) {
      requests += v.requests ?? 0;
      errors += v.errors ?? 0;
      if (v.rate !== null) {
        rate = (rate ?? 0) + v.rate;
      }
    }
    if (rate !== null && rate > 0) {
      for (const v of versions) {
        v.observedShare = v.rate === null ? null : v.rate / rate;
      }
    }
    return {
      name,
      platform: desc?.platform ?? null,
      versionPolicy: desc?.version_policy ?? null,
      basePath: desc?.base_path ?? null,
      labels,
      pendingLabels: desc?.pending_labels ?? {},
      canary: desc?.canary ?? null,
      previousStable: desc?.previous_stable ?? null,
      versions,
      failed: versions.filter(v => v.failed),
      requests,
      errors,
      rate,
      logging: stats?.logging ?? null,
      shadow: stats?.shadow ?? null
    };
  }

  private _previous = new Map<string, IPrevious>();
  private _time: number | null = null;
}

// ------------------------------------------------------------------------------------------
// Pagination
// ------------------------------------------------------------------------------------------

/** How many versions a model shows at first, and how many more each "show more" adds. */
export const VERSION_PAGE = 10;

/** The versions a model shows: the `limit` newest, plus any older one that matters now (a
 * label, a traffic share, handles in flight), newest first; and how many are
 * hidden. `versions` must be newest first (as in a snapshot). */
export function pageVersions(
  versions: ReadonlyArray<IVersionView>,
  limit: number
): { shown: IVersionView[]; hidden: number } {
  const shown: IVersionView[] = [];
  for (let i = 0; i < versions.length; i++) {
    const v = versions[i];
    if (i < limit || v.labels.length > 0 || v.share > 0 || v.inFlight > 0) {
      shown.push(v);
    }
  }
  return { shown, hidden: versions.length - shown.length };
}

// ------------------------------------------------------------------------------------------
// Actions
// ------------------------------------------------------------------------------------------

/** An action of the management API on one model. */
export type Action =
  | { kind: 'promote'; version?: number }
  | { kind: 'canary'; weight: number; version?: number }
  | { kind: 'rollback' }
  | { kind: 'unload'; version: number }
  | { kind: 'load'; version: number }
  | { kind: 'setLabel'; label: string; version: number }
  | { kind: 'removeLabel'; label: string };

/** An HTTP request: a path under `P/` and an optional JSON body. */
export interface IApiRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  body?: Record<string, unknown>;
}

/** The request of an action (the path is under `P/`, e.g. `api/models/demo:promote`). */
export function actionRequest(model: string, action: Action): IApiRequest {
  const m = `api/models/${encodeURIComponent(model)}`;
  switch (action.kind) {
    case 'promote':
      return {
        method: 'POST',
        path: `${m}:promote`,
        body: action.version === undefined ? {} : { version: action.version }
      };
    case 'canary':
      return {
        method: 'POST',
        path: `${m}:canary`,
        body:
          action.version === undefined
            ? { weight: action.weight }
            : { weight: action.weight, version: action.version }
      };
    case 'rollback':
      return { method: 'POST', path: `${m}:rollback`, body: {} };
    case 'unload':
      return {
        method: 'POST',
        path: `${m}/versions/${action.version}:unload`,
        body: {}
      };
    case 'load':
      return {
        method: 'POST',
        path: `${m}/versions/${action.version}:load`,
        body: {}
      };
    case 'setLabel':
      return {
        method: 'PUT',
        path: `${m}/labels/${encodeURIComponent(action.label)}`,
        body: { version: action.version }
      };
    case 'removeLabel':
      return {
        method: 'DELETE',
        path: `${m}/labels/${encodeURIComponent(action.label)}`
      };
  }
}

/** A short name of an action, e.g. "Promote v3". */
export function actionTitle(action: Action): string {
  switch (action.kind) {
    case 'promote':
      return action.version === undefined
        ? 'Promote the canary'
        : `Promote v${action.version}`;
    case 'canary':
      return `Canary ${action.version === undefined ? '' : `v${action.version} `}at ${formatShare(action.weight)}`;
    case 'rollback':
      return 'Rollback';
    case 'unload':
      return `Unload v${action.version}`;
    case 'load':
      return `Load v${action.version}`;
    case 'setLabel':
      return `Label v${action.version} "${action.label}"`;
    case 'removeLabel':
      return `Remove label "${action.label}"`;
  }
}

/** A question asked before an action: its title, body, the label of the button that goes
 * ahead and, where "Cancel" would be ambiguous, of the one that does not. */
export interface IConfirmation {
  title: string;
  body: string;
  accept: string;
  dismiss?: string;
}

/** What to ask before an action that takes traffic away from a version; null for one that
 * takes none (load, a new label, a label that already names the version). */
export function confirmation(
  model: IModelView,
  action: Action
): IConfirmation | null {
  const stable = model.labels['stable'];
  const canary = model.canary;
  const name = model.name;
  switch (action.kind) {
    case 'promote': {
      const target = action.version ?? canary?.version;
      const from =
        stable !== undefined && stable !== target
          ? ` takes all unversioned traffic from v${stable}`
          : ' takes all unversioned traffic';
      return {
        title: `Promote on ${name}?`,
        body:
          target === undefined
            ? `The canary of ${name} becomes stable and${from}.`
            : `v${target} of ${name} becomes stable and${from}` +
              (canary && canary.version !== target
                ? `; the canary v${canary.version} stops taking traffic.`
                : '.'),
        accept: 'Promote'
      };
    }
    case 'canary': {
      const who =
        action.version === undefined
          ? 'The newest AVAILABLE version that is not stable'
          : `v${action.version}`;
      return {
        title: `Canary on ${name}?`,
        body:
          `${who} takes ${formatShare(action.weight)} of the unversioned traffic of ${name}` +
          (stable !== undefined ? ` away from stable v${stable}.` : '.'),
        accept: 'Start canary'
      };
    }
    case 'rollback':
      return {
        title: `Roll back ${name}?`,
        body: canary
          ? `The canary v${canary.version} stops taking traffic; stable${stable !== undefined ? ` v${stable}` : ''} takes it all.`
          : model.previousStable !== null
            ? `v${model.previousStable} becomes stable again${stable !== undefined ? ` and v${stable} loses its traffic` : ''}.`
            : `The previous stable version of ${name} becomes stable again.`,
        accept: 'Roll back'
      };
    case 'unload':
      return {
        title: `Unload v${action.version} of ${name}?`,
        body: `v${action.version} stops serving (its files stay on disk); requests that name it fail until it is loaded again.`,
        accept: 'Unload'
      };
    case 'load':
      return null;
    case 'setLabel': {
      const current = model.labels[action.label];
      if (current === undefined || current === action.version) {
        return null;
      }
      return {
        title: `Move label "${action.label}" of ${name}?`,
        body:
          `"${action.label}" moves from v${current} to v${action.version}: requests to it go to v${action.version}` +
          (action.label === 'stable' || action.label === 'canary'
            ? `, and so does its share of the unversioned traffic.`
            : '.'),
        accept: 'Move label'
      };
    }
    case 'removeLabel': {
      const current = model.labels[action.label];
      return {
        title: `Remove label "${action.label}" of ${name}?`,
        body:
          `Requests to the label "${action.label}"${current !== undefined ? ` (v${current})` : ''} fail once it is removed` +
          (action.label === 'canary'
            ? '; the canary stops taking traffic.'
            : action.label === 'stable'
              ? '; unversioned requests go to the latest AVAILABLE version.'
              : '.'),
        accept: 'Remove label'
      };
    }
  }
}

/** A one-line account of a model after an action: stable, canary, traffic. */
export function describeModelState(desc: IModelDescription): string {
  const parts: string[] = [];
  const labels = Object.entries(desc.labels).sort(([a], [b]) =>
    a.localeCompare(b)
  );
  parts.push(
    labels.length
      ? 'labels ' + labels.map(([l, v]) => `${l}=v${v}`).join(', ')
      : 'no labels'
  );
  if (desc.canary) {
    parts.push(
      `canary v${desc.canary.version} at ${formatShare(desc.canary.weight)}`
    );
  }
  const traffic = Object.entries(desc.traffic)
    .filter(([, s]) => s > 0)
    .sort(([a], [b]) => Number(b) - Number(a));
  if (traffic.length) {
    parts.push(
      'traffic ' + traffic.map(([v, s]) => `v${v} ${formatShare(s)}`).join(', ')
    );
  }
  return parts.join(' · ');
}

/** The share a user typed for a canary: `0.1`, `10%`, `10 %`; between 0 and 1. */
export function parseWeight(
  text: string
): { ok: true; value: number } | { ok: false; error: string } {
  const t = text.trim();
  const percent = t.endsWith('%');
  const body = percent ? t.slice(0, -1).trim() : t;
  if (!/^([0-9]+(\.[0-9]*)?|\.[0-9]+)$/.test(body)) {
    return {
      ok: false,
      error: 'a weight is a number between 0 and 1, or a percentage'
    };
  }
  const value = percent ? Number(body) / 100 : Number(body);
  if (!(value >= 0 && value <= 1)) {
    return {
      ok: false,
      error: 'the weight must be between 0 and 1 (0% to 100%)'
    };
  }
  return { ok: true, value };
}

/** A label name the server accepts: 1-128 letters, digits, `_`, `-` or `.`. */
export function validLabel(label: string): boolean {
  return /^[A-Za-z0-9_.-]{1,128}$/.test(label);
}

// ------------------------------------------------------------------------------------------
// URLs and the curl line
// ------------------------------------------------------------------------------------------

/** `{base}{prefix}/v1/models/{model}`: TF Serving's model URL on this server (`base` is the
 * absolute base URL, ending with `/`). */
export function modelUrl(base: string, prefix: string, model: string): string {
  const b = base.endsWith('/') ? base : base + '/';
  const p = prefix.replace(/^\/+|\/+$/g, '');
  return `${b}${p}/v1/models/${encodeURIComponent(model)}`;
}

/** The model's REST predict URL. */
export function predictUrl(
  base: string,
  prefix: string,
  model: string
): string {
  return modelUrl(base, prefix, model) + ':predict';
}

/** A POSIX shell word for `text` (single quotes). */
export function shellQuote(text: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(text)
    ? text
    : `'${text.replace(/'/g, "'\\''")}'`;
}

/** The placeholder the curl line uses for the token (never the real one). */
export const TOKEN_PLACEHOLDER = '$JUPYTER_TOKEN';

/** Above this many values per instance the curl line reads its body from a file. */
export const MAX_EXAMPLE_VALUES = 256;

/** The request body of a curl line, from the model's signature when the metadata gives one:
 * one instance of zeros (row format; `{"b64": ""}` for `*_bytes` inputs). */
export function exampleBody(metadata: unknown): {
  body: string | null;
  note: string;
} {
  const inputs = signatureInputs(metadata);
  if (!inputs) {
    return {
      body: '{"instances": [[1.0]]}',
      note: 'the model did not describe its inputs: adapt the instances to its signature'
    };
  }
  const names = Object.keys(inputs).sort();
  const values: Record<string, unknown> = {};
  for (const name of names) {
    const info = inputs[name];
    const dims = info.dims.slice(1).map(d => (d < 0 ? 1 : d));
    const count = dims.reduce((a, b) => a * b, 1);
    if (info.unknownRank || count > MAX_EXAMPLE_VALUES) {
      return {
        body: null,
        note: `input "${name}" is ${info.unknownRank ? 'of unknown shape' : dims.join('×') + ' per instance'}: write the request to request.json`
      };
    }
    values[name] = filled(dims, zeroOf(info.dtype, name));
  }
  const instance = names.length === 1 ? values[names[0]] : values;
  return {
    body: JSON.stringify({ instances: [instance] }),
    note:
      names.length === 1
        ? `one instance of zeros for input "${names[0]}"`
        : `one instance of zeros for inputs ${names.map(n => `"${n}"`).join(', ')}`
  };
}

function signatureInputs(
  metadata: unknown
): Record<
  string,
  { dtype: string; dims: number[]; unknownRank: boolean }
> | null {
  if (!isObject(metadata) || !isObject(metadata.metadata)) {
    return null;
  }
  const outer = metadata.metadata.signature_def;
  const defs =
    isObject(outer) && isObject(outer.signature_def)
      ? outer.signature_def
      : null;
  if (!defs) {
    return null;
  }
  const def = defs['serving_default'] ?? Object.values(defs)[0];
  if (
    !isObject(def) ||
    !isObject(def.inputs) ||
    !Object.keys(def.inputs).length
  ) {
    return null;
  }
  const out: Record<
    string,
    { dtype: string; dims: number[]; unknownRank: boolean }
  > = {};
  for (const [name, info] of Object.entries(def.inputs)) {
    if (!isObject(info)) {
      return null;
    }
    const shape = isObject(info.tensor_shape) ? info.tensor_shape : {};
    const dims = Array.isArray(shape.dim)
      ? shape.dim.map(d => (isObject(d) ? num(d.size, -1) : -1))
      : [];
    out[name] = {
      dtype: str(info.dtype, 'DT_FLOAT'),
      dims,
      unknownRank: shape.unknown_rank === true
    };
  }
  return out;
}

function zeroOf(dtype: string, name: string): unknown {
  if (dtype === 'DT_STRING') {
    return name.endsWith('_bytes') ? { b64: '' } : '';
  }
  if (dtype === 'DT_BOOL') {
    return false;
  }
  return 0;
}

function filled(dims: number[], value: unknown): unknown {
  if (!dims.length) {
    return value;
  }
  const [first, ...rest] = dims;
  return Array.from({ length: first }, () => filled(rest, value));
}

/** A curl line that calls the model's predict URL with the user's token (as a placeholder). */
export function curlLine(url: string, body: string | null): string {
  const data = body === null ? '@request.json' : body;
  return `curl -H "Authorization: token ${TOKEN_PLACEHOLDER}" -d ${shellQuote(data)} ${shellQuote(url)}`;
}

// ------------------------------------------------------------------------------------------
// Formatting
// ------------------------------------------------------------------------------------------

/** "N models · R req/s", the status bar's text. */
export function summaryText(snapshot: ISnapshot | null): string {
  if (!snapshot) {
    return 'TF Serving';
  }
  const n = snapshot.models.length;
  return `${n} model${n === 1 ? '' : 's'} · ${formatRate(snapshot.totalRate)} req/s`;
}

// ------------------------------------------------------------------------------------------
// The sparkline
// ------------------------------------------------------------------------------------------

/** The polylines (SVG `points` strings) of a sparkline of `values` (oldest first, null: a
 * gap) in a `width`×`height` box, y from 0 at the bottom to the largest value (with a 1px
 * margin); the last point is placed at the right edge, one slot per value of `slots`. */
export function sparklinePoints(
  values: ReadonlyArray<number | null>,
  width: number,
  height: number,
  slots = values.length
): string[] {
  const max = Math.max(0, ...values.filter((v): v is number => v !== null));
  const n = Math.max(slots, values.length, 2);
  const step = width / (n - 1);
  const offset = n - values.length;
  const lines: string[] = [];
  let current: string[] = [];
  values.forEach((v, i) => {
    if (v === null) {
      if (current.length) {
        lines.push(current.join(' '));
      }
      current = [];
      return;
    }
    const x = (offset + i) * step;
    const y = max > 0 ? height - 1 - (v / max) * (height - 2) : height - 1;
    current.push(`${round(x)},${round(y)}`);
  });
  if (current.length) {
    lines.push(current.join(' '));
  }
  // a lone point is drawn as a tiny segment so that it is visible
  return lines.map(l => (l.includes(' ') ? l : `${l} ${l}`));
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

/** The states in their order (for a legend, a sort). */
export function isKnownState(state: string): state is ServableState {
  return STATES.includes(state);
}

// ------------------------------------------------------------------------------------------
// Bulk jobs
// ------------------------------------------------------------------------------------------

/** A bulk job's state (`Job.state` in openapi.json); `interrupted`: the server stopped while
 * it ran. */
export type JobState =
  'pending' | 'running' | 'completed' | 'failed' | 'cancelled' | 'interrupted';

/** In the order a summary lists them. */
const JOB_STATES: ReadonlyArray<JobState> = [
  'running',
  'pending',
  'failed',
  'interrupted',
  'cancelled',
  'completed'
];

/** `Job`: an entry of `GET P/api/jobs`, and a job action's answer. */
export interface IJob {
  id: string;
  /** One of `JobState` (an unknown state is passed through). */
  state: string;
  model: string;
  /** The version the job runs (pinned when it started). */
  version: number | null;
  signature: string;
  method: string;
  inputs: string[];
  output: string;
  output_format: string;
  rows_total: number;
  rows_done: number;
  shards_total: number;
  shards_done: number;
  rows_per_second: number | null;
  eta_seconds: number | null;
  /** When it was started, seconds since the epoch (null: not reported). */
  created_at: number | null;
  error: string | null;
}

/** `JobList` (`GET P/api/jobs`): oldest first, as the server lists them. */
export interface IJobList {
  jobs: IJob[];
}

/** One `Job`. */
export function parseJob(doc: unknown): IJob {
  if (
    !isObject(doc) ||
    typeof doc.id !== 'string' ||
    typeof doc.state !== 'string'
  ) {
    throw new ApiError('parse', 200, 'a job has no "id" or "state"');
  }
  return {
    id: doc.id,
    state: doc.state,
    model: str(doc.model),
    version: versionNumber(doc.version),
    signature: str(doc.signature, 'serving_default'),
    method: str(doc.method, 'predict'),
    inputs: Array.isArray(doc.inputs)
      ? doc.inputs.filter((i): i is string => typeof i === 'string')
      : [],
    output: str(doc.output),
    output_format: str(doc.output_format),
    rows_total: num(doc.rows_total),
    rows_done: num(doc.rows_done),
    shards_total: num(doc.shards_total),
    shards_done: num(doc.shards_done),
    rows_per_second: numOrNull(doc.rows_per_second),
    eta_seconds: numOrNull(doc.eta_seconds),
    created_at: numOrNull(doc.created_at),
    error: strOrNull(doc.error) || null
  };
}

/** `GET P/api/jobs`. Entries that are not jobs are skipped. */
export function parseJobList(doc: unknown): IJobList {
  if (!isObject(doc) || !Array.isArray(doc.jobs)) {
    throw new ApiError('parse', 200, 'the jobs answer has no "jobs" list');
  }
  const jobs: IJob[] = [];
  for (const j of doc.jobs) {
    try {
      jobs.push(parseJob(j));
    } catch {
      // skip an entry the panel cannot read rather than lose the whole list
    }
  }
  return { jobs };
}

/** Pending or running: it can be cancelled, and the panel polls faster. */
export function isJobActive(job: IJob): boolean {
  return job.state === 'pending' || job.state === 'running';
}

/** Newest first (by `created_at`; the server's order, reversed, for equal times). */
export function sortJobs(jobs: ReadonlyArray<IJob>): IJob[] {
  return jobs
    .map((job, index) => ({ job, index }))
    .sort(
      (a, b) =>
        (b.job.created_at ?? -Infinity) - (a.job.created_at ?? -Infinity) ||
        b.index - a.index
    )
    .map(({ job }) => job);
}

/** How many ended jobs the panel shows at first, and how many more each "show more" adds. */
export const JOB_PAGE = 10;

/** The jobs the panel shows: every pending or running one and the `endedLimit` newest of the
 * others, in the given order (newest first); and how many are hidden. */
export function pageJobs(
  jobs: ReadonlyArray<IJob>,
  endedLimit: number
): { shown: IJob[]; hidden: number } {
  const shown: IJob[] = [];
  let ended = 0;
  for (const job of jobs) {
    if (isJobActive(job)) {
      shown.push(job);
    } else if (ended++ < endedLimit) {
      shown.push(job);
    }
  }
  return { shown, hidden: jobs.length - shown.length };
}

/** "1 running · 2 completed": how many jobs are in each state. */
export function jobsSummary(jobs: ReadonlyArray<IJob>): string {
  const counts = new Map<string, number>();
  for (const job of jobs) {
    counts.set(job.state, (counts.get(job.state) ?? 0) + 1);
  }
  const known: ReadonlyArray<string> = JOB_STATES;
  const order = [
    ...JOB_STATES,
    ...Array.from(counts.keys())
      .filter(s => !known.includes(s))
      .sort()
  ];
  const parts = order
    .filter(s => counts.has(s))
    .map(s => `${counts.get(s)} ${s}`);
  return parts.length ? parts.join(' · ') : 'none';
}

/** What a job runs: "half_plus_two v1". */
export function jobTarget(job: IJob): string {
  return job.version === null ? job.model : `${job.model} v${job.version}`;
}

/** A job's progress: the share of its rows done, and its rows and shards as text. */
export interface IJobProgress {
  /** Between 0 and 1; null before there is anything to count. */
  fraction: number | null;
  /** A whole percentage for a progress bar (0 to 100, and 100 only once all is done). */
  percent: number;
  /** "1,000 / 20,000 rows". */
  rows: string;
  /** "1 / 20 shards". */
  shards: string;
}

export function jobProgress(job: IJob): IJobProgress {
  let fraction: number | null = null;
  if (job.rows_total > 0) {
    fraction = job.rows_done / job.rows_total;
  } else if (job.shards_total > 0) {
    fraction = job.shards_done / job.shards_total;
  } else if (job.state === 'completed') {
    fraction = 1;
  }
  if (fraction !== null) {
    fraction = Math.min(1, Math.max(0, fraction));
  }
  return {
    fraction,
    percent: fraction === null ? 0 : Math.floor(fraction * 100),
    rows: `${formatCount(job.rows_done)} / ${formatCount(job.rows_total)} rows`,
    shards: `${formatCount(job.shards_done)} / ${formatCount(job.shards_total)} shard${job.shards_total === 1 ? '' : 's'}`
  };
}

/** A share done: `0%`, `<1%`, `42%`, `100%` (only when complete). */
export function formatPercent(fraction: number | null): string {
  if (fraction === null || !Number.isFinite(fraction)) {
    return NONE;
  }
  if (fraction > 0 && fraction < 0.01) {
    return '<1%';
  }
  return `${Math.floor(Math.min(1, Math.max(0, fraction)) * 100)}%`;
}

/** Rows per second: `850 rows/s`, `7.7k rows/s`, `– rows/s`. */
export function formatRowRate(r: number | null): string {
  return `${formatRate(r)} rows/s`;
}

/** A duration, e.g. an ETA: `<1 s`, `45 s`, `3 min 20 s`, `25 min`, `2 h 5 min`, `3 d 4 h`. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) {
    return NONE;
  }
  if (seconds < 0.5) {
    return '<1 s';
  }
  const s = Math.round(seconds);
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 600) {
    return s % 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s / 60} min`;
  }
  const m = Math.round(s / 60);
  if (m < 60) {
    return `${m} min`;
  }
  const h = Math.floor(m / 60);
  if (h < 24) {
    return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  }
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** The last `segments` parts of a path, after `…/` when there are more: the output directory
 * as a narrow panel can show it. */
export function shortPath(path: string, segments = 2): string {
  const parts = path.replace(/[\\/]+$/, '').split(/[\\/]+/);
  return parts.length > segments + 1
    ? `…/${parts.slice(-segments).join('/')}`
    : path;
}

/** An action on a bulk job. `remove`: the server forgets an ended job (its results stay). */
export type JobAction = 'cancel' | 'resume' | 'remove';

/** The actions a job's state allows, in the order the panel shows them. */
export function jobActions(job: IJob): JobAction[] {
  switch (job.state) {
    case 'pending':
    case 'running':
      return ['cancel'];
    case 'failed':
    case 'cancelled':
    case 'interrupted':
      return ['resume', 'remove'];
    case 'completed':
      return ['remove'];
    default:
      return [];
  }
}

/** The request of a job action (`DELETE` cancels a running job and forgets an ended one). */
export function jobActionRequest(id: string, action: JobAction): IApiRequest {
  const path = `api/jobs/${encodeURIComponent(id)}`;
  return action === 'resume'
    ? { method: 'POST', path: `${path}:resume`, body: {} }
    : { method: 'DELETE', path };
}

/** A short name of a job action, e.g. "Cancel job abc". */
export function jobActionTitle(id: string, action: JobAction): string {
  const verb = { cancel: 'Cancel', resume: 'Resume', remove: 'Remove' }[action];
  return `${verb} job ${id}`;
}

/** What to ask before a job action that stops work or loses the job's record; null for one
 * that loses nothing (resume, removing a completed job). */
export function jobConfirmation(
  job: IJob,
  action: JobAction
): IConfirmation | null {
  switch (action) {
    case 'cancel': {
      const p = jobProgress(job);
      return {
        title: `Cancel job ${job.id}?`,
        body:
          `The job on ${jobTarget(job)} stops after its current call, at ${formatPercent(p.fraction)} (${p.shards}). ` +
          `Its complete shards stay in ${job.output}; Resume runs the rest.`,
        accept: 'Cancel job',
        dismiss: 'Keep running'
      };
    }
    case 'remove':
      return job.state === 'completed'
        ? null
        : {
            title: `Remove job ${job.id}?`,
            body: `The server forgets the ${job.state} job on ${jobTarget(job)}: it leaves the list and can no longer be resumed from here. Its results stay in ${job.output}.`,
            accept: 'Remove job'
          };
    case 'resume':
      return null;
  }
}

/** What the panel says after a job action the server accepted (`job`: its answer). */
export function describeJobAnswer(action: JobAction, job: IJob): string {
  const title = jobActionTitle(job.id, action);
  switch (action) {
    case 'cancel':
      if (isJobActive(job)) {
        return `${title}: asked. It stops after its current call; its complete shards stay.`;
      }
      if (job.state === 'cancelled') {
        return `${title}: done, at ${formatPercent(jobProgress(job).fraction)}.`;
      }
      // DELETE forgets a job that ended in the meantime
      return `${title}: it had already ended (${job.state}), so the server removed it from the list. Its results stay in ${job.output}.`;
    case 'resume':
      return `${title}: done, ${job.state}; it skips the shards already written.`;
    case 'remove':
      return `${title}: done. Its results stay in ${job.output}.`;
  }
}
