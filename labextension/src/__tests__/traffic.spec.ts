/**
 * The traffic tools' model (traffic.ts, and what model.ts's stats parsing and tracker take from
 * it): warmup and the last minute's latency per version, request logging, the logged requests
 * in a few characters, the shadow report, their actions, questions and answers. Fixtures: a
 * stats answer of half_plus_two v1 (stable) and v2 (a shadow at 100%, logging at 50%), its
 * logged requests, its shadow report and logging status, shaped as the issue-14 contract
 * (`GET P/api/stats`, `GET P/api/models/{m}/requests`, `.../shadow`, `:logging`) has them and
 * as a live server answered them (with cases a quick capture lacks: a mismatch, class scores,
 * drops, warmup).
 */

import {
  IModelView,
  MetricsTracker,
  parseModelList,
  parseStats
} from '../model';
import {
  compactTensors,
  compactValue,
  describeCall,
  describeLogging,
  describeShadow,
  describeTrafficAnswer,
  describeWarmup,
  DETAILED,
  formatAgreement,
  formatBytes,
  formatDiff,
  formatNumber,
  formatSeconds,
  formatWindow,
  isLogging,
  parseLoggingStatus,
  parseRequestList,
  parseShadowReport,
  parseTrafficAnswer,
  requestsRequest,
  shadowCandidates,
  shadowOutputRows,
  shadowReportRequest,
  trafficConfirmation,
  trafficRequest,
  trafficTitle
} from '../traffic';

import loggingAnswer from './fixtures/logging.json';
import modelsAnswer from './fixtures/models.json';
import requestsAnswer from './fixtures/requests.json';
import shadowAnswer from './fixtures/shadow.json';
import statsAnswer from './fixtures/stats.json';
import trafficStats from './fixtures/stats-traffic.json';

function copy<T>(value: T): T {
  return JSON.parse(JSON.stringify(value));
}

/** half_plus_two as the panel sees it after one poll of `stats`. */
function view(stats: unknown = trafficStats): IModelView {
  const snapshot = new MetricsTracker().update(
    parseStats(stats),
    parseModelList(modelsAnswer),
    0
  );
  return snapshot.models.find(m => m.name === 'half_plus_two')!;
}

describe('the stats of issue 14', () => {
  it('reads the warmup and the last minute per version', () => {
    const s = parseStats(trafficStats);
    const [v2, v1] = s.models[1].versions;
    expect(v2.warmup).toEqual({ requests: 2, seconds: 0.0431 });
    expect(v1.warmup).toBeNull();
    expect(v2.recent_latency_us).toEqual({
      window_seconds: 60,
      count: 6,
      p50: 1412.3,
      p90: 2201.0,
      p99: 3310.4
    });
    expect(v2.latency_us.p90).toBe(8120.5);
    const hpt = view();
    expect(hpt.versions[0].recent!.p99).toBe(3310.4);
    expect(hpt.versions[0].warmup!.requests).toBe(2);
    expect(hpt.versions[1].recent!.p50).toBe(1650.8);
  });

  it('reads the logging status and the shadow per model', () => {
    const hpt = view();
    expect(hpt.logging).toEqual({
      sampling_rate: 0.5,
      filename_prefix: '/tmp/tfs/models/half_plus_two/logs/requests',
      logged: 1234,
      dropped: 3,
      bytes: 1288490,
      files: 2,
      error: null
    });
    expect(hpt.shadow!.candidate_version).toBe(2);
    expect(hpt.shadow!.complete).toBe(true);
    const broken = parseStats(trafficStats).models[0];
    expect(broken.logging).toBeNull();
    expect(broken.shadow).toBeNull();
  });

  it('reads a server without them (no traffic tools, nothing else lost)', () => {
    const hpt = view(statsAnswer);
    expect(hpt.logging).toBeNull();
    expect(hpt.shadow).toBeNull();
    expect(hpt.versions[0].recent).toBeNull();
    expect(hpt.versions[0].warmup).toBeNull();
    expect(hpt.versions[0].p50).not.toBeNull();
  });

  it('skips a logging or shadow entry it cannot read, keeping the model', () => {
    const odd = copy(trafficStats) as any;
    odd.models[1].shadow = { pairs: 3 };
    odd.models[1].logging = 'on';
    const hpt = view(odd);
    expect(hpt.shadow).toBeNull();
    expect(hpt.logging).toBeNull();
    expect(hpt.versions).toHaveLength(2);
  });
});

