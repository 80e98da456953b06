/**
 * The panel's live state: one `Poll` of `GET P/api/stats` and `GET P/api/models`, the snapshot
 * built from them (`MetricsTracker`), the connection state, the actions and their answers,
 * and the per-model curl examples. No DOM: the view (panel.tsx) and the status-bar item
 * render it and re-render on `changed`.
 *
 * Polling: every `interval` ms while the panel is visible; every `statusInterval` ms while
 * only the status-bar item is shown (it shows "N models · R req/s"); not at all otherwise; and
 * never while the browser tab is hidden (`standby: 'when-hidden'`). A failed poll backs off
 * (the Poll's exponential backoff, up to `maxInterval`) and the state says why.
 *
 * The bulk jobs (`GET P/api/jobs`) have a poll of their own, only while the panel is visible:
 * every `jobInterval` ms while a job is pending or running, every `jobIdleInterval` ms
 * otherwise. A server without the jobs API (404) shows no jobs.
 *
 * A model's details follow the main poll, only while the panel is visible and only for the
 * models the view watches (`watch`: a model whose section is expanded): its recent logged
 * requests while its logging is on, and its full shadow report when the stats carry only a
 * summary of it.
 */

import { DisposableDelegate, IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { ITFServingApi } from './client';
import {
  Action,
  ApiError,
  actionTitle,
  curlLine,
  describeError,
  describeJobAnswer,
  describeModelState,
  exampleBody,
  IJob,
  isJobActive,
  ISnapshot,
  JobAction,
  jobActionTitle,
  MetricsTracker,
  predictUrl,
  sortJobs
} from './model';
import {
  describeTrafficAnswer,
  IRequestRecord,
  isLogging,
  IShadowReport,
  TrafficAction,
  trafficTitle
} from './traffic';

/** How the last poll went. */
export type ConnectionState =
  'connecting' | 'ok' | 'unreachable' | 'forbidden' | 'error';

/** The answer to the last action on a model (or a copy), shown inline. */
export interface IActionResult {
  kind: 'pending' | 'ok' | 'error' | 'info';
  text: string;
}

/** A model's recent logged requests, as the panel last read them. */
export interface IRecentRequests {
  /** Newest first; null until the first answer. */
  records: IRequestRecord[] | null;
  /** Why they could not be read ('' when all is well). */
  message: string;
}

/** How to call a model: its REST predict URL, a curl line, the gRPC target. */
export interface IEndpoints {
  url: string;
  curl: string;
  /** What the curl line sends (or why it reads request.json). */
  note: string;
  /** The server's gRPC target, when it reports one. */
  grpcTarget: string | null;
}

/** The live state of the TF Serving panel. */
export class TFServingModel implements IDisposable {
  constructor(options: TFServingModel.IOptions) {
    this.api = options.api;
    this._now = options.now ?? (() => Date.now());
    this._interval = options.interval ?? 2000;
    this._statusInterval = options.statusInterval ?? 10000;
    this._maxInterval = options.maxInterval ?? 30000;
    this.historyLength = options.historyLength ?? 40;
    this._tracker = new MetricsTracker(this.historyLength);
    this._poll = new Poll({
      auto: false,
      factory: () => this.update(),
      frequency: {
        interval: this._interval,
        backoff: true,
        max: this._maxInterval
      },
      name: 'jupyter_tfserving:stats',
      standby: 'when-hidden'
    });
    this._jobInterval = options.jobInterval ?? 1000;
    this._jobIdleInterval = options.jobIdleInterval ?? 5000;
    this._jobsPoll = new Poll({
      auto: false,
      factory: () => this.updateJobs(),
      frequency: this._jobsFrequency(),
      name: 'jupyter_tfserving:jobs',
      standby: 'when-hidden'
    });
  }

  readonly api: ITFServingApi;

  /** Points of latency history kept per version (the sparkline's width in polls). */
  readonly historyLength: number;

  /** Emitted whenever anything shown changes. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The last poll's snapshot (kept, and shown as stale, while the server does not answer). */
  get snapshot(): ISnapshot | null {
    return this._snapshot;
  }

  get connection(): ConnectionState {
    return this._connection;
  }

  /** What the panel says about the connection ('' when all is well). */
  get connectionMessage(): string {
    return this._connectionMessage;
  }

  /** When the last successful poll answered (ms), or null. */
  get lastUpdate(): number | null {
    return this._lastUpdate;
  }

  /** The bulk jobs, newest first; null until the server first lists them. */
  get jobs(): IJob[] | null {
    return this._jobs;
  }

  /** Why the jobs could not be listed, when the connection banner does not say it already
   * ('' when all is well). */
  get jobsMessage(): string {
    return this._jobsMessage;
  }

  /** False when the server has no jobs API (an older server). */
  get jobsSupported(): boolean {
    return this._jobsSupported;
  }

  /** Whether the jobs poll is running (the panel is shown). */
  get isPollingJobs(): boolean {
    return this._panelVisible && !this._disposed;
  }

  /** Whether the poll is running (the panel or the status-bar item is shown). */
  get isPolling(): boolean {
    return this._panelVisible || this._statusVisible;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** The panel was shown or hidden. */
  setPanelVisible(visible: boolean): void {
    if (visible === this._panelVisible) {
      return;
    }
    this._panelVisible = visible;
    this._schedule(visible);
    this._scheduleJobs();
  }

  /** The status-bar item was shown or hidden. */
  setStatusVisible(visible: boolean): void {
    if (visible === this._statusVisible) {
      return;
    }
    this._statusVisible = visible;
    this._schedule(visible && !this._panelVisible);
  }

  /** Poll now (when polling). */
  async refresh(): Promise<void> {
    if (this.isPolling && !this._disposed) {
      await Promise.all([
        this._poll.refresh(),
        this.isPollingJobs ? this._jobsPoll.refresh() : undefined
      ]);
    }
  }

  /**
   * One poll: both answers, merged into a new snapshot. Rejects (after recording why) when the
   * server does not answer as expected, so that the Poll backs off.
   */
  async update(): Promise<void> {
    const seq = ++this._seq;
    try {
      const [stats, list] = await Promise.all([
        this.api.stats(),
        this.api.models()
      ]);
      if (seq !== this._seq || this._disposed) {
        return;
      }
      const now = this._now();
      this._snapshot = this._tracker.update(stats, list, now);
      this._lastUpdate = now;
      this._connection = 'ok';
      this._connectionMessage = '';
      this._forget(new Set(this._snapshot.models.map(m => m.name)));
      this._changed.emit();
      this._fetchDetails(Array.from(this._watched.keys()));
    } catch (error) {
      if (seq !== this._seq || this._disposed) {
        return;
      }
      this._connection =
        error instanceof ApiError
          ? error.kind === 'network'
            ? 'unreachable'
            : error.kind === 'forbidden'
              ? 'forbidden'
              : 'error'
          : 'error';
      this._connectionMessage = describeError(error);
      this._changed.emit();
      throw error;
    }
  }

  /**
   * One poll of the jobs. Rejects (after recording why) when the server does not answer as
   * expected, so that the Poll backs off; the last list stays.
   */
  async updateJobs(): Promise<void> {
    const seq = ++this._jobsSeq;
    try {
      const list = await this.api.jobs();
      if (seq !== this._jobsSeq || this._disposed) {
        return;
      }
      this._setJobs(sortJobs(list.jobs));
      this._jobsSupported = true;
      this._jobsMessage = '';
      this._changed.emit();
    } catch (error) {
      if (seq !== this._jobsSeq || this._disposed) {
        return;
      }
      const missing =
        error instanceof ApiError &&
        error.kind === 'http' &&
        error.status === 404;
      // the connection banner already says when the server is unreachable or refuses
      const banner =
        error instanceof ApiError &&
        (error.kind === 'network' || error.kind === 'forbidden');
      this._jobsSupported = !missing;
      this._jobsMessage = missing || banner ? '' : describeError(error);
      this._changed.emit();
      throw error;
    }
  }

  /** The answer to the last action on a job, if any. */
  get jobsResult(): IActionResult | undefined {
    return this._jobsResult;
  }

  /** Whether an action on job `id` is under way. */
  isJobBusy(id: string): boolean {
    return this._jobsBusy.has(id);
  }

  /** Show a message in the jobs' answer area. */
  noteJobs(result: IActionResult): void {
    this._jobsResult = result;
    this._changed.emit();
  }

  /**
   * Run an action on a job (confirmations are the view's); the server's answer, also kept for
   * `jobsResult`. Never rejects. The list shows the answer at once, then polls.
   */
  async runJob(job: IJob, action: JobAction): Promise<IActionResult> {
    const title = jobActionTitle(job.id, action);
    if (this._jobsBusy.has(job.id)) {
      return {
        kind: 'error',
        text: `${title}: another action on it is under way`
      };
    }
    this._jobsBusy.add(job.id);
    this._jobsResult = { kind: 'pending', text: `${title}…` };
    this._changed.emit();
    let result: IActionResult;
    let answer: IJob | null = null;
    try {
      answer = await this.api.jobAct(job.id, action);
      result = { kind: 'ok', text: describeJobAnswer(action, answer) };
    } catch (error) {
      result = {
        kind: 'error',
        text:
          error instanceof ApiError && error.kind === 'http'
            ? `${title} refused: ${error.message} (HTTP ${error.status})`
            : `${title} failed: ${describeError(error)}`
      };
    }
    this._jobsBusy.delete(job.id);
    if (!this._disposed) {
      if (answer) {
        this._applyJobAnswer(action, answer);
      }
      this._jobsResult = result;
      this._changed.emit();
      if (this.isPollingJobs) {
        void this._jobsPoll.refresh();
      }
    }
    return result;
  }

  /** The answer to the last action on `model`, if any. */
  result(model: string): IActionResult | undefined {
    return this._results.get(model);
  }

  /** Whether an action on `model` is under way. */
  isBusy(model: string): boolean {
    return this._busy.has(model);
  }

  /** Show a message in a model's answer area (e.g. after a copy). */
  note(model: string, result: IActionResult): void {
    this._results.set(model, result);
    this._changed.emit();
  }

  /**
   * Run an action on a model (confirmations are the view's); the server's answer, also kept
   * for `result(model)`. Never rejects. Refreshes the view afterwards.
   */
  async run(model: string, action: Action): Promise<IActionResult> {
    return this._runOn(model, actionTitle(action), async () =>
      describeModelState(await this.api.act(model, action))
    );
  }

  /** Run a traffic action on a model (logging, shadow), as `run` does. */
  async runTraffic(
    model: string,
    action: TrafficAction
  ): Promise<IActionResult> {
    return this._runOn(model, trafficTitle(action), async () => {
      const answer = await this.api.traffic(model, action);
      if (answer.kind === 'shadow' && !this._disposed) {
        this._shadows.set(model, answer.shadow);
      }
      return describeTrafficAnswer(answer);
    });
  }

  /**
   * The view shows `model`'s section: read its details (recent requests, full shadow report)
   * now and after each poll while the panel is visible, until the result is disposed.
   */
  watch(model: string): IDisposable {
    this._watched.set(model, (this._watched.get(model) ?? 0) + 1);
    this._fetchDetails([model]);
    return new DisposableDelegate(() => {
      const n = (this._watched.get(model) ?? 1) - 1;
      if (n > 0) {
        this._watched.set(model, n);
        return;
      }
      this._watched.delete(model);
      this._requests.delete(model);
    });
  }

  /** Whether the view watches `model`. */
  isWatched(model: string): boolean {
    return this._watched.has(model);
  }

  /** `model`'s recent logged requests; undefined while its logging is off or it is not
   * watched. */
  recentRequests(model: string): IRecentRequests | undefined {
    return this._requests.get(model);
  }

  /** `model`'s shadow report: the stats' own when complete, else the last full one read
   * (`GET .../shadow` or an action's answer) for the same shadow, else the stats' summary. */
  shadow(model: string): IShadowReport | null {
    const summary =
      this._snapshot?.models.find(m => m.name === model)?.shadow ?? null;
    if (!summary || summary.complete) {
      return summary;
    }
    const full = this._shadows.get(model);
    return full &&
      full.candidate_version === summary.candidate_version &&
      full.started_at === summary.started_at
      ? { ...summary, outputs: full.outputs, worst: full.worst, complete: true }
      : summary;
  }

  /** Run an action whose answer `call` describes; see `run`. */
  private async _runOn(
    model: string,
    title: string,
    call: () => Promise<string>
  ): Promise<IActionResult> {
    if (this._busy.has(model)) {
      return {
        kind: 'error',
        text: `${title}: another action on ${model} is under way`
      };
    }
    this._busy.add(model);
    this._results.set(model, { kind: 'pending', text: `${title}…` });
    this._changed.emit();
    let result: IActionResult;
    try {
      result = { kind: 'ok', text: `${title}: done. ${await call()}` };
    } catch (error) {
      result = {
        kind: 'error',
        text:
          error instanceof ApiError && error.kind === 'http'
            ? `${title} refused: ${error.message} (HTTP ${error.status})`
            : `${title} failed: ${describeError(error)}`
      };
    }
    this._busy.delete(model);
    if (!this._disposed) {
      this._results.set(model, result);
      this._changed.emit();
      void this.refresh();
    }
    return result;
  }

  /**
   * How to call `model`. The first call for a model (and version) fetches its metadata, to
   * build a request body from its signature; until then, and if that fails, a generic body.
   */
  endpoints(model: string): IEndpoints {
    const url = predictUrl(this.api.baseUrl, this.api.prefix, model);
    const view = this._snapshot?.models.find(m => m.name === model);
    const available = view?.versions.find(v => v.state === 'AVAILABLE');
    const key = available ? `${model}\u0000${available.version}` : null;
    let example = key ? this._examples.get(key) : undefined;
    if (key && !example) {
      example = {
        body: '{"instances": [[1.0]]}',
        note: 'reading the signature…'
      };
      this._examples.set(key, example);
      void this._fetchExample(model, key);
    }
    const { body, note } = example ?? {
      body: '{"instances": [[1.0]]}',
      note: 'no AVAILABLE version: adapt the instances to the signature'
    };
    return {
      url,
      curl: curlLine(url, body),
      note,
      grpcTarget: this._snapshot?.grpcTarget ?? null
    };
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._poll.dispose();
    this._jobsPoll.dispose();
    Signal.clearData(this);
  }

  private async _fetchExample(model: string, key: string): Promise<void> {
    let example: { body: string | null; note: string };
    try {
      example = exampleBody(await this.api.metadata(model));
    } catch (error) {
      example = {
        body: '{"instances": [[1.0]]}',
        note: `the signature could not be read (${describeError(error)}): adapt the instances to it`
      };
    }
    if (this._disposed || !this._examples.has(key)) {
      return;
    }
    this._examples.set(key, example);
    this._changed.emit();
  }

  /**
   * Read the details of the watched `models` that need them, while the panel is visible: the
   * recent requests of one that logs, the full report of a shadow the stats only summarise.
   * One read per model at a time; a failure is said in the model's list, never rejects.
   */
  private _fetchDetails(models: string[]): void {
    if (!this._panelVisible || this._disposed || !this._snapshot) {
      return;
    }
    for (const name of models) {
      const view = this._snapshot.models.find(m => m.name === name);
      if (!view || !this._watched.has(name)) {
        continue;
      }
      if (!isLogging(view.logging)) {
        this._requests.delete(name);
      } else if (!this._reading.has(`requests\u0000${name}`)) {
        void this._read(`requests\u0000${name}`, async () => {
          let entry: IRecentRequests;
          try {
            const list = await this.api.requests(name);
            entry = { records: list.requests, message: '' };
          } catch (error) {
            entry = {
              records: this._requests.get(name)?.records ?? null,
              message: describeError(error)
            };
          }
          if (this._watched.has(name)) {
            this._requests.set(name, entry);
          }
        });
      }
      if (
        view.shadow &&
        !view.shadow.complete &&
        !this._reading.has(`shadow\u0000${name}`)
      ) {
        void this._read(`shadow\u0000${name}`, async () => {
          try {
            this._shadows.set(name, await this.api.shadowReport(name));
          } catch {
            // the summary stays shown
          }
        });
      }
    }
  }

  /** Run one detail read under `key` (none twice at once), then re-render. */
  private async _read(key: string, read: () => Promise<void>): Promise<void> {
    this._reading.add(key);
    try {
      await read();
    } finally {
      this._reading.delete(key);
      if (!this._disposed) {
        this._changed.emit();
      }
    }
  }

  /** Drop what is kept for models that are gone. */
  private _forget(names: Set<string>): void {
    for (const model of Array.from(this._shadows.keys())) {
      if (!names.has(model)) {
        this._shadows.delete(model);
      }
    }
    for (const model of Array.from(this._results.keys())) {
      if (!names.has(model) && !this._busy.has(model)) {
        this._results.delete(model);
      }
    }
    for (const key of Array.from(this._examples.keys())) {
      if (!names.has(key.split('\u0000')[0])) {
        this._examples.delete(key);
      }
    }
  }

  /** Start, slow down or stop the poll after a visibility change (`now`: poll at once). */
  private _schedule(now: boolean): void {
    if (this._disposed) {
      return;
    }
    if (!this.isPolling) {
      void this._poll.stop();
      return;
    }
    this._poll.frequency = {
      interval: this._panelVisible ? this._interval : this._statusInterval,
      backoff: true,
      max: Math.max(
        this._maxInterval,
        this._panelVisible ? this._interval : this._statusInterval
      )
    };
    if (now || this._poll.state.phase === 'stopped') {
      void this._poll
        .start()
        .then(() => (now ? this._poll.refresh() : undefined));
    }
  }

  /** Show a job action's answer in the list before the next poll. */
  private _applyJobAnswer(action: JobAction, answer: IJob): void {
    if (!this._jobs) {
      return;
    }
    // a poll under way may have been answered before the action: drop its answer
    this._jobsSeq++;
    // DELETE forgets a job that has ended (the answer is the job as it was)
    const forgotten =
      action === 'remove' ||
      (action === 'cancel' &&
        !isJobActive(answer) &&
        answer.state !== 'cancelled');
    this._setJobs(
      this._jobs
        .filter(j => !(forgotten && j.id === answer.id))
        .map(j => (j.id === answer.id ? answer : j))
    );
  }

  /** Keep the jobs, and poll them at the pace they need. */
  private _setJobs(jobs: IJob[]): void {
    this._jobs = jobs;
    this._jobsPoll.frequency = this._jobsFrequency();
  }

  private _jobsFrequency(): {
    interval: number;
    backoff: boolean;
    max: number;
  } {
    const interval = this._jobs?.some(isJobActive)
      ? this._jobInterval
      : this._jobIdleInterval;
    return {
      interval,
      backoff: true,
      max: Math.max(this._maxInterval, interval)
    };
  }

  /** Start or stop the jobs poll after a visibility change (shown: poll at once). */
  private _scheduleJobs(): void {
    if (this._disposed) {
      return;
    }
    if (!this.isPollingJobs) {
      void this._jobsPoll.stop();
      return;
    }
    void this._jobsPoll.start().then(() => this._jobsPoll.refresh());
  }

  private _changed = new Signal<this, void>(this);
  private _poll: Poll;
  private _tracker: MetricsTracker;
  private _now: () => number;
  private _interval: number;
  private _statusInterval: number;
  private _maxInterval: number;
  private _snapshot: ISnapshot | null = null;
  private _connection: ConnectionState = 'connecting';
  private _connectionMessage = '';
  private _lastUpdate: number | null = null;
  private _panelVisible = false;
  private _statusVisible = false;
  private _disposed = false;
  private _seq = 0;
  private _results = new Map<string, IActionResult>();
  private _busy = new Set<string>();
  private _examples = new Map<string, { body: string | null; note: string }>();
  private _jobsPoll: Poll;
  private _jobInterval: number;
  private _jobIdleInterval: number;
  private _jobs: IJob[] | null = null;
  private _jobsMessage = '';
  private _jobsSupported = true;
  private _jobsSeq = 0;
  private _jobsResult: IActionResult | undefined = undefined;
  private _jobsBusy = new Set<string>();
  private _watched = new Map<string, number>();
  private _requests = new Map<string, IRecentRequests>();
  private _shadows = new Map<string, IShadowReport>();
  private _reading = new Set<string>();
}

/** The namespace of `TFServingModel`. */
export namespace TFServingModel {
  export interface IOptions {
    api: ITFServingApi;
    /** Poll interval while the panel is visible (ms, default 2000). */
    interval?: number;
    /** Poll interval while only the status-bar item is shown (ms, default 10000). */
    statusInterval?: number;
    /** Longest backoff while the server does not answer (ms, default 30000). */
    maxInterval?: number;
    /** Jobs poll interval while a job is pending or running (ms, default 1000). */
    jobInterval?: number;
    /** Jobs poll interval while none is (ms, default 5000). */
    jobIdleInterval?: number;
    /** Points of latency history per version (default 40). */
    historyLength?: number;
    /** The clock (ms); for tests. */
    now?: () => number;
  }
}
