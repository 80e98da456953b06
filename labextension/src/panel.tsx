/**
 * The side panel: a ReactWidget over `TFServingModel` (store.ts). Every model with its
 * versions (state, labels, handles, counters, latency, rates, traffic share, a sparkline of
 * p50), its failed loads, its actions with the server's answer inline, and how to call it;
 * above them the server's bulk jobs (progress, rate, ETA, error; cancel, resume, remove).
 *
 * It polls only while shown (`onAfterShow` / `onAfterHide`); it asks before any action that
 * takes traffic away from a version (`showDialog`); every control has an accessible name.
 */

import {
  Clipboard,
  Dialog,
  InputDialog,
  showDialog
} from '@jupyterlab/apputils';
import {
  Button,
  caretDownIcon,
  caretRightIcon,
  closeIcon,
  copyIcon,
  ReactWidget,
  refreshIcon,
  ToolbarButtonComponent
} from '@jupyterlab/ui-components';
import { ProgressBar } from '@jupyterlab/statusbar';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import { tfservingIcon } from './icon';
import {
  Action,
  actionTitle,
  confirmation,
  formatCount,
  formatLatency,
  formatRate,
  formatShare,
  formatDuration,
  formatPercent,
  formatRowRate,
  IConfirmation,
  IJob,
  IJobProgress,
  IModelView,
  isJobActive,
  isKnownState,
  IVersionView,
  JOB_PAGE,
  JobAction,
  jobActions,
  jobActionTitle,
  jobConfirmation,
  jobProgress,
  jobsSummary,
  jobTarget,
  NONE,
  pageJobs,
  pageVersions,
  shortPath,
  sparklinePoints,
  summaryText,
  validLabel,
  VERSION_PAGE
} from './model';
import { TFServingModel } from './store';
import {
  describeWarmup,
  formatWindow,
  TrafficAction,
  trafficConfirmation,
  trafficTitle
} from './traffic';
import { TrafficTools } from './trafficPanel';
import { ISectionIds, Metric, ShareInput, useShareField } from './widgets';

/** How many models the panel shows at first, and how many more each "show more" adds. */
export const MODEL_PAGE = 50;

/** How many failed loads a model lists. */
const FAILED_SHOWN = 5;

/** The widget's DOM id (ILayoutRestorer, the browser test). */
export const PANEL_ID = 'jupyter-tfserving-panel';

/** What the view asks of its host (dialogs, the clipboard): injectable for tests. */
export interface IPanelHost {
  /** Ask before an action; true to go ahead. */
  confirm(c: IConfirmation): Promise<boolean>;
  /** Ask for a label name; null when cancelled. */
  askLabel(title: string, current: string): Promise<string | null>;
  /** Copy text to the system clipboard; false when it could not. */
  copy(text: string): boolean;
}

/** JupyterLab's dialogs and clipboard. */
export const defaultHost: IPanelHost = {
  async confirm(c) {
    const result = await showDialog({
      title: c.title,
      body: c.body,
      buttons: [
        Dialog.cancelButton(
          c.dismiss ? { label: c.dismiss, ariaLabel: c.dismiss } : {}
        ),
        Dialog.warnButton({ label: c.accept, ariaLabel: c.accept })
      ]
    });
    return result.button.accept;
  },
  async askLabel(title, current) {
    const result = await InputDialog.getText({
      title,
      label: 'Label name (letters, digits, _ - .)',
      placeholder: 'stable',
      text: current,
      okLabel: 'Set label'
    });
    return result.button.accept ? (result.value ?? '').trim() : null;
  },
  copy(text) {
    try {
      Clipboard.copyToSystem(text);
      return true;
    } catch {
      return false;
    }
  }
};

/** The TF Serving side panel. */
export class TFServingPanel extends ReactWidget {
  constructor(
    readonly model: TFServingModel,
    private readonly _host: IPanelHost = defaultHost
  ) {
    super();
    this.id = PANEL_ID;
    this.addClass('jp-TFServing');
    this.title.icon = tfservingIcon;
    this.title.caption = 'TF Serving';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'TF Serving');
    model.changed.connect(this._onChanged, this);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.changed.disconnect(this._onChanged, this);
    this.model.setPanelVisible(false);
    super.dispose();
  }

  protected render(): JSX.Element {
    return <PanelView model={this.model} host={this._host} />;
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.model.setPanelVisible(this.isVisible);
  }

  protected onBeforeDetach(msg: Message): void {
    this.model.setPanelVisible(false);
    super.onBeforeDetach(msg);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.setPanelVisible(true);
    this.update();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.setPanelVisible(false);
  }

  private _onChanged(): void {
    if (this.isVisible) {
      this.update();
    }
  }
}

// ------------------------------------------------------------------------------------------
// The view
// ------------------------------------------------------------------------------------------

