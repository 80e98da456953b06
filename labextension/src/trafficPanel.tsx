/**
 * A model's traffic tools in the side panel (issue 14), under its versions: the shadow of a
 * candidate version (its report: pairs, agreement, output differences, latency beside the
 * serving version's, the worst pairs; start, move and end it) and request logging (its
 * status, the sampling rate, the recent requests while it is on).
 *
 * The actions go through the model section's `act` (which asks first where
 * `trafficConfirmation` says so, and shows the server's answer in the section's answer area).
 * The recent requests and a full shadow report are the store's (`recentRequests`, `shadow`),
 * read only while the section is open (`TFServingModel.watch`).
 */

import { Button, HTMLSelect } from '@jupyterlab/ui-components';
import * as React from 'react';

import { formatCount, formatLatency, formatShare, IModelView } from './model';
import { TFServingModel } from './store';
import {
  compactTensors,
  describeCall,
  describeShadow,
  DETAILED,
  formatAgreement,
  formatBytes,
  formatDiff,
  formatTime,
  IRequestRecord,
  isLogging,
  IShadowLatency,
  IShadowPair,
  IShadowReport,
  REQUESTS_SHOWN,
  shadowCandidates,
  shadowOutputRows,
  TrafficAction
} from './traffic';
import { ISectionIds, Metric, ShareInput, useShareField } from './widgets';

/** What a model's traffic tools need from its section. */
export interface ITrafficProps {
  model: TFServingModel;
  view: IModelView;
  /** An action on the model is under way. */
  busy: boolean;
  ids: ISectionIds;
  /** Run a traffic action (asking first where it should). */
  act: (action: TrafficAction) => void;
}

/** The shadow, then request logging. */
export function TrafficTools(props: ITrafficProps): JSX.Element {
  return (
    <div className="jp-TFServing-traffic">
      <ShadowTool {...props} />
      <LoggingTool {...props} />
    </div>
  );
}

/** A titled block of the traffic tools, with a one-line summary. */
function Tool(props: {
  kind: string;
  title: string;
  name: string;
  summary: string;
  state: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <div
      className={`jp-TFServing-tool jp-TFServing-${props.kind}`}
      role="group"
      aria-label={`${props.title} of ${props.name}`}
      data-state={props.state}
    >
      <div className="jp-TFServing-toolHead">
        <span className="jp-TFServing-toolTitle">{props.title}</span>
        <span
          className="jp-TFServing-toolSummary"
          data-metric={`${props.kind}-summary`}
        >
          {props.summary}
        </span>
      </div>
      {props.children}
    </div>
  );
}

// ------------------------------------------------------------------------------------------
// Request logging
// ------------------------------------------------------------------------------------------

function LoggingTool(props: ITrafficProps): JSX.Element {
  const { model, view, busy, ids, act } = props;
  const name = view.name;
  const logging = view.logging;
  const on = isLogging(logging);
  const rate = useShareField('100%', error =>
    model.note(name, { kind: 'error', text: `Logging: ${error}` })
  );
  const set = (): void => {
    const r = rate.read();
    if (r !== null) {
      act({ kind: 'logging', rate: r });
    }
  };
  return (
    <Tool
      kind="logging"
      title="Request logging"
      name={name}
      summary={
        on ? `${formatShare(logging!.sampling_rate)} of requests` : 'off'
      }
      state={on ? 'on' : 'off'}
    >
      {logging && (
        <dl className="jp-TFServing-metrics">
          <Metric
            name="logged"
            label="logged"
            title="Requests written to the log"
            value={logging.logged}
            text={formatCount(logging.logged)}
          />
          <Metric
            name="dropped"
            label="dropped"
            title="Requests sampled but not written: the log's queue was full (a request is never delayed)"
            value={logging.dropped}
            text={formatCount(logging.dropped)}
            warn={logging.dropped > 0}
          />
          <Metric
            name="files"
            label="files"
            title={`Log files (${logging.filename_prefix || 'the default prefix'}*), rotated by size`}
            value={logging.files}
            text={formatCount(logging.files)}
          />
          <Metric
            name="bytes"
            label="size"
            title="What the log files take on disk"
            value={logging.bytes}
            text={formatBytes(logging.bytes)}
          />
        </dl>
      )}
      {logging?.error && (
        <div className="jp-TFServing-toolError" role="alert">
          Logging stopped: {logging.error}
        </div>
      )}
      <div
        className="jp-TFServing-toolActions"
        role="group"
        aria-label={`Request logging actions of ${name}`}
      >
        <ShareInput
          id={ids.loggingRate}
          className="jp-TFServing-loggingRate"
          field={rate}
          label="Sampling rate"
          ariaLabel={`Sampling rate of the request log of ${name} (0 to 1, or a percentage)`}
          hint="The share of requests logged: 0.1 or 10% (0 turns logging off)"
          onEnter={set}
        />
        <Button
          type="button"
          small
          data-action="logging"
          disabled={busy}
          aria-label={`Log the typed share of the requests of ${name}`}
          title="Log this share of the requests, with their answers, as PredictionLog records"
          onClick={set}
        >
          {on ? 'Set rate' : 'Log'}
        </Button>
        <Button
          type="button"
          small
          data-action="logging-off"
          disabled={busy || !on}
          aria-label={`Turn off the request log of ${name}`}
          title="Stop logging (the files written stay)"
          onClick={() => act({ kind: 'logging', rate: 0 })}
        >
          Off
        </Button>
      </div>
      {on && <RecentRequests model={model} name={name} />}
    </Tool>
  );
}