describe('warmup and latency', () => {
  it('says what the warmup ran', () => {
    expect(describeWarmup(null)).toBeNull();
    expect(describeWarmup({ requests: 2, seconds: 0.0431 })).toBe(
      'warmup: 2 requests in 0.043 s'
    );
    expect(describeWarmup({ requests: 1, seconds: 12.4 })).toBe(
      'warmup: 1 request in 12 s'
    );
    expect(formatSeconds(null)).toBe('–');
    expect(formatSeconds(0.35)).toBe('0.35 s');
    expect(formatWindow(60)).toBe('1 min');
    expect(formatWindow(30)).toBe('30 s');
  });
});

describe('request logging', () => {
  it('parses the status, and refuses what is not one', () => {
    const l = parseLoggingStatus(loggingAnswer);
    expect(l.sampling_rate).toBe(0.5);
    expect(isLogging(l)).toBe(true);
    expect(isLogging({ ...l, sampling_rate: 0 })).toBe(false);
    expect(isLogging(null)).toBe(false);
    expect(() => parseLoggingStatus([])).toThrow(
      'a logging status is not an object'
    );
    expect(parseLoggingStatus({ error: '' }).error).toBeNull();
  });

  it('describes it in one line', () => {
    const l = parseLoggingStatus(loggingAnswer);
    expect(describeLogging(l)).toBe(
      '50% of requests · 1,234 logged · 3 dropped · 2 files, 1.2 MB'
    );
    expect(
      describeLogging({ ...l, sampling_rate: 0, dropped: 0, files: 1 })
    ).toBe('off · 1,234 logged · 1 file, 1.2 MB');
    expect(describeLogging(null)).toBe('off');
  });

  it('formats sizes', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(900)).toBe('900 B');
    expect(formatBytes(12 * 1024)).toBe('12 KB');
    expect(formatBytes(1288490)).toBe('1.2 MB');
    expect(formatBytes(3.4 * 1024 ** 3)).toBe('3.4 GB');
    expect(formatBytes(-1)).toBe('–');
  });

  it('parses the recent requests, newest first as the server lists them', () => {
    const list = parseRequestList(requestsAnswer);
    expect(list.model).toBe('half_plus_two');
    expect(list.requests.map(r => r.version)).toEqual([1, 2, 1, 1]);
    expect(list.requests[0].inputs).toEqual({ x: [[1.0], [3.0]] });
    expect(describeCall(list.requests[0])).toBe('predict');
    expect(describeCall(list.requests[2])).toBe('regress (regress_x_to_y)');
    expect(() => parseRequestList({ models: [] })).toThrow(
      'the requests answer has no "requests" list'
    );
    expect(
      parseRequestList({ model: 'm', requests: [3, { time: 1 }] }).requests
    ).toEqual([
      {
        time: 1,
        version: null,
        method: 'predict',
        signature_name: 'serving_default',
        inputs: {},
        outputs: {}
      }
    ]);
    expect(requestsRequest('a b')).toEqual({
      method: 'GET',
      path: 'api/models/a%20b/requests?n=10'
    });
  });
});

describe('compact tensors', () => {
  it('writes a value in a few characters', () => {
    expect(compactValue(2.5)).toBe('2.5');
    expect(compactValue(0.123456789)).toBe('0.1235');
    expect(compactValue(12345678)).toBe('12350000');
    expect(formatNumber(1e-9)).toBe('1e-9');
    expect(compactValue([[1, 2, 3, 4, 5]])).toBe('[[1, 2, 3, …+2]]');
    expect(compactValue('a-rather-long-request-key')).toBe(
      '"a-rather-long-re…"'
    );
    expect(compactValue({ b64: 'aGVsbG8gd29ybGQ=' })).toBe('<11 B>');
    expect(compactValue({ x: [3], y: true, z: null, w: 'a' })).toBe(
      '{x: [3], y: true, z: null, …+1}'
    );
  });

  it('writes named tensors on one line, cut to fit', () => {
    const [first, long, regress, bytes] =
      parseRequestList(requestsAnswer).requests;
    expect(compactTensors(first.inputs)).toBe('x=[[1], [3]]');
    expect(compactTensors(first.outputs)).toBe('y=[[2.5], [3.5]]');
    expect(compactTensors(long.inputs)).toBe('x=[[0], [1], [2], …+61]');
    expect(compactTensors(regress.inputs)).toBe('examples=[{x: [3]}]');
    expect(compactTensors(bytes.inputs)).toBe(
      'image_bytes=[<11 B>] key=["a-rather-long-re…"]'
    );
    const cut = compactTensors(long.outputs, 12);
    expect(cut).toBe('y=[[2], [2.…');
    expect(cut).toHaveLength(12);
    expect(compactTensors(long.inputs, 2000, DETAILED)).toContain('…+52');
    expect(compactTensors({})).toBe('–');
  });
});

