/**
 * The panel's model (model.ts): parsing the management API's answers (real ones, captured
 * from a server serving half_plus_two v1/v2 with a 25% canary and a model whose load failed),
 * rates between polls, a model disappearing, errors, pagination of thousands of versions,
 * actions, the curl line and the formatting; the bulk jobs (a real `GET P/api/jobs` answer with
 * a completed, a failed, a cancelled and a running job): parsing, order, paging, progress,
 * ETA and their actions.
 */

import {
  actionRequest,
  actionTitle,
  ApiError,
  confirmation,
  curlLine,
  describeError,
  describeJobAnswer,
  describeModelState,
  errorBodyMessage,
  exampleBody,
  formatCount,
  formatDuration,
  formatLatency,
  formatPercent,
  formatRate,
  formatRowRate,
  formatShare,
  IJob,
  IModelDescriptionList,
  intervalQuantile,
  isJobActive,
  IStatsResponse,
  IStatsVersion,
  JOB_PAGE,
  jobActionRequest,
  jobActions,
  jobActionTitle,
  jobConfirmation,
  jobProgress,
  jobsSummary,
  jobTarget,
  MAX_EXAMPLE_VALUES,
  MetricsTracker,
  modelUrl,
  pageJobs,
  pageVersions,
  parseJob,
  parseJobList,
  parseModelDescription,
  parseModelList,
  parseStats,
  parseWeight,
  predictUrl,
  shellQuote,
  shortPath,
  sortJobs,
  sparklinePoints,
  summaryText,
  validLabel,
  VERSION_PAGE
} from '../model';

import jobsAnswer from './fixtures/jobs.json';
import metadataAnswer from './fixtures/metadata.json';
import modelsAnswer from './fixtures/models.json';
import statsAnswer from './fixtures/stats.json';

/** A deep copy of a fixture. */
function copy<T>(value: T): T {
  return JSON.parse(JSON.stringify(value));
}

const BOUNDS = Array.from({ length: 33 }, (_, i) => String(10 * 1.8 ** i));

/** Cumulative buckets from per-bucket counts (index: bucket; the rest 0). */
function buckets(counts: Record<number, number>): Array<[string, number]> {
  let running = 0;
  const out: Array<[string, number]> = BOUNDS.map((b, i) => {
    running += counts[i] ?? 0;
    return [b, running];
  });
  out.push(['+Inf', running + (counts[BOUNDS.length] ?? 0)]);
  return out;
}

function statsVersion(
  version: number,
  requests: number,
  extra: Partial<IStatsVersion> = {}
): IStatsVersion {
  return {
    version,
    state: 'AVAILABLE',
    error_code: 'OK',
    error_message: '',
    in_flight: 0,
    request_count: requests,
    error_count: 0,
    latency_us: {
      p50: requests ? 1983.6 : null,
      p90: requests ? 1983.6 : null,
      p99: requests ? 1983.6 : null,
      sum: 0,
      count: requests,
      buckets: buckets({ 9: requests })
    },
    recent_latency_us: null,
    warmup: null,
    ...extra
  };
}

function stats(
  models: Record<string, IStatsVersion[]>,
  grpcTarget: string | null = null
): IStatsResponse {
  return {
    models: Object.entries(models).map(([name, versions]) => ({
      name,
      labels: {},
      versions,
      logging: null,
      shadow: null
    })),
    grpc_target: grpcTarget
  };
}

function list(
  models: Record<
    string,
    { labels?: Record<string, number>; traffic?: Record<string, number> }
  >
): IModelDescriptionList {
  return {
    models: Object.entries(models).map(([name, m]) =>
      parseModelDescription({
        name,
        labels: m.labels ?? {},
        traffic: m.traffic ?? {},
        versions: []
      })
    ),
    grpc_target: null
  };
}