/** The newest logged requests, newest first (read while the section is open). */
function RecentRequests(props: {
  model: TFServingModel;
  name: string;
}): JSX.Element {
  const { model, name } = props;
  const recent = model.recentRequests(name);
  const records = recent?.records ?? null;
  return (
    <div className="jp-TFServing-requests">
      <div className="jp-TFServing-toolSubtitle">Recent requests</div>
      {recent?.message && (
        <div className="jp-TFServing-toolError" role="alert">
          The recent requests could not be read: {recent.message}
        </div>
      )}
      {records === null ? (
        !recent?.message && <div className="jp-TFServing-note">Reading…</div>
      ) : records.length === 0 ? (
        <div className="jp-TFServing-note">No request logged yet.</div>
      ) : (
        <ol
          className="jp-TFServing-requestList"
          aria-label={`The last ${REQUESTS_SHOWN} logged requests of ${name}, newest first`}
        >
          {records.map((r, i) => (
            <RequestRow key={`${r.time}-${i}`} record={r} />
          ))}
        </ol>
      )}
    </div>
  );
}

function RequestRow(props: { record: IRequestRecord }): JSX.Element {
  const r = props.record;
  return (
    <li
      className="jp-TFServing-request"
      data-version={r.version ?? ''}
      data-method={r.method}
    >
      <div className="jp-TFServing-requestHead">
        <span className="jp-TFServing-requestTime">{formatTime(r.time)}</span>
        <span className="jp-TFServing-versionNumber">
          {r.version === null ? '' : `v${r.version}`}
        </span>
        <span className="jp-TFServing-requestMethod">{describeCall(r)}</span>
      </div>
      <Tensors kind="inputs" tensors={r.inputs} />
      <Tensors kind="outputs" tensors={r.outputs} />
    </li>
  );
}

/** Named tensors on one line, cut to fit; the tooltip shows more of them. */
function Tensors(props: {
  kind: 'inputs' | 'outputs' | 'request';
  tensors: Record<string, unknown>;
}): JSX.Element {
  const arrow = { inputs: '→', outputs: '←', request: '→' }[props.kind];
  return (
    <code
      className={`jp-TFServing-tensors jp-mod-${props.kind}`}
      data-tensors={props.kind}
      title={compactTensors(props.tensors, 2000, DETAILED)}
    >
      {arrow} {compactTensors(props.tensors)}
    </code>
  );
}

// ------------------------------------------------------------------------------------------
// Shadow traffic
// ------------------------------------------------------------------------------------------