interface IViewProps {
  model: TFServingModel;
  host: IPanelHost;
}

/** The whole panel. */
export function PanelView(props: IViewProps): JSX.Element {
  const { model } = props;
  const [modelLimit, setModelLimit] = React.useState(MODEL_PAGE);
  const snapshot = model.snapshot;
  const models = snapshot?.models ?? [];
  const shown = models.slice(0, modelLimit);
  const stale = model.connection !== 'ok' && snapshot !== null;
  return (
    <div className="jp-TFServing-view" data-connection={model.connection}>
      <div className="jp-TFServing-top">
        <div className="jp-TFServing-header">
          <tfservingIcon.react
            tag="span"
            className="jp-TFServing-headerIcon"
            aria-hidden="true"
          />
          <h2 className="jp-TFServing-title">TF Serving</h2>
          <ToolbarButtonComponent
            className="jp-TFServing-refresh"
            icon={refreshIcon}
            tooltip="Refresh now"
            dataset={{ action: 'refresh' }}
            onClick={() => {
              void model.refresh();
            }}
          />
        </div>
        {snapshot && (
          <div
            className="jp-TFServing-summary"
            aria-label={`Summary: ${summaryText(snapshot)}`}
          >
            {summaryText(snapshot)}
          </div>
        )}
        <ConnectionBanner model={model} />
      </div>
      <JobsSection {...props} />
      {snapshot === null ? (
        model.connection === 'connecting' ? (
          <p className="jp-TFServing-empty">Connecting to TF Serving…</p>
        ) : null
      ) : models.length === 0 ? (
        <p className="jp-TFServing-empty">
          No model is served yet. From a notebook:{' '}
          <code>serve(model, name="demo")</code>, or put a SavedModel under the
          model repository.
        </p>
      ) : (
        <div
          className={`jp-TFServing-models${stale ? ' jp-mod-stale' : ''}`}
          aria-busy={stale}
        >
          {shown.map(m => (
            <ModelSection key={m.name} view={m} {...props} />
          ))}
          {models.length > shown.length && (
            <Button
              type="button"
              small
              className="jp-TFServing-more"
              data-action="more-models"
              aria-label={`Show ${Math.min(MODEL_PAGE, models.length - shown.length)} more models`}
              onClick={() => setModelLimit(modelLimit + MODEL_PAGE)}
            >
              Show more models ({models.length - shown.length} hidden)
            </Button>
          )}
        </div>
      )}
    </div>
  );
}

/** What the panel says when the server does not answer as it should. */
function ConnectionBanner(props: {
  model: TFServingModel;
}): JSX.Element | null {
  const { model } = props;
  if (model.connection === 'ok' || model.connection === 'connecting') {
    return null;
  }
  const since =
    model.lastUpdate !== null
      ? ` showing the state of ${new Date(model.lastUpdate).toLocaleTimeString()}.`
      : '';
  const hint =
    model.connection === 'forbidden'
      ? ' log in to Jupyter again, then reload this page;'
      : '';
  return (
    <div
      className={`jp-TFServing-banner jp-mod-${model.connection}`}
      role="alert"
      data-connection={model.connection}
    >
      <span className="jp-TFServing-bannerText">{model.connectionMessage}</span>
      {hint || since ? ` — ${(hint + since).trim()}` : ''}
    </div>
  );
}

/** The labels of the job actions' buttons, and what each does. */
const JOB_BUTTONS: Record<JobAction, { label: string; title: string }> = {
  cancel: {
    label: 'Cancel',
    title: 'Stop the job after its current call; its complete shards stay'
  },
  resume: {
    label: 'Resume',
    title: 'Run the job again; it skips the shards already written'
  },
  remove: {
    label: 'Remove',
    title: 'Take the job off the list; its results stay on disk'
  }
};

/** The server's bulk jobs, newest first: every pending or running one, and the newest of the
 * ended ones (more on demand). Shown once the server lists a job. */