describe('parsing the API answers', () => {
  it('reads a real GET /api/stats answer', () => {
    const s = parseStats(statsAnswer);
    expect(s.grpc_target).toBe('127.0.0.1:45495');
    expect(s.models.map(m => m.name)).toEqual(['broken', 'half_plus_two']);
    const hpt = s.models[1];
    expect(hpt.labels).toEqual({ canary: 2, stable: 1 });
    expect(hpt.versions.map(v => v.version)).toEqual([2, 1]);
    const v2 = hpt.versions[0];
    expect(v2.state).toBe('AVAILABLE');
    expect(v2.request_count).toBe(11);
    expect(v2.in_flight).toBe(0);
    expect(v2.latency_us.p50).toBeCloseTo(1983.59, 1);
    expect(v2.latency_us.buckets).toHaveLength(34);
    expect(v2.latency_us.buckets[33]).toEqual(['+Inf', 11]);
    const broken = s.models[0].versions[0];
    expect(broken.state).toBe('END');
    expect(broken.error_code).toBe('DATA_LOSS');
    expect(broken.error_message).toMatch(/Could not read SavedModel/);
    expect(broken.latency_us.p50).toBeNull();
  });

  it('reads a real GET /api/models answer', () => {
    const l = parseModelList(modelsAnswer);
    expect(l.grpc_target).toBeNull();
    const hpt = l.models.find(m => m.name === 'half_plus_two')!;
    expect(hpt.platform).toBe('tensorflow');
    expect(hpt.version_policy).toBe('all');
    expect(hpt.canary).toEqual({ version: 2, weight: 0.25 });
    expect(hpt.traffic).toEqual({ '1': 0.75, '2': 0.25 });
    expect(hpt.previous_stable).toBeNull();
    expect(hpt.versions[0]).toEqual({
      version: 2,
      state: 'AVAILABLE',
      error_code: 'OK',
      error_message: '',
      labels: ['canary'],
      in_flight: 0,
      unloaded: false
    });
  });

  it('refuses answers without a models list', () => {
    for (const bad of [null, 42, 'x', [], {}, { models: 'no' }]) {
      expect(() => parseStats(bad)).toThrow(ApiError);
      expect(() => parseModelList(bad)).toThrow(ApiError);
    }
    try {
      parseStats({});
    } catch (error) {
      expect((error as ApiError).kind).toBe('parse');
    }
  });

  it('skips entries it cannot read, keeps the rest', () => {
    const s = parseStats({
      models: [
        null,
        { labels: {} },
        {
          name: 'm',
          labels: { stable: '3', bad: 'x' },
          versions: [{ version: 'nope' }, { version: 3 }, 7]
        }
      ]
    });
    expect(s.models).toHaveLength(1);
    expect(s.models[0].labels).toEqual({ stable: 3 });
    expect(s.models[0].versions).toHaveLength(1);
    expect(s.models[0].versions[0].request_count).toBe(0);
    expect(s.models[0].versions[0].latency_us.buckets).toEqual([]);
    const l = parseModelList({ models: [{ nope: 1 }, { name: 'ok' }] });
    expect(l.models.map(m => m.name)).toEqual(['ok']);
    expect(l.models[0].versions).toEqual([]);
    expect(l.models[0].canary).toBeNull();
  });

  it('reads the server message of error answers', () => {
    expect(errorBodyMessage('{"error": "Version 2 carries a label"}')).toBe(
      'Version 2 carries a label'
    );
    expect(errorBodyMessage('{"message": "Forbidden", "reason": null}')).toBe(
      'Forbidden'
    );
    expect(errorBodyMessage('<html>404</html>', 'Not Found')).toBe('Not Found');
    expect(errorBodyMessage('', 'Bad Gateway')).toBe('Bad Gateway');
    expect(errorBodyMessage('plain text')).toBe('plain text');
  });

  it('says what each kind of error means', () => {
    expect(describeError(new ApiError('network', 0, 'Failed to fetch'))).toBe(
      'server unreachable, retrying'
    );
    expect(describeError(new ApiError('forbidden', 403, 'Forbidden'))).toBe(
      'not authorized / logged out'
    );
    expect(
      describeError(new ApiError('http', 400, 'nothing to roll back'))
    ).toBe('nothing to roll back (HTTP 400)');
    expect(describeError(new ApiError('http', 404, 'Not Found'))).toMatch(
      /not found on this server/
    );
    expect(describeError(new ApiError('parse', 200, 'no models'))).toMatch(
      /unexpected answer/
    );
    expect(describeError(new Error('boom'))).toBe('boom');
  });
});