function ShadowTool(props: ITrafficProps): JSX.Element | null {
  const { model, view, busy, ids, act } = props;
  const name = view.name;
  const report = model.shadow(name);
  const candidates = shadowCandidates(view);
  const fraction = useShareField('100%', error =>
    model.note(name, { kind: 'error', text: `Shadow: ${error}` })
  );
  const [picked, setPicked] = React.useState<number | null>(null);
  if (!report && !candidates.length) {
    return null;
  }
  const active = report?.active ?? false;
  const version =
    picked !== null && candidates.includes(picked)
      ? picked
      : active && candidates.includes(report!.candidate_version)
        ? report!.candidate_version
        : (candidates[0] ?? null);
  const start = (): void => {
    const f = fraction.read(v =>
      v > 0 ? null : 'a shadow takes more than 0% (End stops it)'
    );
    if (f !== null && version !== null) {
      act({ kind: 'shadow', version, fraction: f });
    }
  };
  return (
    <Tool
      kind="shadow"
      title="Shadow"
      name={name}
      summary={report ? describeShadow(report) : 'none'}
      state={report ? (active ? 'active' : 'ended') : 'none'}
    >
      {report && <ShadowReportView report={report} />}
      <div
        className="jp-TFServing-toolActions"
        role="group"
        aria-label={`Shadow actions of ${name}`}
      >
        {candidates.length > 0 && (
          <>
            <label
              className="jp-TFServing-fieldLabel"
              htmlFor={ids.shadowVersion}
            >
              Candidate
            </label>
            <HTMLSelect
              id={ids.shadowVersion}
              className="jp-TFServing-shadowVersion"
              aria-label={`Candidate version of the shadow of ${name}`}
              value={version ?? ''}
              options={candidates.map(v => ({ value: v, label: `v${v}` }))}
              onChange={e => setPicked(Number(e.currentTarget.value))}
            />
            <ShareInput
              id={ids.shadowFraction}
              className="jp-TFServing-shadowFraction"
              field={fraction}
              label="of"
              ariaLabel={`Share of the unversioned requests of ${name} copied to the candidate (0 to 1, or a percentage)`}
              hint="The share of the unversioned requests copied: 0.5 or 50%"
              onEnter={start}
            />
            <Button
              type="button"
              small
              data-action="shadow"
              disabled={busy || version === null}
              aria-label={`Shadow the chosen version of ${name} with the typed share of its requests`}
              title="Copy this share of the unversioned requests to the candidate after the serving version has answered, and compare their answers"
              onClick={start}
            >
              {active ? 'Move shadow' : 'Shadow'}
            </Button>
          </>
        )}
        {active && (
          <Button
            type="button"
            small
            data-action="end-shadow"
            disabled={busy}
            aria-label={`End the shadow of ${name}`}
            title="Stop copying requests to the candidate (its report stays)"
            onClick={() => act({ kind: 'endShadow' })}
          >
            End shadow
          </Button>
        )}
      </div>
    </Tool>
  );
}

/** How many of the worst pairs a report shows before "show all". */
export const WORST_SHOWN = 3;

/** A shadow's figures: pairs and agreement, the differences per output, the latency of both
 * sides, the worst pairs. */