describe('the shadow report', () => {
  it('parses the whole report', () => {
    const r = parseShadowReport(shadowAnswer);
    expect(r.active).toBe(true);
    expect(r.fraction).toBe(1);
    expect(r.agreement).toBe(0.95);
    expect(r.outputs.y.max_abs_diff).toBe(0.5);
    expect(r.outputs.scores.abs_diff_quantiles.p90).toBe(1.1e-7);
    expect(r.latency_us.shadow).toEqual({
      count: 19,
      p50: 1630.2,
      p90: 2500.7,
      p99: 4410.0
    });
    expect(r.worst[0].request).toEqual({ x: [[3.0]] });
    expect(r.worst[1].mismatch).toBe('shape (2, 3) vs (2, 4)');
    expect(r.complete).toBe(true);
    expect(() => parseShadowReport({ pairs: 1 })).toThrow(
      'a shadow report has no "candidate_version"'
    );
    const summary = parseShadowReport({ candidate_version: 3, pairs: 4 });
    expect(summary.complete).toBe(false);
    expect(summary.outputs).toEqual({});
    expect(summary.latency_us.serving.count).toBe(0);
    expect(shadowReportRequest('m')).toEqual({
      method: 'GET',
      path: 'api/models/m/shadow'
    });
  });

  it('formats agreement and differences without rounding them away', () => {
    expect(formatAgreement(1)).toBe('100%');
    expect(formatAgreement(0.9996)).toBe('99.9%');
    expect(formatAgreement(0.29)).toBe('29%');
    expect(formatAgreement(0.95)).toBe('95%');
    expect(formatAgreement(null)).toBe('–');
    expect(formatDiff(0)).toBe('0');
    expect(formatDiff(0.5)).toBe('0.5');
    expect(formatDiff(0.0123456)).toBe('0.0123');
    expect(formatDiff(1.25e-7)).toBe('1.25e-7');
    expect(formatDiff(3.14159e-9)).toBe('3.14e-9');
    expect(formatDiff(123456)).toBe('1.23e5');
    expect(formatDiff(null)).toBe('–');
  });

  it('lists the outputs by name, with their figures', () => {
    const rows = shadowOutputRows(parseShadowReport(shadowAnswer));
    expect(rows).toEqual([
      {
        name: 'scores',
        pairs: '20',
        mismatches: 1,
        agreement: '95%',
        max: '1.25e-7',
        mean: '3.1e-8',
        argmax: '95%',
        p50: '2.9e-8',
        p90: '1.1e-7',
        p99: '1.25e-7'
      },
      {
        name: 'y',
        pairs: '20',
        mismatches: 0,
        agreement: '95%',
        max: '0.5',
        mean: '0.025',
        argmax: '–',
        p50: '0',
        p90: '0',
        p99: '0.5'
      }
    ]);
  });

  it('describes an active and an ended shadow', () => {
    const r = parseShadowReport(shadowAnswer);
    expect(describeShadow(r)).toMatch(
      /^v2 · 100% of the unversioned requests · since \S/
    );
    expect(
      describeShadow({
        ...r,
        active: false,
        ended_at: null,
        end_reason: 'promote'
      })
    ).toBe('v2 · ended (promote)');
  });

  it('offers the AVAILABLE versions that do not serve the unversioned requests', () => {
    const hpt = view();
    expect(shadowCandidates(hpt)).toEqual([2]);
    // no stable label: the version with the largest share serves
    const unlabelled: IModelView = {
      ...hpt,
      labels: {},
      versions: hpt.versions.map(v => ({
        ...v,
        share: v.version === 2 ? 1 : 0
      }))
    };
    expect(shadowCandidates(unlabelled)).toEqual([1]);
    const loading: IModelView = {
      ...hpt,
      versions: hpt.versions.map(v => ({ ...v, state: 'LOADING' }))
    };
    expect(shadowCandidates(loading)).toEqual([]);
  });
});