describe('MetricsTracker', () => {
  it('merges a real poll: versions, labels, traffic, failed loads', () => {
    const snap = new MetricsTracker().update(
      parseStats(statsAnswer),
      parseModelList(modelsAnswer),
      1000
    );
    expect(snap.grpcTarget).toBe('127.0.0.1:45495');
    expect(snap.models.map(m => m.name)).toEqual(['broken', 'half_plus_two']);
    const [broken, hpt] = snap.models;
    expect(broken.failed).toHaveLength(1);
    expect(broken.failed[0].errorCode).toBe('DATA_LOSS');
    expect(hpt.failed).toHaveLength(0);
    expect(hpt.versions.map(v => [v.version, v.labels, v.share])).toEqual([
      [2, ['canary'], 0.25],
      [1, ['stable'], 0.75]
    ]);
    expect(hpt.requests).toBe(25);
    expect(hpt.canary).toEqual({ version: 2, weight: 0.25 });
    // the first poll has nothing to compare with
    expect(hpt.rate).toBeNull();
    expect(hpt.versions[0].rate).toBeNull();
    expect(hpt.versions[0].history).toEqual([]);
    expect(snap.totalRate).toBeNull();
    expect(summaryText(snap)).toBe('2 models · – req/s');
  });

  it('computes requests per second and observed shares between polls', () => {
    const t = new MetricsTracker();
    const l = list({
      m: { labels: { stable: 1 }, traffic: { '1': 0.9, '2': 0.1 } }
    });
    t.update(
      stats({ m: [statsVersion(2, 0), statsVersion(1, 100)] }),
      l,
      10_000
    );
    const snap = t.update(
      stats({ m: [statsVersion(2, 10), statsVersion(1, 130)] }),
      l,
      12_000
    );
    const [v2, v1] = snap.models[0].versions;
    expect(v1.rate).toBeCloseTo(15);
    expect(v2.rate).toBeCloseTo(5);
    expect(snap.models[0].rate).toBeCloseTo(20);
    expect(snap.totalRate).toBeCloseTo(20);
    expect(v1.observedShare).toBeCloseTo(0.75);
    expect(v2.observedShare).toBeCloseTo(0.25);
    expect(v1.share).toBe(0.9);
    expect(summaryText(snap)).toBe('1 model · 20 req/s');
    // p50 of the interval's requests, from the histogram deltas
    expect(v1.history).toEqual([Number(BOUNDS[9])]);
  });

  it('computes no rate after a counter reset (server restarted)', () => {
    const t = new MetricsTracker();
    const l = list({ m: {} });
    t.update(stats({ m: [statsVersion(1, 500)] }), l, 0);
    const snap = t.update(stats({ m: [statsVersion(1, 3)] }), l, 2000);
    expect(snap.models[0].versions[0].rate).toBeNull();
    expect(snap.models[0].versions[0].history).toEqual([null]);
    const next = t.update(stats({ m: [statsVersion(1, 7)] }), l, 4000);
    expect(next.models[0].versions[0].rate).toBeCloseTo(2);
  });

  it('drops a model that disappears, and its state', () => {
    const t = new MetricsTracker();
    const both = stats({
      a: [statsVersion(1, 1)],
      b: [statsVersion(1, 1), statsVersion(2, 1)]
    });
    t.update(both, list({ a: {}, b: {} }), 0);
    expect(t.size).toBe(3);
    const snap = t.update(
      stats({ b: [statsVersion(2, 5)] }),
      list({ b: {} }),
      1000
    );
    expect(snap.models.map(m => m.name)).toEqual(['b']);
    expect(snap.models[0].versions.map(v => v.version)).toEqual([2]);
    expect(t.size).toBe(1);
    // when it comes back it starts afresh (no rate against a stale count)
    const back = t.update(both, list({ a: {}, b: {} }), 2000);
    expect(back.models[0].name).toBe('a');
    expect(back.models[0].versions[0].rate).toBeNull();
  });

  it('keeps a model only one of the two answers lists', () => {
    const snap = new MetricsTracker().update(
      stats({ onlyStats: [statsVersion(1, 1)] }),
      list({ onlyModels: {} }),
      0
    );
    expect(snap.models.map(m => m.name)).toEqual(['onlyModels', 'onlyStats']);
    expect(snap.models[0].versions).toEqual([]);
  });

  it('keeps a bounded latency history', () => {
    const t = new MetricsTracker(5);
    const l = list({ m: {} });
    for (let i = 0; i < 12; i++) {
      t.update(stats({ m: [statsVersion(1, i * 10)] }), l, i * 1000);
    }
    const snap = t.update(stats({ m: [statsVersion(1, 120)] }), l, 12_000);
    expect(snap.models[0].versions[0].history).toHaveLength(5);
  });

  it('stays fast with thousands of versions', () => {
    const t = new MetricsTracker();
    const versions = (n: number) =>
      Array.from({ length: 5000 }, (_, i) => statsVersion(i + 1, n + i));
    const l = list({ big: { labels: { stable: 7 } } });
    t.update(stats({ big: versions(0) }), l, 0);
    const start = Date.now();
    const snap = t.update(stats({ big: versions(10) }), l, 2000);
    // a gross guard (the code runs instrumented for coverage here): ~50 ms in a browser
    expect(Date.now() - start).toBeLessThan(3000);
    const model = snap.models[0];
    expect(model.versions).toHaveLength(5000);
    expect(model.versions[0].version).toBe(5000);
    expect(model.rate).toBeCloseTo(5000 * 5);

    const page = pageVersions(model.versions, VERSION_PAGE);
    // the 10 newest, and v7 because it is labelled
    expect(page.shown.map(v => v.version)).toEqual([
      5000, 4999, 4998, 4997, 4996, 4995, 4994, 4993, 4992, 4991, 7
    ]);
    expect(page.hidden).toBe(5000 - 11);
    const more = pageVersions(model.versions, VERSION_PAGE * 3);
    expect(more.shown).toHaveLength(31);
  });
});

