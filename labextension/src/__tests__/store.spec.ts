/**
 * The panel's live state (store.ts) over a fake server, and the client (client.ts) over a fake
 * fetch: polls, rates, a server that goes away, a 403, a refused action, the curl example;
 * the bulk jobs' poll (its pace, a server without jobs) and their actions; the traffic tools
 * (logging and shadow actions, the recent requests and the full shadow report read only for a
 * watched model while the panel is shown).
 */

import { ServerConnection } from '@jupyterlab/services';

import { TFServingClient } from '../client';
import {
  ApiError,
  IJob,
  IJobList,
  IStatsResponse,
  parseJobList,
  parseModelDescription,
  parseModelList,
  parseStats
} from '../model';
import { TFServingModel } from '../store';
import { parseRequestList, parseShadowReport } from '../traffic';

import { FakeApi } from './fakes';
import jobsAnswer from './fixtures/jobs.json';
import loggingAnswer from './fixtures/logging.json';
import modelsAnswer from './fixtures/models.json';
import requestsAnswer from './fixtures/requests.json';
import shadowAnswer from './fixtures/shadow.json';
import statsAnswer from './fixtures/stats.json';
import trafficStats from './fixtures/stats-traffic.json';

/** The fixture's jobs, with `change` applied to each. */
function jobList(change: (job: IJob) => Partial<IJob> = () => ({})): IJobList {
  return {
    jobs: parseJobList(jobsAnswer).jobs.map(j => ({ ...j, ...change(j) }))
  };
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

function withCounts(requests: number): IStatsResponse {
  const s = parseStats(statsAnswer);
  for (const v of s.models[1].versions) {
    v.request_count += requests;
    const last = v.latency_us.buckets.length - 1;
    v.latency_us.buckets[last][1] += requests;
  }
  return s;
}

describe('TFServingModel', () => {
  let api: FakeApi;
  let model: TFServingModel;
  let now: number;

  beforeEach(() => {
    api = new FakeApi();
    now = 0;
    model = new TFServingModel({ api, now: () => now });
  });

  afterEach(() => {
    model.dispose();
  });

  it('polls both answers into a snapshot', async () => {
    let changes = 0;
    model.changed.connect(() => changes++);
    expect(model.connection).toBe('connecting');
    await model.update();
    expect(changes).toBe(1);
    expect(model.connection).toBe('ok');
    expect(model.connectionMessage).toBe('');
    expect(model.snapshot!.models.map(m => m.name)).toEqual([
      'broken',
      'half_plus_two'
    ]);
    now = 2000;
    api.statsAnswer = withCounts(10);
    await model.update();
    expect(model.snapshot!.models[1].rate).toBeCloseTo(10);
    expect(model.snapshot!.totalRate).toBeCloseTo(10);
  });

  it('says the server is unreachable, keeps the last state and rejects (backoff)', async () => {
    await model.update();
    api.statsAnswer = new ApiError('network', 0, 'Failed to fetch');
    await expect(model.update()).rejects.toBeInstanceOf(ApiError);
    expect(model.connection).toBe('unreachable');
    expect(model.connectionMessage).toBe('server unreachable, retrying');
    expect(model.snapshot).not.toBeNull();
    api.statsAnswer = parseStats(statsAnswer);
    await model.update();
    expect(model.connection).toBe('ok');
  });

  it('says when the user is not logged in', async () => {
    api.modelsAnswer = new ApiError('forbidden', 403, 'Forbidden');
    await expect(model.update()).rejects.toBeInstanceOf(ApiError);
    expect(model.connection).toBe('forbidden');
    expect(model.connectionMessage).toBe('not authorized / logged out');
    expect(model.snapshot).toBeNull();
  });

  it('drops a model that disappears, with its answers', async () => {
    await model.update();
    await model.run('broken', { kind: 'rollback' });
    expect(model.result('broken')).toBeDefined();
    const s = parseStats(statsAnswer);
    s.models = s.models.filter(m => m.name !== 'broken');
    const l = parseModelList(modelsAnswer);
    l.models = l.models.filter(m => m.name !== 'broken');
    api.statsAnswer = s;
    api.modelsAnswer = l;
    await model.update();
    expect(model.snapshot!.models.map(m => m.name)).toEqual(['half_plus_two']);
    expect(model.result('broken')).toBeUndefined();
  });

  it('runs an action and shows the answer', async () => {
    await model.update();
    const pending = model.run('half_plus_two', { kind: 'promote' });
    expect(model.isBusy('half_plus_two')).toBe(true);
    expect(model.result('half_plus_two')!.kind).toBe('pending');
    const result = await pending;
    expect(result.kind).toBe('ok');
    expect(result.text).toMatch(/^Promote the canary: done\. labels canary=v2/);
    expect(model.isBusy('half_plus_two')).toBe(false);
    expect(api.acts).toEqual([['half_plus_two', { kind: 'promote' }]]);
  });

  it("shows the server's message when it refuses an action", async () => {
    api.actAnswer = new ApiError(
      'http',
      400,
      'Version 2 of model half_plus_two carries the label(s) canary; move or remove them first'
    );
    const result = await model.run('half_plus_two', {
      kind: 'unload',
      version: 2
    });
    expect(result).toEqual({
      kind: 'error',
      text: 'Unload v2 refused: Version 2 of model half_plus_two carries the label(s) canary; move or remove them first (HTTP 400)'
    });
    expect(model.result('half_plus_two')).toEqual(result);
    api.actAnswer = new ApiError('forbidden', 403, 'Forbidden');
    expect((await model.run('half_plus_two', { kind: 'rollback' })).text).toBe(
      'Rollback failed: not authorized / logged out'
    );
  });

  it('builds the endpoints, reading the signature once', async () => {
    await model.update();
    const first = model.endpoints('half_plus_two');
    expect(first.url).toBe(
      'http://localhost:8888/lab-base/tfserving/v1/models/half_plus_two:predict'
    );
    expect(first.grpcTarget).toBe('127.0.0.1:45495');
    await new Promise(resolve => setTimeout(resolve, 0));
    const second = model.endpoints('half_plus_two');
    expect(second.curl).toBe(
      'curl -H "Authorization: token $JUPYTER_TOKEN" -d \'{"instances":[[0]]}\' http://localhost:8888/lab-base/tfserving/v1/models/half_plus_two:predict'
    );
    model.endpoints('half_plus_two');
    expect(api.metadataCalls).toBe(1);
    // no AVAILABLE version: no metadata to read
    expect(model.endpoints('broken').note).toMatch(/no AVAILABLE version/);
    expect(api.metadataCalls).toBe(1);
  });

  it('polls only while the panel or the status bar is shown', async () => {
    const poll = (model as any)._poll;
    expect(model.isPolling).toBe(false);
    model.setPanelVisible(true);
    expect(model.isPolling).toBe(true);
    await new Promise(resolve => setTimeout(resolve, 20));
    expect(model.connection).toBe('ok');
    expect(poll.frequency.interval).toBe(2000);
    model.setStatusVisible(true);
    model.setPanelVisible(false);
    expect(poll.frequency.interval).toBe(10000);
    model.setStatusVisible(false);
    expect(model.isPolling).toBe(false);
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(poll.state.phase).toBe('stopped');
  });
});

describe('TFServingModel: bulk jobs', () => {
  let api: FakeApi;
  let model: TFServingModel;

  beforeEach(() => {
    api = new FakeApi();
    model = new TFServingModel({
      api,
      jobInterval: 1000,
      jobIdleInterval: 5000
    });
  });

  afterEach(() => {
    model.dispose();
  });

  const jobsPoll = () => (model as any)._jobsPoll;

  it('lists the jobs newest first', async () => {
    expect(model.jobs).toBeNull();
    let changes = 0;
    model.changed.connect(() => changes++);
    await model.updateJobs();
    expect(changes).toBe(1);
    expect(model.jobs!.map(j => j.id)).toEqual([
      'ec88cad2270a',
      'stopped',
      'csv-import',
      'scores'
    ]);
    expect(model.jobsSupported).toBe(true);
    expect(model.jobsMessage).toBe('');
  });

  it('polls faster while a job is pending or running', async () => {
    await model.updateJobs();
    expect(jobsPoll().frequency.interval).toBe(1000);
    api.jobsAnswer = jobList(j =>
      j.state === 'running' ? { state: 'completed' } : {}
    );
    await model.updateJobs();
    expect(jobsPoll().frequency.interval).toBe(5000);
    api.jobsAnswer = jobList(j =>
      j.id === 'scores' ? { state: 'pending' } : {}
    );
    await model.updateJobs();
    expect(jobsPoll().frequency.interval).toBe(1000);
  });

  it('polls the jobs only while the panel is shown', async () => {
    model.setStatusVisible(true);
    await sleep(20);
    expect(model.isPollingJobs).toBe(false);
    expect(api.jobsCalls).toBe(0);
    model.setPanelVisible(true);
    expect(model.isPollingJobs).toBe(true);
    await sleep(20);
    expect(api.jobsCalls).toBe(1);
    expect(model.jobs).toHaveLength(4);
    await model.refresh();
    await sleep(20);
    expect(api.jobsCalls).toBe(2);
    model.setPanelVisible(false);
    expect(model.isPollingJobs).toBe(false);
    await sleep(0);
    expect(jobsPoll().state.phase).toBe('stopped');
    await model.refresh();
    await sleep(20);
    expect(api.jobsCalls).toBe(2);
  });

  it('shows no jobs for a server without the jobs API', async () => {
    api.jobsAnswer = new ApiError('http', 404, 'Not Found');
    await expect(model.updateJobs()).rejects.toBeInstanceOf(ApiError);
    expect(model.jobsSupported).toBe(false);
    expect(model.jobsMessage).toBe('');
  });

  it('keeps the last list and says why the jobs could not be read', async () => {
    await model.updateJobs();
    api.jobsAnswer = new ApiError('http', 500, 'the state file is unreadable');
    await expect(model.updateJobs()).rejects.toBeInstanceOf(ApiError);
    expect(model.jobsMessage).toBe('the state file is unreadable (HTTP 500)');
    expect(model.jobs).toHaveLength(4);
    // the connection banner already says this one
    api.jobsAnswer = new ApiError('network', 0, 'Failed to fetch');
    await expect(model.updateJobs()).rejects.toBeInstanceOf(ApiError);
    expect(model.jobsMessage).toBe('');
    expect(model.jobsSupported).toBe(true);
    expect(model.jobs).toHaveLength(4);
  });

  it('cancels a running job and shows the answer at once', async () => {
    await model.updateJobs();
    const running = model.jobs![0];
    api.jobActAnswer = { ...running, state: 'cancelled' };
    const pending = model.runJob(running, 'cancel');
    expect(model.isJobBusy(running.id)).toBe(true);
    expect(model.jobsResult).toEqual({
      kind: 'pending',
      text: 'Cancel job ec88cad2270a…'
    });
    const result = await pending;
    expect(result).toEqual({
      kind: 'ok',
      text: 'Cancel job ec88cad2270a: done, at <1%.'
    });
    expect(api.jobActs).toEqual([['ec88cad2270a', 'cancel']]);
    expect(model.isJobBusy(running.id)).toBe(false);
    expect(model.jobs![0].state).toBe('cancelled');
    // nothing runs now: back to the idle pace
    expect(jobsPoll().frequency.interval).toBe(5000);
  });

  it('resumes an ended job, and polls faster again', async () => {
    api.jobsAnswer = jobList(j =>
      j.state === 'running' ? { state: 'interrupted' } : {}
    );
    await model.updateJobs();
    expect(jobsPoll().frequency.interval).toBe(5000);
    const stopped = model.jobs!.find(j => j.id === 'stopped')!;
    api.jobActAnswer = { ...stopped, state: 'running' };
    const result = await model.runJob(stopped, 'resume');
    expect(result.text).toBe(
      'Resume job stopped: done, running; it skips the shards already written.'
    );
    expect(model.jobs!.find(j => j.id === 'stopped')!.state).toBe('running');
    expect(jobsPoll().frequency.interval).toBe(1000);
  });

  it('removes an ended job from the list', async () => {
    await model.updateJobs();
    const scores = model.jobs!.find(j => j.id === 'scores')!;
    const result = await model.runJob(scores, 'remove');
    expect(result).toEqual({
      kind: 'ok',
      text: 'Remove job scores: done. Its results stay in /tmp/jtfs/work/out/scores.'
    });
    expect(model.jobs!.map(j => j.id)).not.toContain('scores');
  });

  it('drops a job that ended before its cancel came (the server forgot it)', async () => {
    await model.updateJobs();
    const running = model.jobs![0];
    api.jobActAnswer = { ...running, state: 'completed' };
    const result = await model.runJob(running, 'cancel');
    expect(result.text).toMatch(
      /^Cancel job ec88cad2270a: it had already ended \(completed\)/
    );
    expect(model.jobs!.map(j => j.id)).not.toContain('ec88cad2270a');
  });

  it("shows the server's message when it refuses a job action", async () => {
    await model.updateJobs();
    const failed = model.jobs!.find(j => j.id === 'csv-import')!;
    api.jobActAnswer = new ApiError('http', 409, 'Job csv-import is running');
    expect(await model.runJob(failed, 'resume')).toEqual({
      kind: 'error',
      text: 'Resume job csv-import refused: Job csv-import is running (HTTP 409)'
    });
    expect(model.jobsResult!.kind).toBe('error');
    expect(model.jobs!.find(j => j.id === 'csv-import')!.state).toBe('failed');
    api.jobActAnswer = new ApiError('network', 0, 'Failed to fetch');
    expect((await model.runJob(failed, 'remove')).text).toBe(
      'Remove job csv-import failed: server unreachable, retrying'
    );
  });

  it('runs one action at a time on a job', async () => {
    await model.updateJobs();
    const running = model.jobs![0];
    const first = model.runJob(running, 'cancel');
    expect(await model.runJob(running, 'cancel')).toEqual({
      kind: 'error',
      text: 'Cancel job ec88cad2270a: another action on it is under way'
    });
    await first;
    expect(api.jobActs).toHaveLength(1);
  });
});

describe('TFServingModel: traffic tools', () => {
  let api: FakeApi;
  let model: TFServingModel;

  beforeEach(() => {
    api = new FakeApi();
    api.statsAnswer = parseStats(trafficStats);
    model = new TFServingModel({ api });
  });

  afterEach(() => {
    model.dispose();
  });

  /** The stats with half_plus_two's shadow as a summary (no outputs, no worst pairs). */
  function summaryStats(): IStatsResponse {
    const s = parseStats(trafficStats);
    s.models[1].shadow = parseShadowReport({
      candidate_version: 2,
      active: true,
      fraction: 1,
      started_at: (shadowAnswer as any).started_at,
      pairs: 25,
      agreement: 0.96
    });
    return s;
  }

  it('sets logging and shadows, showing the answer', async () => {
    await model.update();
    const logged = await model.runTraffic('half_plus_two', {
      kind: 'logging',
      rate: 0.5
    });
    expect(logged).toEqual({
      kind: 'ok',
      text: 'Log 50% of requests: done. logging 50% of requests · 1,234 logged · 3 dropped · 2 files, 1.2 MB'
    });
    const shadow = await model.runTraffic('half_plus_two', {
      kind: 'shadow',
      version: 2,
      fraction: 1
    });
    expect(shadow.text).toBe(
      'Shadow v2 at 100%: done. v2 gets 100% of the unversioned requests as a shadow.'
    );
    expect(model.result('half_plus_two')).toEqual(shadow);
    expect(api.trafficActs).toEqual([
      ['half_plus_two', { kind: 'logging', rate: 0.5 }],
      ['half_plus_two', { kind: 'shadow', version: 2, fraction: 1 }]
    ]);
  });

  it("shows the server's message when it refuses a shadow", async () => {
    api.trafficAnswer = new ApiError(
      'http',
      400,
      'Version 3 of half_plus_two is not AVAILABLE'
    );
    const result = await model.runTraffic('half_plus_two', {
      kind: 'shadow',
      version: 3,
      fraction: 1
    });
    expect(result).toEqual({
      kind: 'error',
      text: 'Shadow v3 at 100% refused: Version 3 of half_plus_two is not AVAILABLE (HTTP 400)'
    });
  });

  it('reads the recent requests of a watched model that logs, while the panel is shown', async () => {
    model.setPanelVisible(true);
    await sleep(20);
    expect(api.requestsCalls).toEqual([]);
    const watch = model.watch('half_plus_two');
    expect(model.isWatched('half_plus_two')).toBe(true);
    await sleep(0);
    expect(api.requestsCalls).toEqual(['half_plus_two']);
    const recent = model.recentRequests('half_plus_two')!;
    expect(recent.message).toBe('');
    expect(recent.records!.map(r => r.time)).toEqual(
      parseRequestList(requestsAnswer).requests.map(r => r.time)
    );
    // each poll reads them again
    await model.update();
    await sleep(0);
    expect(api.requestsCalls).toHaveLength(2);
    // a model that does not log: nothing read, and the last list forgotten
    model.watch('broken');
    await model.update();
    await sleep(0);
    expect(api.requestsCalls).toEqual([
      'half_plus_two',
      'half_plus_two',
      'half_plus_two'
    ]);
    expect(model.recentRequests('broken')).toBeUndefined();
    watch.dispose();
    expect(model.isWatched('half_plus_two')).toBe(false);
    expect(model.recentRequests('half_plus_two')).toBeUndefined();
    await model.update();
    await sleep(0);
    expect(api.requestsCalls).toHaveLength(3);
  });

  it('reads nothing while the panel is hidden, nor once logging is off', async () => {
    await model.update();
    model.watch('half_plus_two');
    await model.update();
    await sleep(0);
    expect(api.requestsCalls).toEqual([]);
    model.setPanelVisible(true);
    await sleep(20);
    expect(api.requestsCalls).toEqual(['half_plus_two']);
    expect(model.recentRequests('half_plus_two')).toBeDefined();
    const off = parseStats(trafficStats);
    off.models[1].logging!.sampling_rate = 0;
    api.statsAnswer = off;
    await model.update();
    await sleep(0);
    expect(api.requestsCalls).toHaveLength(1);
    expect(model.recentRequests('half_plus_two')).toBeUndefined();
  });

  it('says why the recent requests could not be read, keeping the last ones', async () => {
    model.setPanelVisible(true);
    await sleep(20);
    model.watch('half_plus_two');
    await sleep(0);
    api.requestsAnswer = new ApiError('http', 500, 'the log is unreadable');
    await model.update();
    await sleep(0);
    const recent = model.recentRequests('half_plus_two')!;
    expect(recent.message).toBe('the log is unreadable (HTTP 500)');
    expect(recent.records).toHaveLength(4);
  });

  it("takes the stats' shadow report when it is complete", async () => {
    model.setPanelVisible(true);
    await sleep(20);
    model.watch('half_plus_two');
    await sleep(0);
    expect(api.shadowCalls).toEqual([]);
    const report = model.shadow('half_plus_two')!;
    expect(report.worst).toHaveLength(2);
    expect(model.shadow('broken')).toBeNull();
  });

  it('reads the full report of a shadow the stats only summarise', async () => {
    api.statsAnswer = summaryStats();
    await model.update();
    // not watched (or hidden): the summary
    expect(model.shadow('half_plus_two')!.complete).toBe(false);
    model.setPanelVisible(true);
    model.watch('half_plus_two');
    await sleep(20);
    expect(api.shadowCalls.length).toBeGreaterThanOrEqual(1);
    const report = model.shadow('half_plus_two')!;
    // the summary's counters, the full report's outputs and pairs
    expect(report.pairs).toBe(25);
    expect(report.agreement).toBe(0.96);
    expect(Object.keys(report.outputs)).toEqual(['y', 'scores']);
    expect(report.worst).toHaveLength(2);
    expect(report.complete).toBe(true);
    // another shadow since: its summary, not the old report
    const other = summaryStats();
    other.models[1].shadow!.started_at = 1;
    api.statsAnswer = other;
    api.shadowAnswer = new ApiError('network', 0, 'Failed to fetch');
    await model.update();
    await sleep(0);
    expect(model.shadow('half_plus_two')!.complete).toBe(false);
  });

  it('keeps the full report a shadow action answers', async () => {
    api.statsAnswer = summaryStats();
    await model.update();
    await model.runTraffic('half_plus_two', {
      kind: 'shadow',
      version: 2,
      fraction: 1
    });
    expect(model.shadow('half_plus_two')!.worst).toHaveLength(2);
  });
});

describe('TFServingClient', () => {
  function client(
    handler: (request: Request) => Response | Promise<Response>
  ): { client: TFServingClient; requests: Request[] } {
    const requests: Request[] = [];
    const settings = ServerConnection.makeSettings({
      baseUrl: 'http://localhost:8888/base/',
      token: 'secret',
      fetch: async (input: RequestInfo | URL) => {
        const request = input as Request;
        requests.push(request);
        return handler(request);
      }
    } as any);
    return {
      client: new TFServingClient({ serverSettings: settings }),
      requests
    };
  }

  const json = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), {
      status,
      headers: { 'Content-Type': 'application/json' }
    });

  it('GETs the stats under base_url with the login', async () => {
    const { client: c, requests } = client(() => json(200, statsAnswer));
    const s = await c.stats();
    expect(s.models).toHaveLength(2);
    expect(requests[0].method).toBe('GET');
    expect(requests[0].url).toMatch(
      /^http:\/\/localhost:8888\/base\/tfserving\/api\/stats(\?\d+)?$/
    );
    expect(requests[0].headers.get('Authorization')).toBe('token secret');
  });

  it('POSTs actions with a JSON body', async () => {
    const { client: c, requests } = client(() =>
      json(200, (modelsAnswer as any).models[1])
    );
    const desc = await c.act('half_plus_two', {
      kind: 'canary',
      weight: 0.2,
      version: 2
    });
    expect(desc.name).toBe('half_plus_two');
    expect(requests[0].method).toBe('POST');
    expect(requests[0].url).toMatch(
      /^http:\/\/localhost:8888\/base\/tfserving\/api\/models\/half_plus_two:canary(\?\d+)?$/
    );
    expect(await requests[0].text()).toBe('{"weight":0.2,"version":2}');
    expect(requests[0].headers.get('Content-Type')).toBe('application/json');
  });

  it('turns failures into ApiErrors', async () => {
    const refused = client(() => json(400, { error: 'nothing to roll back' }));
    await expect(
      refused.client.act('m', { kind: 'rollback' })
    ).rejects.toMatchObject({
      kind: 'http',
      status: 400,
      message: 'nothing to roll back'
    });
    const forbidden = client(() => json(403, { message: 'Forbidden' }));
    await expect(forbidden.client.stats()).rejects.toMatchObject({
      kind: 'forbidden',
      status: 403
    });
    const down = client(() => {
      throw new TypeError('Failed to fetch');
    });
    await expect(down.client.models()).rejects.toMatchObject({
      kind: 'network'
    });
    const html = client(() => new Response('<html></html>', { status: 200 }));
    await expect(html.client.stats()).rejects.toMatchObject({ kind: 'parse' });
    const wrong = client(() => json(200, { nope: true }));
    await expect(wrong.client.stats()).rejects.toMatchObject({ kind: 'parse' });
  });

  it('GETs the jobs and acts on one', async () => {
    const answers: Record<string, unknown> = {
      GET: jobsAnswer,
      DELETE: (jobsAnswer as any).jobs[3],
      POST: { ...(jobsAnswer as any).jobs[2], state: 'running' }
    };
    const { client: c, requests } = client(r => json(200, answers[r.method]));
    const list = await c.jobs();
    expect(list.jobs.map(j => j.id)).toEqual([
      'scores',
      'csv-import',
      'stopped',
      'ec88cad2270a'
    ]);
    expect(requests[0].url).toMatch(
      /^http:\/\/localhost:8888\/base\/tfserving\/api\/jobs(\?\d+)?$/
    );
    const cancelled = await c.jobAct('ec88cad2270a', 'cancel');
    expect(cancelled.id).toBe('ec88cad2270a');
    expect(requests[1].method).toBe('DELETE');
    expect(requests[1].url).toMatch(
      /^http:\/\/localhost:8888\/base\/tfserving\/api\/jobs\/ec88cad2270a(\?\d+)?$/
    );
    const resumed = await c.jobAct('stopped', 'resume');
    expect(resumed.state).toBe('running');
    expect(requests[2].method).toBe('POST');
    expect(requests[2].url).toMatch(/\/api\/jobs\/stopped:resume(\?\d+)?$/);
    expect(await requests[2].text()).toBe('{}');
  });

  it('turns job failures into ApiErrors', async () => {
    const missing = client(() => json(404, { error: 'No job nope' }));
    await expect(missing.client.jobAct('nope', 'remove')).rejects.toMatchObject(
      {
        kind: 'http',
        status: 404,
        message: 'No job nope'
      }
    );
    const wrong = client(() => json(200, { models: [] }));
    await expect(wrong.client.jobs()).rejects.toMatchObject({ kind: 'parse' });
    const odd = client(() => json(200, { nope: true }));
    await expect(odd.client.jobAct('x', 'cancel')).rejects.toMatchObject({
      kind: 'parse'
    });
  });

  it('POSTs logging and shadow actions, GETs the recent requests and the report', async () => {
    const { client: c, requests } = client(r =>
      json(
        200,
        /:logging/.test(r.url)
          ? loggingAnswer
          : /requests/.test(r.url)
            ? requestsAnswer
            : shadowAnswer
      )
    );
    const logging = await c.traffic('half_plus_two', {
      kind: 'logging',
      rate: 0.5
    });
    expect(logging.kind).toBe('logging');
    expect(requests[0].method).toBe('POST');
    expect(requests[0].url).toMatch(
      /^http:\/\/localhost:8888\/base\/tfserving\/api\/models\/half_plus_two:logging(\?\d+)?$/
    );
    expect(await requests[0].text()).toBe('{"sampling_rate":0.5}');
    const ended = await c.traffic('half_plus_two', { kind: 'endShadow' });
    expect(ended.kind).toBe('shadow');
    expect(requests[1].url).toMatch(
      /\/api\/models\/half_plus_two:shadow(\?\d+)?$/
    );
    expect(await requests[1].text()).toBe('{"fraction":0}');
    const list = await c.requests('half_plus_two');
    expect(list.requests).toHaveLength(4);
    expect(requests[2].method).toBe('GET');
    expect(requests[2].url).toMatch(
      /^http:\/\/localhost:8888\/base\/tfserving\/api\/models\/half_plus_two\/requests\?n=10(&\d+)?$/
    );
    const report = await c.shadowReport('half_plus_two');
    expect(report.candidate_version).toBe(2);
    expect(requests[3].url).toMatch(
      /\/api\/models\/half_plus_two\/shadow(\?\d+)?$/
    );
    const missing = client(() =>
      json(404, { error: 'half_plus_two never had a shadow' })
    );
    await expect(
      missing.client.shadowReport('half_plus_two')
    ).rejects.toMatchObject({
      kind: 'http',
      status: 404
    });
  });

  it('reads an action answer as a model description', async () => {
    const { client: c } = client(() => json(200, { name: 'm', versions: [] }));
    const desc = await c.act('m', { kind: 'load', version: 1 });
    expect(desc).toEqual(parseModelDescription({ name: 'm', versions: [] }));
  });
});