function JobsSection(props: IViewProps): JSX.Element | null {
  const { model, host } = props;
  const [expanded, setExpanded] = React.useState(true);
  const [limit, setLimit] = React.useState(JOB_PAGE);
  const ids = React.useMemo(() => Private.ids(), []);
  const jobs = model.jobs ?? [];
  const result = model.jobsResult;
  if (!model.jobsSupported || (!jobs.length && !result && !model.jobsMessage)) {
    return null;
  }
  const { shown, hidden } = pageJobs(jobs, limit);
  const stale =
    model.jobs !== null &&
    model.connection !== 'ok' &&
    model.connection !== 'connecting';
  const summary = jobsSummary(jobs);
  return (
    <section
      className={`jp-TFServing-jobs${stale ? ' jp-mod-stale' : ''}`}
      aria-labelledby={ids.title}
      aria-busy={stale}
    >
      <div className="jp-TFServing-jobsHeader">
        <ToolbarButtonComponent
          className="jp-TFServing-toggle"
          icon={expanded ? caretDownIcon : caretRightIcon}
          tooltip={`${expanded ? 'Collapse' : 'Expand'} the bulk jobs`}
          aria-expanded={expanded}
          aria-controls={ids.body}
          dataset={{ action: 'toggle-jobs' }}
          onClick={() => setExpanded(!expanded)}
        />
        <h3 className="jp-TFServing-jobsTitle" id={ids.title}>
          Bulk jobs
        </h3>
        <span
          className="jp-TFServing-jobsSummary"
          aria-label={`Bulk jobs: ${summary}`}
        >
          {summary}
        </span>
      </div>
      <div className="jp-TFServing-jobsBody" id={ids.body} hidden={!expanded}>
        {model.jobsMessage && (
          <div className="jp-TFServing-jobsMessage" role="alert">
            The jobs could not be listed: {model.jobsMessage}
          </div>
        )}
        <ActionResult name="the bulk jobs" result={result} />
        {jobs.length === 0 && model.jobs !== null && (
          <div className="jp-TFServing-note">No bulk jobs.</div>
        )}
        <ul
          className="jp-TFServing-jobList"
          aria-label="Bulk jobs, newest first"
        >
          {shown.map(job => (
            <JobRow
              key={job.id}
              job={job}
              busy={model.isJobBusy(job.id)}
              act={action => {
                void Private.actJob(model, host, job, action);
              }}
            />
          ))}
        </ul>
        {hidden > 0 && (
          <Button
            type="button"
            small
            className="jp-TFServing-more"
            data-action="more-jobs"
            aria-label={`Show ${Math.min(JOB_PAGE, hidden)} more ended jobs`}
            onClick={() => setLimit(limit + JOB_PAGE)}
          >
            Show more jobs ({hidden} ended job{hidden === 1 ? '' : 's'} hidden)
          </Button>
        )}
      </div>
    </section>
  );
}

/** One job: what it runs, its state, progress, rate and ETA, output, error, actions. */
function JobRow(props: {
  job: IJob;
  busy: boolean;
  act: (action: JobAction) => void;
}): JSX.Element {
  const { job, busy, act } = props;
  const progress = jobProgress(job);
  const active = isJobActive(job);
  const status = job.state.replace(/[^a-z]/g, '') || 'unknown';
  const started =
    job.created_at !== null
      ? new Date(job.created_at * 1000).toLocaleString()
      : null;
  const details = [
    job.output_format,
    job.method !== 'predict' ? job.method : '',
    job.signature !== 'serving_default' ? `signature ${job.signature}` : ''
  ].filter(Boolean);
  return (
    <li
      className={`jp-TFServing-job jp-mod-${status}`}
      data-job={job.id}
      data-state={job.state}
      aria-label={`Job ${job.id} on ${jobTarget(job)}: ${job.state}, ${formatPercent(progress.fraction)} done`}
    >
      <div className="jp-TFServing-jobHead">
        <span className="jp-TFServing-jobTarget">{jobTarget(job)}</span>
        <span
          className={`jp-TFServing-state jp-TFServing-jobState jp-mod-${status}`}
          data-state={job.state}
        >
          {job.state}
        </span>
        <span
          className="jp-TFServing-jobId"
          title={`Job ${job.id}${started ? `, started ${started}` : ''}`}
        >
          {job.id}
        </span>
        <div
          className="jp-TFServing-jobActions"
          role="group"
          aria-label={`Actions on job ${job.id}`}
        >
          {jobActions(job).map(action => (
            <Button
              key={action}
              type="button"
              small
              data-action={action}
              disabled={busy}
              aria-label={jobActionTitle(job.id, action)}
              title={JOB_BUTTONS[action].title}
              onClick={() => act(action)}
            >
              {JOB_BUTTONS[action].label}
            </Button>
          ))}
        </div>
      </div>
      <div className="jp-TFServing-jobProgress">
        <JobBar job={job} progress={progress} />
        <span
          className="jp-TFServing-jobPercent"
          data-metric="percent"
          data-value={progress.fraction ?? ''}
        >
          {formatPercent(progress.fraction)}
        </span>
      </div>
      <div className="jp-TFServing-jobFacts">
        <span data-metric="rows" data-value={job.rows_done}>
          {progress.rows}
        </span>
        <span data-metric="shards" data-value={job.shards_done}>
          {progress.shards}
        </span>
        {active && (
          <span
            data-metric="rate"
            data-value={job.rows_per_second ?? ''}
            title="Rows per second in this run"
          >
            {formatRowRate(job.rows_per_second || null)}
          </span>
        )}
        {active && (
          <span
            data-metric="eta"
            data-value={job.eta_seconds ?? ''}
            title="Time left at the current rate"
          >
            ETA {formatDuration(job.eta_seconds)}
          </span>
        )}
      </div>
      <div
        className="jp-TFServing-jobOutput"
        title={`Inputs: ${job.inputs.join(', ') || NONE}\nOutput: ${job.output}`}
      >
        → {shortPath(job.output)} ({details.join(', ')})
      </div>
      {job.error && <div className="jp-TFServing-jobError">{job.error}</div>}
    </li>
  );
}