describe('intervalQuantile', () => {
  it('finds the bucket of the quantile of the new requests', () => {
    const before = buckets({ 2: 10 });
    const after = buckets({ 2: 10, 5: 3, 8: 1 });
    expect(intervalQuantile(before, after, 0.5)).toBe(Number(BOUNDS[5]));
    expect(intervalQuantile(before, after, 0.99)).toBe(Number(BOUNDS[8]));
    expect(intervalQuantile(null, after, 0.5)).toBe(Number(BOUNDS[2]));
  });

  it('is null without new requests or after a reset', () => {
    const same = buckets({ 2: 10 });
    expect(intervalQuantile(same, same, 0.5)).toBeNull();
    expect(
      intervalQuantile(buckets({ 2: 10 }), buckets({ 2: 4 }), 0.5)
    ).toBeNull();
  });

  it('gives the largest finite bound for the overflow bucket', () => {
    const after = buckets({ 33: 5 });
    expect(intervalQuantile(null, after, 0.5)).toBe(Number(BOUNDS[32]));
  });
});

describe('actions', () => {
  const view = new MetricsTracker().update(
    parseStats(statsAnswer),
    parseModelList(modelsAnswer),
    0
  ).models[1];

  it('builds the requests of the management API', () => {
    expect(actionRequest('half_plus_two', { kind: 'promote' })).toEqual({
      method: 'POST',
      path: 'api/models/half_plus_two:promote',
      body: {}
    });
    expect(actionRequest('m', { kind: 'promote', version: 3 }).body).toEqual({
      version: 3
    });
    expect(
      actionRequest('m', { kind: 'canary', weight: 0.1, version: 2 })
    ).toEqual({
      method: 'POST',
      path: 'api/models/m:canary',
      body: { weight: 0.1, version: 2 }
    });
    expect(actionRequest('m', { kind: 'canary', weight: 0.1 }).body).toEqual({
      weight: 0.1
    });
    expect(actionRequest('m', { kind: 'rollback' }).path).toBe(
      'api/models/m:rollback'
    );
    expect(actionRequest('m', { kind: 'unload', version: 2 }).path).toBe(
      'api/models/m/versions/2:unload'
    );
    expect(actionRequest('m', { kind: 'load', version: 2 }).path).toBe(
      'api/models/m/versions/2:load'
    );
    expect(
      actionRequest('my model', {
        kind: 'setLabel',
        label: 'prod.v1',
        version: 4
      })
    ).toEqual({
      method: 'PUT',
      path: 'api/models/my%20model/labels/prod.v1',
      body: { version: 4 }
    });
    expect(
      actionRequest('m', { kind: 'removeLabel', label: 'canary' })
    ).toEqual({
      method: 'DELETE',
      path: 'api/models/m/labels/canary'
    });
  });

  it('asks before taking traffic away from a version', () => {
    expect(confirmation(view, { kind: 'promote' })!.body).toBe(
      'v2 of half_plus_two becomes stable and takes all unversioned traffic from v1.'
    );
    expect(
      confirmation(view, { kind: 'canary', weight: 0.5, version: 2 })!.body
    ).toBe(
      'v2 takes 50% of the unversioned traffic of half_plus_two away from stable v1.'
    );
    expect(confirmation(view, { kind: 'rollback' })!.body).toMatch(
      /canary v2 stops taking traffic/
    );
    expect(confirmation(view, { kind: 'unload', version: 1 })!.accept).toBe(
      'Unload'
    );
    expect(
      confirmation(view, { kind: 'removeLabel', label: 'canary' })!.body
    ).toMatch(/stops taking traffic/);
    // moving a label takes its requests away from the version it named
    expect(
      confirmation(view, { kind: 'setLabel', label: 'stable', version: 2 })!
        .title
    ).toBe('Move label "stable" of half_plus_two?');
    // no confirmation for what takes nothing away
    expect(confirmation(view, { kind: 'load', version: 1 })).toBeNull();
    expect(
      confirmation(view, { kind: 'setLabel', label: 'new', version: 2 })
    ).toBeNull();
    expect(
      confirmation(view, { kind: 'setLabel', label: 'stable', version: 1 })
    ).toBeNull();
  });

  it('names actions and describes the model after one', () => {
    expect(actionTitle({ kind: 'canary', weight: 0.1, version: 2 })).toBe(
      'Canary v2 at 10%'
    );
    expect(actionTitle({ kind: 'removeLabel', label: 'x' })).toBe(
      'Remove label "x"'
    );
    const desc = parseModelList(modelsAnswer).models[1];
    expect(describeModelState(desc)).toBe(
      'labels canary=v2, stable=v1 · canary v2 at 25% · traffic v2 25%, v1 75%'
    );
  });

  it('reads canary weights and label names', () => {
    expect(parseWeight('0.1')).toEqual({ ok: true, value: 0.1 });
    expect(parseWeight('10%')).toEqual({ ok: true, value: 0.1 });
    expect(parseWeight(' 25 % ')).toEqual({ ok: true, value: 0.25 });
    expect(parseWeight('.5')).toEqual({ ok: true, value: 0.5 });
    expect(parseWeight('1')).toEqual({ ok: true, value: 1 });
    expect(parseWeight('1.5').ok).toBe(false);
    expect(parseWeight('150%').ok).toBe(false);
    expect(parseWeight('-0.1').ok).toBe(false);
    expect(parseWeight('abc').ok).toBe(false);
    expect(parseWeight('').ok).toBe(false);
    expect(validLabel('stable')).toBe(true);
    expect(validLabel('prod-1.2_x')).toBe(true);
    expect(validLabel('')).toBe(false);
    expect(validLabel('a/b')).toBe(false);
    expect(validLabel('a:b')).toBe(false);
    expect(validLabel('x'.repeat(129))).toBe(false);
  });
});