function ShadowReportView(props: { report: IShadowReport }): JSX.Element {
  const { report } = props;
  const [allWorst, setAllWorst] = React.useState(false);
  const rows = shadowOutputRows(report);
  const worst = allWorst ? report.worst : report.worst.slice(0, WORST_SHOWN);
  return (
    <>
      <dl className="jp-TFServing-metrics">
        <Metric
          name="pairs"
          label="pairs"
          title="Requests answered by both the serving version and the candidate"
          value={report.pairs}
          text={formatCount(report.pairs)}
        />
        <Metric
          name="agreement"
          label="agree"
          title="The share of pairs whose outputs agree (every output within tolerance, same argmax)"
          value={report.agreement}
          text={formatAgreement(report.agreement)}
          warn={report.agreement !== null && report.agreement < 1}
        />
        <Metric
          name="mismatches"
          label="mismatch"
          title="Pairs whose outputs could not be compared (different shapes or types)"
          value={report.mismatches}
          text={formatCount(report.mismatches)}
          warn={report.mismatches > 0}
        />
        <Metric
          name="shadow-errors"
          label="err"
          title="Requests the candidate failed"
          value={report.errors}
          text={formatCount(report.errors)}
          warn={report.errors > 0}
        />
        <Metric
          name="shadow-dropped"
          label="dropped"
          title="Copies dropped because the shadow queue was full (clients never wait for it)"
          value={report.dropped}
          text={formatCount(report.dropped)}
          warn={report.dropped > 0}
        />
      </dl>
      {rows.length > 0 && (
        <div className="jp-TFServing-tableWrap">
          <table
            className="jp-TFServing-table jp-TFServing-shadowOutputs"
            aria-label={`Differences per output between v${report.candidate_version} and the serving version`}
          >
            <thead>
              <tr>
                <th scope="col">output</th>
                <th
                  scope="col"
                  title="Share of pairs in which this output agrees"
                >
                  agree
                </th>
                <th scope="col" title="Largest absolute difference">
                  max |Δ|
                </th>
                <th scope="col" title="Mean absolute difference">
                  mean |Δ|
                </th>
                <th scope="col" title="Share of pairs with the same argmax">
                  argmax
                </th>
                <th scope="col" title="Quantiles of the absolute difference">
                  p50 |Δ|
                </th>
                <th scope="col">p90</th>
                <th scope="col">p99</th>
              </tr>
            </thead>
            <tbody>
              {rows.map(row => (
                <tr
                  key={row.name}
                  data-output={row.name}
                  title={`${row.pairs} pairs${row.mismatches ? `, ${row.mismatches} mismatched` : ''}`}
                >
                  <th scope="row">{row.name}</th>
                  <td data-metric="agreement">{row.agreement}</td>
                  <td data-metric="max-diff">{row.max}</td>
                  <td data-metric="mean-diff">{row.mean}</td>
                  <td data-metric="argmax">{row.argmax}</td>
                  <td data-metric="diff-p50">{row.p50}</td>
                  <td data-metric="diff-p90">{row.p90}</td>
                  <td data-metric="diff-p99">{row.p99}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <table
        className="jp-TFServing-table jp-TFServing-shadowLatency"
        aria-label="Latency of the serving version and of the candidate"
      >
        <thead>
          <tr>
            <th scope="col">latency</th>
            <th scope="col">p50</th>
            <th scope="col">p99</th>
            <th scope="col">n</th>
          </tr>
        </thead>
        <tbody>
          <LatencyRow
            side="serving"
            label="serving"
            q={report.latency_us.serving}
          />
          <LatencyRow
            side="shadow"
            label={`shadow v${report.candidate_version}`}
            q={report.latency_us.shadow}
          />
        </tbody>
      </table>
      {report.worst.length > 0 && (
        <div className="jp-TFServing-worst">
          <div className="jp-TFServing-toolSubtitle">Worst disagreements</div>
          <ol
            className="jp-TFServing-worstList"
            aria-label="The pairs that disagree most, worst first"
          >
            {worst.map((w, i) => (
              <WorstRow key={`${w.time}-${i}`} pair={w} />
            ))}
          </ol>
          {report.worst.length > worst.length && (
            <Button
              type="button"
              small
              className="jp-TFServing-more"
              data-action="more-worst"
              aria-label={`Show all ${report.worst.length} worst pairs`}
              onClick={() => setAllWorst(true)}
            >
              Show all {report.worst.length}
            </Button>
          )}
        </div>
      )}
    </>
  );
}

function LatencyRow(props: {
  side: string;
  label: string;
  q: IShadowLatency;
}): JSX.Element {
  const { q } = props;
  return (
    <tr data-side={props.side}>
      <th scope="row">{props.label}</th>
      <td data-metric="p50" data-value={q.p50 ?? ''}>
        {formatLatency(q.p50)}
      </td>
      <td data-metric="p99" data-value={q.p99 ?? ''}>
        {formatLatency(q.p99)}
      </td>
      <td data-metric="count">{formatCount(q.count)}</td>
    </tr>
  );
}

function WorstRow(props: { pair: IShadowPair }): JSX.Element {
  const w = props.pair;
  return (
    <li className="jp-TFServing-worstPair" data-output={w.output}>
      <div className="jp-TFServing-requestHead">
        <span className="jp-TFServing-requestTime">{formatTime(w.time)}</span>
        <span className="jp-TFServing-versionNumber">
          {w.serving_version === null ? '' : `v${w.serving_version}`}
        </span>
        <span>{w.output}</span>
        <span
          className={w.mismatch ? 'jp-TFServing-worstMismatch' : ''}
          data-metric="max-diff"
        >
          {w.mismatch ?? `max |Δ| ${formatDiff(w.max_abs_diff)}`}
        </span>
      </div>
      {w.request && <Tensors kind="request" tensors={w.request} />}
    </li>
  );
}