/** JupyterLab's progress bar, with an accessible name and value text. */
function JobBar(props: { job: IJob; progress: IJobProgress }): JSX.Element {
  const { job, progress } = props;
  const ref = React.useRef<HTMLDivElement>(null);
  const text = `${formatPercent(progress.fraction)}: ${progress.rows}, ${progress.shards}`;
  React.useLayoutEffect(() => {
    // ProgressBar takes no ARIA props: name its element here
    const bar = ref.current?.querySelector('[role="progressbar"]');
    bar?.setAttribute('aria-label', `Progress of job ${job.id}`);
    bar?.setAttribute('aria-valuetext', text);
  });
  return (
    <div className="jp-TFServing-jobBar" ref={ref} title={text}>
      <ProgressBar percentage={progress.percent} />
    </div>
  );
}

interface IModelProps extends IViewProps {
  view: IModelView;
}

/** One model: header, routing, actions, endpoints, answer, failed loads, versions. */
function ModelSection(props: IModelProps): JSX.Element {
  const { model, host, view } = props;
  const name = view.name;
  const [expanded, setExpanded] = React.useState(true);
  const [limit, setLimit] = React.useState(VERSION_PAGE);
  const weight = useShareField('10%', error =>
    model.note(name, { kind: 'error', text: `Canary: ${error}` })
  );
  const busy = model.isBusy(name);
  const result = model.result(name);
  const ids = React.useMemo(() => Private.ids(), []);
  // the details (recent requests, the shadow's full report) only while the section is open
  React.useEffect(() => {
    if (!expanded) {
      return;
    }
    const watch = model.watch(name);
    return () => watch.dispose();
  }, [model, name, expanded]);

  const act = (action: Action): void => {
    void Private.act(model, host, view, action);
  };
  const actTraffic = (action: TrafficAction): void => {
    void Private.actTraffic(model, host, view, action);
  };
  const canary = (version?: number): void => {
    const w = weight.read();
    if (w !== null) {
      act({ kind: 'canary', weight: w, version });
    }
  };
  const label = (version: number): void => {
    void Private.label(model, host, view, version);
  };

  const { shown, hidden } = pageVersions(view.versions, limit);
  const stable = view.labels['stable'];
  const servable = view.versions.some(v => v.state === 'AVAILABLE');
  return (
    <section
      className="jp-TFServing-model"
      data-model={name}
      aria-labelledby={ids.title}
    >
      <div className="jp-TFServing-modelHeader">
        <ToolbarButtonComponent
          className="jp-TFServing-toggle"
          icon={expanded ? caretDownIcon : caretRightIcon}
          tooltip={`${expanded ? 'Collapse' : 'Expand'} model ${name}`}
          aria-expanded={expanded}
          aria-controls={ids.body}
          dataset={{ action: 'toggle' }}
          onClick={() => setExpanded(!expanded)}
        />
        <h3 className="jp-TFServing-modelName" id={ids.title}>
          {name}
        </h3>
        <span
          className="jp-TFServing-modelRate"
          data-metric="rate"
          title="Requests per second (all versions) since the last poll"
        >
          {formatRate(view.rate)} req/s
        </span>
      </div>
      <div className="jp-TFServing-modelBody" id={ids.body} hidden={!expanded}>
        <div className="jp-TFServing-modelInfo">
          {[
            view.platform,
            view.versionPolicy,
            `${view.versions.length} version${view.versions.length === 1 ? '' : 's'}`,
            `${formatCount(view.requests)} requests`,
            `${formatCount(view.errors)} errors`
          ]
            .filter(Boolean)
            .join(' · ')}
        </div>
        <div className="jp-TFServing-routing" data-metric="routing">
          {stable !== undefined ? `stable v${stable}` : 'no stable label'}
          {view.canary
            ? ` · canary v${view.canary.version} at ${formatShare(view.canary.weight)}`
            : ''}
          {view.previousStable !== null
            ? ` · previous stable v${view.previousStable}`
            : ''}
          {Object.keys(view.pendingLabels).length
            ? ` · waiting: ${Object.entries(view.pendingLabels)
                .map(([l, v]) => `${l}=v${v}`)
                .join(', ')}`
            : ''}
        </div>
        <ModelLabels {...props} busy={busy} act={act} />
        {(servable || view.canary || stable !== undefined) && (
          <div
            className="jp-TFServing-modelActions"
            role="group"
            aria-label={`Actions on ${name}`}
          >
            <ShareInput
              id={ids.weight}
              className="jp-TFServing-weight"
              field={weight}
              label="Canary weight"
              ariaLabel={`Canary weight for ${name} (0 to 1, or a percentage)`}
              hint="The canary share: 0.1 or 10%"
              onEnter={() => canary()}
            />
            <Button
              type="button"
              small
              data-action="canary"
              disabled={busy}
              aria-label={`Start a canary on ${name}: the newest AVAILABLE version that is not stable takes the weight`}
              title="Send the weight of the unversioned traffic to the newest AVAILABLE version that is not stable"
              onClick={() => canary()}
            >
              Canary
            </Button>
            <Button
              type="button"
              small
              data-action="promote"
              disabled={busy || !view.canary}
              aria-label={`Promote the canary of ${name}`}
              title="The canary becomes stable (the old stable stays loaded for Rollback)"
              onClick={() => act({ kind: 'promote' })}
            >
              Promote
            </Button>
            <Button
              type="button"
              small
              data-action="rollback"
              disabled={busy}
              aria-label={`Roll back ${name}`}
              title="End the canary, or put the previous stable version back"
              onClick={() => act({ kind: 'rollback' })}
            >
              Rollback
            </Button>
          </div>
        )}
        <ActionResult name={name} model={name} result={result} />
        <Endpoints {...props} />
        <FailedLoads view={view} />
        <ul
          className="jp-TFServing-versions"
          aria-label={`Versions of ${name}, newest first`}
        >
          {shown.map(v => (
            <VersionRow
              key={v.version}
              name={name}
              v={v}
              isStable={stable === v.version}
              busy={busy}
              historyLength={model.historyLength}
              act={act}
              canary={canary}
              label={label}
            />
          ))}
        </ul>
        {hidden > 0 && (
          <Button
            type="button"
            small
            className="jp-TFServing-more"
            data-action="more-versions"
            aria-label={`Show ${Math.min(VERSION_PAGE, hidden)} more versions of ${name}`}
            onClick={() => setLimit(limit + VERSION_PAGE)}
          >
            Show more ({hidden} older version{hidden === 1 ? '' : 's'} hidden)
          </Button>
        )}
        <TrafficTools
          model={model}
          view={view}
          busy={busy}
          ids={ids}
          act={actTraffic}
        />
      </div>
    </section>
  );
}