describe('URLs and the curl line', () => {
  it('builds the REST URLs under the base URL', () => {
    expect(modelUrl('http://h:8888/user/me/', 'tfserving', 'demo')).toBe(
      'http://h:8888/user/me/tfserving/v1/models/demo'
    );
    expect(predictUrl('http://h/', '/tfserving/', 'a b')).toBe(
      'http://h/tfserving/v1/models/a%20b:predict'
    );
  });

  it('quotes for the shell', () => {
    expect(shellQuote('http://h/x:predict')).toBe('http://h/x:predict');
    expect(shellQuote('{"a": 1}')).toBe('\'{"a": 1}\'');
    expect(shellQuote("it's")).toBe("'it'\\''s'");
  });

  it('builds a body from the real signature, and a curl line with a token placeholder', () => {
    const example = exampleBody(metadataAnswer);
    expect(example.body).toBe('{"instances":[[0]]}');
    expect(example.note).toMatch(/input "x"/);
    const line = curlLine(
      'http://h/tfserving/v1/models/half_plus_two:predict',
      example.body
    );
    expect(line).toBe(
      'curl -H "Authorization: token $JUPYTER_TOKEN" -d \'{"instances":[[0]]}\' http://h/tfserving/v1/models/half_plus_two:predict'
    );
  });

  it('handles other signatures', () => {
    const meta = (inputs: Record<string, unknown>) => ({
      metadata: {
        signature_def: { signature_def: { serving_default: { inputs } } }
      }
    });
    const shape = (...dims: number[]) => ({
      dim: dims.map(d => ({ size: String(d), name: '' })),
      unknown_rank: false
    });
    expect(
      exampleBody(
        meta({
          a: { dtype: 'DT_INT64', tensor_shape: shape(-1, 2) },
          b_bytes: { dtype: 'DT_STRING', tensor_shape: shape(-1) },
          c: { dtype: 'DT_BOOL', tensor_shape: shape(-1, -1) }
        })
      ).body
    ).toBe('{"instances":[{"a":[0,0],"b_bytes":{"b64":""},"c":[false]}]}');
    const image = exampleBody(
      meta({ img: { dtype: 'DT_FLOAT', tensor_shape: shape(-1, 224, 224, 3) } })
    );
    expect(image.body).toBeNull();
    expect(image.note).toMatch(/224×224×3/);
    expect(curlLine('http://h/p', image.body)).toContain('-d @request.json');
    expect(224 * 224 * 3).toBeGreaterThan(MAX_EXAMPLE_VALUES);
    const none = exampleBody({ error: 'nope' });
    expect(none.body).toBe('{"instances": [[1.0]]}');
    expect(none.note).toMatch(/did not describe/);
  });
});

