/**
 * The panel's live state (store.ts) over a fake server, and the client (client.ts) over a fake
 * fetch: polls, rates, a server that goes away, a 403, a refused action, the curl example.
 */

import { ServerConnection } from '@jupyterlab/services';

import { TFServingClient, ITFServingApi } from '../client';
import {
  Action,
  ApiError,
  IModelDescription,
  IModelDescriptionList,
  IStatsResponse,
  parseModelDescription,
  parseModelList,
  parseStats
} from '../model';
import { TFServingModel } from '../store';

import metadataAnswer from './fixtures/metadata.json';
import modelsAnswer from './fixtures/models.json';
import statsAnswer from './fixtures/stats.json';

/** A server whose answers the test sets. */
class FakeApi implements ITFServingApi {
  baseUrl = 'http://localhost:8888/lab-base/';
  prefix = 'tfserving';
  statsAnswer: IStatsResponse | ApiError = parseStats(statsAnswer);
  modelsAnswer: IModelDescriptionList | ApiError = parseModelList(modelsAnswer);
  actAnswer: IModelDescription | ApiError =
    parseModelList(modelsAnswer).models[1];
  metadataCalls = 0;
  acts: Array<[string, Action]> = [];

  async stats(): Promise<IStatsResponse> {
    if (this.statsAnswer instanceof ApiError) {
      throw this.statsAnswer;
    }
    return this.statsAnswer;
  }
  async models(): Promise<IModelDescriptionList> {
    if (this.modelsAnswer instanceof ApiError) {
      throw this.modelsAnswer;
    }
    return this.modelsAnswer;
  }
  async metadata(model: string): Promise<unknown> {
    this.metadataCalls++;
    return metadataAnswer;
  }
  async act(model: string, action: Action): Promise<IModelDescription> {
    this.acts.push([model, action]);
    if (this.actAnswer instanceof ApiError) {
      throw this.actAnswer;
    }
    return this.actAnswer;
  }
}

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

  it('reads an action answer as a model description', async () => {
    const { client: c } = client(() => json(200, { name: 'm', versions: [] }));
    const desc = await c.act('m', { kind: 'load', version: 1 });
    expect(desc).toEqual(parseModelDescription({ name: 'm', versions: [] }));
  });
});