/** The model's labels, each with a button that removes it. */
function ModelLabels(
  props: IModelProps & { busy: boolean; act: (a: Action) => void }
): JSX.Element | null {
  const { view, busy, act } = props;
  const labels = Object.entries(view.labels).sort(([a], [b]) =>
    a.localeCompare(b)
  );
  if (!labels.length) {
    return null;
  }
  return (
    <ul
      className="jp-TFServing-labelList"
      aria-label={`Labels of ${view.name}`}
    >
      {labels.map(([label, version]) => (
        <li
          key={label}
          className="jp-TFServing-label"
          data-label={label}
          data-version={version}
        >
          <span>
            {label} → v{version}
          </span>
          <button
            type="button"
            className="jp-TFServing-labelRemove"
            data-action="remove-label"
            disabled={busy}
            aria-label={`Remove label ${label} (version ${version}) of ${view.name}`}
            title={`Remove label ${label}`}
            onClick={() => act({ kind: 'removeLabel', label })}
          >
            <closeIcon.react tag="span" elementSize="small" />
          </button>
        </li>
      ))}
    </ul>
  );
}

/** The server's answer to the last action (or a copy), read out by screen readers. */
function ActionResult(props: {
  /** What the actions were on: a model's name, or "the bulk jobs". */
  name: string;
  model?: string;
  result: { kind: string; text: string } | undefined;
}): JSX.Element {
  const { name, model, result } = props;
  return (
    <div
      className={`jp-TFServing-result${result ? ` jp-mod-${result.kind}` : ''}`}
      data-model={model}
      data-kind={result?.kind ?? ''}
      role="status"
      aria-live="polite"
      aria-label={`Answer of the server for ${name}`}
      aria-busy={result?.kind === 'pending'}
    >
      {result?.text ?? ''}
    </div>
  );
}