describe('formatting', () => {
  it('formats counts', () => {
    expect(formatCount(null)).toBe('–');
    expect(formatCount(0)).toBe('0');
    expect(formatCount(987)).toBe('987');
    expect(formatCount(12345)).toBe('12,345');
    expect(formatCount(1_234_567)).toBe('1.2M');
    expect(formatCount(3_000_000_000)).toBe('3G');
  });

  it('formats rates', () => {
    expect(formatRate(null)).toBe('–');
    expect(formatRate(0)).toBe('0');
    expect(formatRate(0.001)).toBe('<0.01');
    expect(formatRate(0.25)).toBe('0.25');
    expect(formatRate(3.44)).toBe('3.4');
    expect(formatRate(42.4)).toBe('42');
    expect(formatRate(1234)).toBe('1.2k');
  });

  it('formats latencies in microseconds', () => {
    expect(formatLatency(null)).toBe('–');
    expect(formatLatency(850.4)).toBe('850 µs');
    expect(formatLatency(1983.59)).toBe('2 ms');
    expect(formatLatency(1101.99)).toBe('1.1 ms');
    expect(formatLatency(37481.3)).toBe('37 ms');
    expect(formatLatency(1_500_000)).toBe('1.50 s');
  });

  it('formats shares', () => {
    expect(formatShare(null)).toBe('–');
    expect(formatShare(0)).toBe('0%');
    expect(formatShare(0.0004)).toBe('<0.1%');
    expect(formatShare(0.005)).toBe('0.5%');
    expect(formatShare(0.055)).toBe('5.5%');
    expect(formatShare(0.25)).toBe('25%');
    expect(formatShare(1)).toBe('100%');
  });

  it('says the summary', () => {
    expect(summaryText(null)).toBe('TF Serving');
    expect(
      summaryText({ time: 0, models: [], grpcTarget: null, totalRate: 0 })
    ).toBe('0 models · 0 req/s');
  });
});

describe('sparklinePoints', () => {
  it('scales the values into the box, the newest at the right', () => {
    expect(sparklinePoints([0, 10], 10, 12)).toEqual(['0,11 10,1']);
    expect(sparklinePoints([5], 10, 12, 3)).toEqual(['10,1 10,1']);
  });

  it('breaks the line at gaps', () => {
    expect(sparklinePoints([1, null, 1, 1], 30, 12)).toEqual([
      '0,1 0,1',
      '20,1 30,1'
    ]);
    expect(sparklinePoints([null, null], 10, 10)).toEqual([]);
    expect(sparklinePoints([], 10, 10)).toEqual([]);
  });

  it('draws zeros on the baseline', () => {
    expect(sparklinePoints([0, 0], 10, 10)).toEqual(['0,9 10,9']);
  });
});