describe('traffic actions', () => {
  it('sends the contract requests', () => {
    expect(trafficRequest('m', { kind: 'logging', rate: 0.25 })).toEqual({
      method: 'POST',
      path: 'api/models/m:logging',
      body: { sampling_rate: 0.25 }
    });
    expect(
      trafficRequest('m', { kind: 'shadow', version: 2, fraction: 0.5 })
    ).toEqual({
      method: 'POST',
      path: 'api/models/m:shadow',
      body: { version: 2, fraction: 0.5 }
    });
    expect(trafficRequest('m', { kind: 'endShadow' })).toEqual({
      method: 'POST',
      path: 'api/models/m:shadow',
      body: { fraction: 0 }
    });
  });

  it('names them', () => {
    expect(trafficTitle({ kind: 'logging', rate: 0.1 })).toBe(
      'Log 10% of requests'
    );
    expect(trafficTitle({ kind: 'logging', rate: 0 })).toBe('Logging off');
    expect(trafficTitle({ kind: 'shadow', version: 2, fraction: 1 })).toBe(
      'Shadow v2 at 100%'
    );
    expect(trafficTitle({ kind: 'endShadow' })).toBe('End the shadow');
  });

  it('asks before logging starts, a shadow starts or moves, or one ends', () => {
    const hpt = view();
    const off: IModelView = { ...hpt, logging: null, shadow: null };
    const start = trafficConfirmation(off, { kind: 'logging', rate: 0.1 })!;
    expect(start.title).toBe('Log the requests of half_plus_two?');
    expect(start.body).toMatch(/writes 10% of the requests to half_plus_two/);
    // already on: a new rate, or off, asks nothing
    expect(trafficConfirmation(hpt, { kind: 'logging', rate: 0.1 })).toBeNull();
    expect(trafficConfirmation(off, { kind: 'logging', rate: 0 })).toBeNull();
    const shadow = trafficConfirmation(off, {
      kind: 'shadow',
      version: 2,
      fraction: 0.5
    })!;
    expect(shadow.title).toBe('Shadow v2 of half_plus_two?');
    expect(shadow.body).toBe(
      "v2 gets a copy of 50% of the unversioned requests to half_plus_two, after stable v1 has answered: the clients' answers do not change, the server does more work."
    );
    expect(shadow.accept).toBe('Start shadow');
    const moved = trafficConfirmation(hpt, {
      kind: 'shadow',
      version: 3,
      fraction: 1
    })!;
    expect(moved.body).toMatch(/It replaces the shadow of v2\.$/);
    const end = trafficConfirmation(hpt, { kind: 'endShadow' })!;
    expect(end).toEqual({
      title: 'End the shadow of half_plus_two?',
      body: 'v2 stops getting copies of the traffic; its report (20 pairs) stays.',
      accept: 'End shadow',
      dismiss: 'Keep shadowing'
    });
  });

  it('reads and describes the answers', () => {
    const logging = parseTrafficAnswer(
      { kind: 'logging', rate: 0.5 },
      loggingAnswer
    );
    expect(logging.kind).toBe('logging');
    expect(describeTrafficAnswer(logging)).toBe(
      'logging 50% of requests · 1,234 logged · 3 dropped · 2 files, 1.2 MB'
    );
    expect(
      describeTrafficAnswer({
        kind: 'logging',
        logging: {
          ...parseLoggingStatus(loggingAnswer),
          error: 'cannot write /x'
        }
      })
    ).toMatch(/; error: cannot write \/x$/);
    const started = parseTrafficAnswer({ kind: 'endShadow' }, shadowAnswer);
    expect(describeTrafficAnswer(started)).toBe(
      'v2 gets 100% of the unversioned requests as a shadow.'
    );
    const ended = parseTrafficAnswer(
      { kind: 'endShadow' },
      { ...shadowAnswer, active: false }
    );
    expect(describeTrafficAnswer(ended)).toBe(
      'the shadow of v2 ended after 20 pairs, agreement 95%.'
    );
    expect(() =>
      parseTrafficAnswer({ kind: 'logging', rate: 1 }, null)
    ).toThrow();
  });
});