/** How to call the model: REST URL, curl line, gRPC target. */
function Endpoints(props: IModelProps): JSX.Element {
  const { model, host, view } = props;
  const [open, setOpen] = React.useState(false);
  const name = view.name;
  const copy = (what: string, text: string): void => {
    model.note(
      name,
      host.copy(text)
        ? { kind: 'info', text: `Copied ${what}.` }
        : {
            kind: 'error',
            text: `Could not copy ${what}: select it and copy it by hand.`
          }
    );
  };
  // The metadata is fetched only once the endpoints are opened (or copied).
  const endpoints = open ? model.endpoints(name) : null;
  return (
    <details
      className="jp-TFServing-endpoints"
      open={open}
      onToggle={e => setOpen((e.target as HTMLDetailsElement).open)}
    >
      <summary aria-label={`How to call ${name}: REST URL, curl, gRPC`}>
        Call it: REST · curl{model.snapshot?.grpcTarget ? ' · gRPC' : ''}
      </summary>
      {endpoints && (
        <div className="jp-TFServing-endpointList">
          <div className="jp-TFServing-endpoint">
            <div className="jp-TFServing-endpointHead">
              <span className="jp-TFServing-endpointKind">
                REST predict URL
              </span>
              <CopyButton
                action="copy-url"
                label={`Copy the REST predict URL of ${name}`}
                onClick={() => copy('the REST URL', endpoints.url)}
              />
            </div>
            <code className="jp-TFServing-url">{endpoints.url}</code>
          </div>
          <div className="jp-TFServing-endpoint">
            <div className="jp-TFServing-endpointHead">
              <span className="jp-TFServing-endpointKind">curl</span>
              <CopyButton
                action="copy-curl"
                label={`Copy a curl line that calls ${name}`}
                onClick={() => copy('the curl line', endpoints.curl)}
              />
            </div>
            <code className="jp-TFServing-curl">{endpoints.curl}</code>
          </div>
          <div className="jp-TFServing-note">
            {endpoints.note}. Set JUPYTER_TOKEN to your Jupyter token first.
          </div>
          {endpoints.grpcTarget && (
            <div className="jp-TFServing-endpoint">
              <div className="jp-TFServing-endpointHead">
                <span className="jp-TFServing-endpointKind">
                  gRPC target (token in the authorization metadata)
                </span>
                <CopyButton
                  action="copy-grpc"
                  label={`Copy the gRPC target of ${name}`}
                  onClick={() => copy('the gRPC target', endpoints.grpcTarget!)}
                />
              </div>
              <code className="jp-TFServing-grpc">{endpoints.grpcTarget}</code>
            </div>
          )}
        </div>
      )}
    </details>
  );
}

function CopyButton(props: {
  action: string;
  label: string;
  onClick: () => void;
}): JSX.Element {
  return (
    <ToolbarButtonComponent
      className="jp-TFServing-copy"
      icon={copyIcon}
      tooltip={props.label}
      dataset={{ action: props.action }}
      onClick={props.onClick}
    />
  );
}

/** The versions whose load failed, with their errors. */
function FailedLoads(props: { view: IModelView }): JSX.Element | null {
  const { view } = props;
  if (!view.failed.length) {
    return null;
  }
  const shown = view.failed.slice(0, FAILED_SHOWN);
  return (
    <div
      className="jp-TFServing-failures"
      role="group"
      aria-label={`Failed loads of ${view.name}`}
    >
      <div className="jp-TFServing-failuresTitle">
        Failed load{view.failed.length === 1 ? '' : 's'}
      </div>
      <ul>
        {shown.map(v => (
          <li
            key={v.version}
            className="jp-TFServing-failure"
            data-version={v.version}
          >
            <strong>v{v.version}</strong> {v.errorCode}:{' '}
            {v.errorMessage || NONE}
          </li>
        ))}
      </ul>
      {view.failed.length > shown.length && (
        <div className="jp-TFServing-note">
          and {view.failed.length - shown.length} more
        </div>
      )}
    </div>
  );
}

interface IVersionProps {
  name: string;
  v: IVersionView;
  isStable: boolean;
  busy: boolean;
  historyLength: number;
  act: (a: Action) => void;
  canary: (version?: number) => void;
  label: (version: number) => void;
}