describe('bulk jobs', () => {
  const jobs = (): IJob[] => parseJobList(copy(jobsAnswer)).jobs;
  const byId = (id: string): IJob => jobs().find(j => j.id === id)!;

  it('parses the jobs answer in the server order', () => {
    const list = jobs();
    expect(list.map(j => [j.id, j.state])).toEqual([
      ['scores', 'completed'],
      ['csv-import', 'failed'],
      ['stopped', 'cancelled'],
      ['ec88cad2270a', 'running']
    ]);
    const running = list[3];
    expect(running).toMatchObject({
      model: 'half_plus_two',
      version: 2,
      rows_done: 7000,
      rows_total: 2000000,
      shards_done: 7,
      shards_total: 2000,
      error: null
    });
    expect(running.eta_seconds).toBeCloseTo(670.52);
    expect(list[1].error).toMatch(
      /bad\.csv rows 500-501: column x does not fit/
    );
    expect(list[0].eta_seconds).toBeNull();
  });

  it('skips entries that are not jobs and refuses an answer that is no list', () => {
    const doc = copy(jobsAnswer) as any;
    doc.jobs.push({ state: 'running' }, 'nope', null);
    expect(parseJobList(doc).jobs).toHaveLength(4);
    expect(() => parseJobList({ models: [] })).toThrow(ApiError);
    expect(() => parseJobList([])).toThrow(/no "jobs" list/);
    expect(() => parseJob({ id: 'x' })).toThrow(ApiError);
  });

  it('reads a sparse job with defaults', () => {
    expect(
      parseJob({
        id: 'j',
        state: 'pending',
        model: 'm',
        version: '3',
        rows_total: 'many',
        rows_per_second: 'fast',
        error: ''
      })
    ).toEqual({
      id: 'j',
      state: 'pending',
      model: 'm',
      version: 3,
      signature: 'serving_default',
      method: 'predict',
      inputs: [],
      output: '',
      output_format: '',
      rows_total: 0,
      rows_done: 0,
      shards_total: 0,
      shards_done: 0,
      rows_per_second: null,
      eta_seconds: null,
      created_at: null,
      error: null
    });
  });

  it('sorts newest first, the server order reversed for equal times', () => {
    expect(sortJobs(jobs()).map(j => j.id)).toEqual([
      'ec88cad2270a',
      'stopped',
      'csv-import',
      'scores'
    ]);
    const same = jobs().map(j => ({ ...j, created_at: 5 }));
    expect(sortJobs(same).map(j => j.id)).toEqual([
      'ec88cad2270a',
      'stopped',
      'csv-import',
      'scores'
    ]);
    const undated = [{ ...same[0], created_at: null }, same[1]];
    expect(sortJobs(undated).map(j => j.id)).toEqual(['csv-import', 'scores']);
  });

  it('tells the active jobs', () => {
    expect(
      jobs()
        .filter(isJobActive)
        .map(j => j.id)
    ).toEqual(['ec88cad2270a']);
    expect(isJobActive({ ...byId('scores'), state: 'pending' })).toBe(true);
  });

  it('pages the ended jobs, never an active one', () => {
    const template = byId('scores');
    const many = Array.from({ length: 25 }, (_, i) => ({
      ...template,
      id: `j${i}`,
      state: i % 5 === 0 ? 'running' : 'completed'
    }));
    const { shown, hidden } = pageJobs(many, JOB_PAGE);
    expect(shown.filter(isJobActive)).toHaveLength(5);
    expect(shown.filter(j => !isJobActive(j))).toHaveLength(JOB_PAGE);
    expect(hidden).toBe(10);
    // the order is kept: the hidden ones are the last (oldest) ended ones
    expect(shown[shown.length - 1].id).toBe('j20');
    expect(pageJobs(many, 100).hidden).toBe(0);
  });

  it('summarizes the states', () => {
    expect(jobsSummary(jobs())).toBe(
      '1 running · 1 failed · 1 cancelled · 1 completed'
    );
    expect(jobsSummary([])).toBe('none');
    const odd = [{ ...byId('scores'), state: 'paused' }, byId('scores')];
    expect(jobsSummary(odd)).toBe('1 completed · 1 paused');
  });

  it('computes the progress', () => {
    expect(jobProgress(byId('ec88cad2270a'))).toEqual({
      fraction: 0.0035,
      percent: 0,
      rows: '7,000 / 2M rows',
      shards: '7 / 2,000 shards'
    });
    expect(jobProgress(byId('scores'))).toMatchObject({
      fraction: 1,
      percent: 100,
      rows: '20,000 / 20,000 rows',
      shards: '10 / 10 shards'
    });
    // 500 of 501 rows: 99%, never 100% before the end
    expect(jobProgress(byId('csv-import')).percent).toBe(99);
    const empty = { ...byId('scores'), rows_total: 0, rows_done: 0 };
    expect(jobProgress({ ...empty, shards_total: 0 }).fraction).toBe(1);
    expect(
      jobProgress({ ...empty, shards_done: 1, shards_total: 4 })
    ).toMatchObject({
      fraction: 0.25,
      shards: '1 / 4 shards'
    });
    const nothing = {
      ...empty,
      state: 'pending',
      shards_total: 0,
      shards_done: 0
    };
    expect(jobProgress(nothing)).toMatchObject({ fraction: null, percent: 0 });
    expect(
      jobProgress({ ...byId('scores'), shards_total: 1, rows_done: 30000 })
    ).toMatchObject({ fraction: 1, shards: '10 / 1 shard' });
  });

  it('formats percentages, row rates and durations', () => {
    expect(formatPercent(null)).toBe('–');
    expect(formatPercent(0)).toBe('0%');
    expect(formatPercent(0.0035)).toBe('<1%');
    expect(formatPercent(0.426)).toBe('42%');
    expect(formatPercent(0.999)).toBe('99%');
    expect(formatPercent(1)).toBe('100%');
    expect(formatRowRate(null)).toBe('– rows/s');
    expect(formatRowRate(2972.3)).toBe('3k rows/s');
    expect(formatRowRate(51167.86)).toBe('51.2k rows/s');
    expect(formatRowRate(850)).toBe('850 rows/s');
    expect(formatDuration(null)).toBe('–');
    expect(formatDuration(-1)).toBe('–');
    expect(formatDuration(NaN)).toBe('–');
    expect(formatDuration(0.2)).toBe('<1 s');
    expect(formatDuration(0.6)).toBe('1 s');
    expect(formatDuration(45.4)).toBe('45 s');
    expect(formatDuration(59.6)).toBe('1 min');
    expect(formatDuration(200)).toBe('3 min 20 s');
    expect(formatDuration(670.52)).toBe('11 min');
    expect(formatDuration(3599)).toBe('1 h');
    expect(formatDuration(7500)).toBe('2 h 5 min');
    expect(formatDuration(3 * 86400 + 4 * 3600 + 100)).toBe('3 d 4 h');
    expect(formatDuration(2 * 86400)).toBe('2 d');
  });

  it('shortens paths to their last parts', () => {
    expect(shortPath('/tmp/jtfs/work/out/scores')).toBe('…/out/scores');
    expect(shortPath('/tmp/jtfs/work/out/scores/')).toBe('…/out/scores');
    expect(shortPath('out/scores')).toBe('out/scores');
    expect(shortPath('C:\\data\\out\\scores', 1)).toBe('…/scores');
    expect(jobTarget(byId('ec88cad2270a'))).toBe('half_plus_two v2');
    expect(jobTarget({ ...byId('scores'), version: null })).toBe(
      'half_plus_two'
    );
  });

  it('offers the actions the state allows', () => {
    const actions = (state: string) => jobActions({ ...byId('scores'), state });
    expect(actions('running')).toEqual(['cancel']);
    expect(actions('pending')).toEqual(['cancel']);
    expect(actions('failed')).toEqual(['resume', 'remove']);
    expect(actions('cancelled')).toEqual(['resume', 'remove']);
    expect(actions('interrupted')).toEqual(['resume', 'remove']);
    expect(actions('completed')).toEqual(['remove']);
    expect(actions('paused')).toEqual([]);
  });

  it('builds the requests and titles', () => {
    expect(jobActionRequest('slow', 'cancel')).toEqual({
      method: 'DELETE',
      path: 'api/jobs/slow'
    });
    expect(jobActionRequest('slow', 'remove')).toEqual({
      method: 'DELETE',
      path: 'api/jobs/slow'
    });
    expect(jobActionRequest('a b', 'resume')).toEqual({
      method: 'POST',
      path: 'api/jobs/a%20b:resume',
      body: {}
    });
    expect(jobActionTitle('slow', 'cancel')).toBe('Cancel job slow');
    expect(jobActionTitle('slow', 'resume')).toBe('Resume job slow');
    expect(jobActionTitle('slow', 'remove')).toBe('Remove job slow');
  });

  it('asks before stopping work or losing a resumable job', () => {
    expect(jobConfirmation(byId('ec88cad2270a'), 'cancel')).toEqual({
      title: 'Cancel job ec88cad2270a?',
      body:
        'The job on half_plus_two v2 stops after its current call, at <1% (7 / 2,000 shards). ' +
        'Its complete shards stay in /tmp/jtfs/work/out/big; Resume runs the rest.',
      accept: 'Cancel job',
      dismiss: 'Keep running'
    });
    expect(jobConfirmation(byId('stopped'), 'remove')).toEqual({
      title: 'Remove job stopped?',
      body:
        'The server forgets the cancelled job on half_plus_two v1: it leaves the list and can no longer be resumed from here. ' +
        'Its results stay in /tmp/jtfs/work/out/stopped.',
      accept: 'Remove job'
    });
    expect(jobConfirmation(byId('scores'), 'remove')).toBeNull();
    expect(jobConfirmation(byId('stopped'), 'resume')).toBeNull();
  });

  it("describes the server's answers", () => {
    const running = byId('ec88cad2270a');
    expect(describeJobAnswer('cancel', running)).toBe(
      'Cancel job ec88cad2270a: asked. It stops after its current call; its complete shards stay.'
    );
    expect(describeJobAnswer('cancel', byId('stopped'))).toBe(
      'Cancel job stopped: done, at <1%.'
    );
    // the job ended before the DELETE came: the server forgot it instead
    expect(describeJobAnswer('cancel', byId('scores'))).toBe(
      'Cancel job scores: it had already ended (completed), so the server removed it from the list. Its results stay in /tmp/jtfs/work/out/scores.'
    );
    expect(describeJobAnswer('resume', { ...running, id: 'stopped' })).toBe(
      'Resume job stopped: done, running; it skips the shards already written.'
    );
    expect(describeJobAnswer('remove', byId('scores'))).toBe(
      'Remove job scores: done. Its results stay in /tmp/jtfs/work/out/scores.'
    );
  });
});

describe('fixtures', () => {
  it('are real answers', () => {
    // guard against the fixtures being edited into something the server never says
    const s = copy(statsAnswer) as any;
    expect(Object.keys(s).sort()).toEqual(['grpc_target', 'models']);
    expect(Object.keys(s.models[1].versions[0]).sort()).toEqual(
      [
        'error_code',
        'error_message',
        'in_flight',
        'latency_us',
        'request_count',
        'error_count',
        'state',
        'version'
      ].sort()
    );
    const j = copy(jobsAnswer) as any;
    expect(Object.keys(j)).toEqual(['jobs']);
    expect(Object.keys(j.jobs[0]).sort()).toEqual(
      [
        'created_at',
        'error',
        'eta_seconds',
        'id',
        'inputs',
        'keys',
        'method',
        'model',
        'output',
        'output_format',
        'rows_done',
        'rows_per_second',
        'rows_total',
        'shards_done',
        'shards_total',
        'signature',
        'state',
        'version'
      ].sort()
    );
  });
});