/** One version: state, labels, share, metrics, sparkline, actions. */
function VersionRow(props: IVersionProps): JSX.Element {
  const { name, v, isStable, busy, historyLength, act, canary, label } = props;
  const state = isKnownState(v.state) ? v.state : 'UNKNOWN';
  const status = v.unloaded ? 'unloaded' : v.failed ? 'failed' : state;
  const available = v.state === 'AVAILABLE';
  const who = `version ${v.version} of ${name}`;
  return (
    <li
      className={`jp-TFServing-version jp-mod-${status.toLowerCase()}`}
      data-version={v.version}
      data-state={v.state}
      aria-label={`Version ${v.version}: ${v.state}${v.unloaded ? ', unloaded' : ''}${v.labels.length ? `, labels ${v.labels.join(', ')}` : ''}`}
    >
      <div className="jp-TFServing-versionHead">
        <span className="jp-TFServing-versionNumber">v{v.version}</span>
        <span
          className={`jp-TFServing-state jp-mod-${status.toLowerCase()}`}
          data-state={v.state}
          title={
            v.failed
              ? `${v.errorCode}: ${v.errorMessage || NONE}`
              : v.unloaded
                ? 'Unloaded by a user: Load serves it again'
                : undefined
          }
        >
          {v.failed ? 'FAILED' : v.state}
          {v.unloaded ? ' (unloaded)' : ''}
        </span>
        {v.labels.map(l => (
          <span key={l} className="jp-TFServing-versionLabel" data-label={l}>
            {l}
          </span>
        ))}
        {(available || v.share > 0) && (
          <span
            className="jp-TFServing-share"
            data-metric="share"
            data-value={v.share}
            title={`Share of the unversioned traffic routed here${
              v.observedShare !== null
                ? `; ${formatShare(v.observedShare)} of the requests since the last poll`
                : ''
            }`}
          >
            {formatShare(v.share)}
          </span>
        )}
      </div>
      <div className="jp-TFServing-metricsRow">
        <dl className="jp-TFServing-metrics">
          <Metric
            name="requests"
            label="req"
            title="Requests since the server started"
            value={v.requests}
            text={formatCount(v.requests)}
          />
          <Metric
            name="errors"
            label="err"
            title="Errors since the server started"
            value={v.errors}
            text={formatCount(v.errors)}
            warn={(v.errors ?? 0) > 0}
          />
          <Metric
            name="rate"
            label="req/s"
            title="Requests per second since the last poll"
            value={v.rate}
            text={formatRate(v.rate)}
          />
          <Metric
            name="p50"
            label="p50"
            title="Median latency since the version loaded"
            value={v.p50}
            text={formatLatency(v.p50)}
          />
          <Metric
            name="p99"
            label="p99"
            title="99th percentile latency since the version loaded"
            value={v.p99}
            text={formatLatency(v.p99)}
          />
          {v.recent && (
            <Metric
              name="recent-p50"
              label={`p50 ${formatWindow(v.recent.window_seconds)}`}
              title={`Median latency of the last ${formatWindow(v.recent.window_seconds)} (${formatCount(v.recent.count)} requests)`}
              value={v.recent.p50}
              text={formatLatency(v.recent.p50)}
            />
          )}
          {v.recent && (
            <Metric
              name="recent-p99"
              label={`p99 ${formatWindow(v.recent.window_seconds)}`}
              title={`99th percentile latency of the last ${formatWindow(v.recent.window_seconds)} (${formatCount(v.recent.count)} requests)`}
              value={v.recent.p99}
              text={formatLatency(v.recent.p99)}
            />
          )}
          <Metric
            name="in-flight"
            label="in flight"
            title="Handles held by requests now"
            value={v.inFlight}
            text={formatCount(v.inFlight)}
          />
        </dl>
        <Sparkline
          values={v.history}
          slots={historyLength}
          label={Private.sparkLabel(v)}
        />
      </div>
      {v.warmup && (
        <div
          className="jp-TFServing-note jp-TFServing-warmup"
          data-metric="warmup"
          data-value={v.warmup.requests}
          title="The warmup requests (assets.extra/tf_serving_warmup_requests) replayed before this version became AVAILABLE"
        >
          {describeWarmup(v.warmup)}
        </div>
      )}
      <div
        className="jp-TFServing-versionActions"
        role="group"
        aria-label={`Actions on ${who}`}
      >
        <Button
          type="button"
          small
          data-action="promote"
          disabled={busy || !available || isStable}
          aria-label={`Promote ${who}`}
          title="This version becomes stable and takes all unversioned traffic"
          onClick={() => act({ kind: 'promote', version: v.version })}
        >
          Promote
        </Button>
        <Button
          type="button"
          small
          data-action="canary"
          disabled={busy || !available || isStable}
          aria-label={`Canary ${who} at the model's canary weight`}
          title="This version takes the canary weight of the unversioned traffic"
          onClick={() => canary(v.version)}
        >
          Canary
        </Button>
        <Button
          type="button"
          small
          data-action="label"
          disabled={busy}
          aria-label={`Set or move a label to ${who}`}
          title="Set a label on this version, or move one here"
          onClick={() => label(v.version)}
        >
          Label…
        </Button>
        {v.unloaded ? (
          <Button
            type="button"
            small
            data-action="load"
            disabled={busy}
            aria-label={`Load ${who}`}
            title="Serve this version again"
            onClick={() => act({ kind: 'load', version: v.version })}
          >
            Load
          </Button>
        ) : (
          <Button
            type="button"
            small
            data-action="unload"
            disabled={busy}
            aria-label={`Unload ${who}`}
            title="Stop serving this version (its files stay on disk)"
            onClick={() => act({ kind: 'unload', version: v.version })}
          >
            Unload
          </Button>
        )}
      </div>
    </li>
  );
}

/** A sparkline of p50 per poll interval, inline SVG coloured by the theme. */
function Sparkline(props: {
  values: Array<number | null>;
  slots: number;
  label: string;
}): JSX.Element {
  const width = 72;
  const height = 20;
  const lines = sparklinePoints(props.values, width, height, props.slots);
  return (
    <svg
      className="jp-TFServing-sparkline"
      width={width}
      height={height}
      viewBox={`0 0 ${width} ${height}`}
      role="img"
      aria-label={props.label}
    >
      <title>{props.label}</title>
      <line
        className="jp-TFServing-sparkBase"
        x1={0}
        y1={height - 0.5}
        x2={width}
        y2={height - 0.5}
      />
      {lines.map((points, i) => (
        <polyline key={i} className="jp-TFServing-sparkLine" points={points} />
      ))}
    </svg>
  );
}

namespace Private {
  let counter = 0;

  /** Unique DOM ids for one model section. */
  export function ids(): ISectionIds {
    const n = ++counter;
    const id = (part: string) => `jp-TFServing-model-${n}-${part}`;
    return {
      title: id('title'),
      body: id('body'),
      weight: id('weight'),
      loggingRate: id('logging-rate'),
      shadowVersion: id('shadow-version'),
      shadowFraction: id('shadow-fraction')
    };
  }

  /** Ask `question` (when there is one), then `run` the action called `title` on `model`;
   * a refusal or an error is said in the model's answer area. Never rejects. */
  async function confirmThen(
    model: TFServingModel,
    host: IPanelHost,
    name: string,
    title: string,
    question: () => IConfirmation | null,
    run: () => Promise<unknown>
  ): Promise<void> {
    try {
      const c = question();
      if (c && !(await host.confirm(c))) {
        model.note(name, { kind: 'info', text: `${title}: cancelled.` });
        return;
      }
      await run();
    } catch (error) {
      model.note(name, {
        kind: 'error',
        text: `${title}: ${error instanceof Error ? error.message : String(error)}`
      });
    }
  }

  /** Confirm when the action takes traffic away, then run it. Never rejects. */
  export function act(
    model: TFServingModel,
    host: IPanelHost,
    view: IModelView,
    action: Action
  ): Promise<void> {
    return confirmThen(
      model,
      host,
      view.name,
      actionTitle(action),
      () => confirmation(view, action),
      () => model.run(view.name, action)
    );
  }

  /** Confirm a traffic action that asks first, then run it. Never rejects. */
  export function actTraffic(
    model: TFServingModel,
    host: IPanelHost,
    view: IModelView,
    action: TrafficAction
  ): Promise<void> {
    return confirmThen(
      model,
      host,
      view.name,
      trafficTitle(action),
      () => trafficConfirmation(view, action),
      () => model.runTraffic(view.name, action)
    );
  }

  /** Confirm when the job action stops work or loses the job, then run it. Never rejects. */
  export async function actJob(
    model: TFServingModel,
    host: IPanelHost,
    job: IJob,
    action: JobAction
  ): Promise<void> {
    const title = jobActionTitle(job.id, action);
    try {
      const c = jobConfirmation(job, action);
      if (c && !(await host.confirm(c))) {
        model.noteJobs({ kind: 'info', text: `${title}: dismissed.` });
        return;
      }
      await model.runJob(job, action);
    } catch (error) {
      model.noteJobs({
        kind: 'error',
        text: `${title}: ${error instanceof Error ? error.message : String(error)}`
      });
    }
  }

  /** Ask for a label name, then set or move it. Never rejects. */
  export async function label(
    model: TFServingModel,
    host: IPanelHost,
    view: IModelView,
    version: number
  ): Promise<void> {
    try {
      const current =
        view.versions.find(v => v.version === version)?.labels[0] ?? '';
      const name = await host.askLabel(
        `Label version ${version} of ${view.name}`,
        current
      );
      if (name === null) {
        return;
      }
      if (!validLabel(name)) {
        model.note(view.name, {
          kind: 'error',
          text: `"${name}" is not a label name: use 1 to 128 letters, digits, _, - or .`
        });
        return;
      }
      await act(model, host, view, { kind: 'setLabel', label: name, version });
    } catch (error) {
      model.note(view.name, {
        kind: 'error',
        text: `Label: ${error instanceof Error ? error.message : String(error)}`
      });
    }
  }

  /** The sparkline's accessible name. */
  export function sparkLabel(v: IVersionView): string {
    const points = v.history.filter((p): p is number => p !== null);
    if (!points.length) {
      return `p50 latency of v${v.version} per poll: no requests yet`;
    }
    return `p50 latency of v${v.version} per poll: last ${formatLatency(
      [...v.history].reverse().find(p => p !== null) ?? null
    )}, highest ${formatLatency(Math.max(...points))} over ${v.history.length} polls`;
  }
}
