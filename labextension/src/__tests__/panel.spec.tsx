/**
 * The panel's view (panel.tsx) rendered in jsdom over a fake server: the DOM the browser test
 * targets, accessible names on every control, pagination of thousands of versions, the
 * confirmation and the server's answer inline, a 403, a model that disappears, and no
 * console error on the way.
 */

import { Widget } from '@lumino/widgets';

import { ITFServingApi } from '../client';
import {
  Action,
  ApiError,
  IModelDescription,
  IModelDescriptionList,
  IStatsResponse,
  parseModelList,
  parseStats
} from '../model';
import { IPanelHost, TFServingPanel } from '../panel';
import { TFServingStatus } from '../status';
import { TFServingModel } from '../store';

import metadataAnswer from './fixtures/metadata.json';
import modelsAnswer from './fixtures/models.json';
import statsAnswer from './fixtures/stats.json';

class FakeApi implements ITFServingApi {
  baseUrl = 'http://localhost/';
  prefix = 'tfserving';
  statsAnswer: IStatsResponse | ApiError = parseStats(statsAnswer);
  modelsAnswer: IModelDescriptionList | ApiError = parseModelList(modelsAnswer);
  actAnswer: IModelDescription | ApiError =
    parseModelList(modelsAnswer).models[1];
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
  async metadata(): Promise<unknown> {
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

class FakeHost implements IPanelHost {
  answer = true;
  asked: string[] = [];
  copied: string[] = [];
  label: string | null = 'prod';
  async confirm(c: { title: string; body: string }): Promise<boolean> {
    this.asked.push(c.body);
    return this.answer;
  }
  async askLabel(): Promise<string | null> {
    return this.label;
  }
  copy(text: string): boolean {
    this.copied.push(text);
    return true;
  }
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/** Wait until `check` passes (React renders asynchronously). */
async function until(check: () => void, timeout = 2000): Promise<void> {
  const start = Date.now();
  for (;;) {
    try {
      check();
      return;
    } catch (error) {
      if (Date.now() - start > timeout) {
        throw error;
      }
      await sleep(10);
    }
  }
}

describe('TFServingPanel', () => {
  let api: FakeApi;
  let host: FakeHost;
  let model: TFServingModel;
  let panel: TFServingPanel;
  let consoleError: jest.SpyInstance;

  beforeEach(async () => {
    consoleError = jest.spyOn(console, 'error');
    api = new FakeApi();
    host = new FakeHost();
    model = new TFServingModel({ api, interval: 50, maxInterval: 200 });
    panel = new TFServingPanel(model, host);
    Widget.attach(panel, document.body);
    await until(() =>
      expect(
        panel.node.querySelector(
          '.jp-TFServing-model[data-model="half_plus_two"]'
        )
      ).not.toBeNull()
    );
  });

  afterEach(() => {
    panel.dispose();
    model.dispose();
    expect(consoleError).not.toHaveBeenCalled();
    consoleError.mockRestore();
  });

  const section = (name: string) =>
    panel.node.querySelector(
      `.jp-TFServing-model[data-model="${name}"]`
    ) as HTMLElement;

  it('shows every model, its versions, labels, share and failed loads', () => {
    expect(panel.id).toBe('jupyter-tfserving-panel');
    expect(model.isPolling).toBe(true);
    expect(panel.node.querySelector('.jp-TFServing-summary')!.textContent).toBe(
      '2 models · – req/s'
    );
    const hpt = section('half_plus_two');
    const rows = hpt.querySelectorAll('li.jp-TFServing-version');
    expect(Array.from(rows).map(r => r.getAttribute('data-version'))).toEqual([
      '2',
      '1'
    ]);
    const v2 = rows[0] as HTMLElement;
    expect(v2.dataset.state).toBe('AVAILABLE');
    expect(v2.classList).toContain('jp-mod-available');
    expect(v2.querySelector('[data-label="canary"]')).not.toBeNull();
    expect(v2.querySelector('[data-metric="share"]')!.textContent).toBe('25%');
    expect(
      v2.querySelector('dd[data-metric="requests"]')!.getAttribute('data-value')
    ).toBe('11');
    expect(v2.querySelector('svg.jp-TFServing-sparkline')).not.toBeNull();
    expect(hpt.querySelector('.jp-TFServing-routing')!.textContent).toBe(
      'stable v1 · canary v2 at 25%'
    );
    const broken = section('broken');
    expect(broken.querySelector('.jp-TFServing-failure')!.textContent).toMatch(
      /^v1 DATA_LOSS: Could not read SavedModel/
    );
    expect(
      broken.querySelector('li.jp-TFServing-version')!.classList
    ).toContain('jp-mod-failed');
  });

  it('gives every control an accessible name', () => {
    // jp-button: JupyterLab's toolbar buttons (a web component); the hidden
    // form-associated proxy inputs are jsdom's (browsers use ElementInternals)
    const controls = Array.from(
      panel.node.querySelectorAll(
        'button, jp-button, input:not([slot="form-associated-proxy"]), summary, svg[role="img"]'
      )
    );
    expect(controls.length).toBeGreaterThan(10);
    const unnamed = controls
      .filter(c => !(c.getAttribute('aria-label') || '').trim())
      .map(c => c.outerHTML.slice(0, 120));
    expect(unnamed).toEqual([]);
  });

  it('asks, then shows the server refusing an action', async () => {
    api.actAnswer = new ApiError(
      'http',
      400,
      'Version 2 of model half_plus_two carries the label(s) canary'
    );
    const unload = section('half_plus_two').querySelector(
      'li[data-version="2"] button[data-action="unload"]'
    ) as HTMLButtonElement;
    expect(unload.getAttribute('aria-label')).toBe(
      'Unload version 2 of half_plus_two'
    );
    unload.click();
    await until(() =>
      expect(
        section('half_plus_two').querySelector('.jp-TFServing-result')!
          .textContent
      ).toBe(
        'Unload v2 refused: Version 2 of model half_plus_two carries the label(s) canary (HTTP 400)'
      )
    );
    expect(host.asked).toHaveLength(1);
    expect(api.acts).toEqual([
      ['half_plus_two', { kind: 'unload', version: 2 }]
    ]);
    const result = section('half_plus_two').querySelector(
      '.jp-TFServing-result'
    ) as HTMLElement;
    expect(result.dataset.kind).toBe('error');
    expect(result.getAttribute('role')).toBe('status');
  });

  it('does nothing when the user cancels', async () => {
    host.answer = false;
    (
      section('half_plus_two').querySelector(
        '.jp-TFServing-modelActions button[data-action="rollback"]'
      ) as HTMLButtonElement
    ).click();
    await until(() =>
      expect(
        section('half_plus_two').querySelector('.jp-TFServing-result')!
          .textContent
      ).toBe('Rollback: cancelled.')
    );
    expect(api.acts).toEqual([]);
  });

  it('sends the canary weight typed in the input', async () => {
    const input = section('half_plus_two').querySelector(
      'input.jp-TFServing-weight'
    ) as HTMLInputElement;
    expect(input.getAttribute('aria-label')).toBe(
      'Canary weight for half_plus_two (0 to 1, or a percentage)'
    );
    expect(input.value).toBe('10%');
    (
      section('half_plus_two').querySelector(
        'li[data-version="2"] button[data-action="canary"]'
      ) as HTMLButtonElement
    ).click();
    await until(() => expect(api.acts).toHaveLength(1));
    expect(api.acts[0]).toEqual([
      'half_plus_two',
      { kind: 'canary', weight: 0.1, version: 2 }
    ]);
  });

  it('sets a label without asking, when it moves nothing', async () => {
    (
      section('half_plus_two').querySelector(
        'li[data-version="2"] button[data-action="label"]'
      ) as HTMLButtonElement
    ).click();
    await until(() => expect(api.acts).toHaveLength(1));
    expect(api.acts[0]).toEqual([
      'half_plus_two',
      { kind: 'setLabel', label: 'prod', version: 2 }
    ]);
    expect(host.asked).toEqual([]);
  });

  it('copies the REST URL and curl line', async () => {
    const details = section('half_plus_two').querySelector(
      'details.jp-TFServing-endpoints'
    ) as HTMLDetailsElement;
    details.open = true;
    details.dispatchEvent(new Event('toggle'));
    await until(() =>
      expect(
        section('half_plus_two').querySelector('code.jp-TFServing-curl')!
          .textContent
      ).toContain('{"instances":[[0]]}')
    );
    (
      section('half_plus_two').querySelector(
        '[data-action="copy-url"]'
      ) as HTMLElement
    ).click();
    expect(host.copied).toEqual([
      'http://localhost/tfserving/v1/models/half_plus_two:predict'
    ]);
    expect(
      section('half_plus_two').querySelector('code.jp-TFServing-grpc')!
        .textContent
    ).toBe('127.0.0.1:45495');
  });

  it('says when the user is logged out, keeping the last state', async () => {
    api.statsAnswer = new ApiError('forbidden', 403, 'Forbidden');
    await until(() =>
      expect(
        panel.node.querySelector('.jp-TFServing-banner')!.textContent
      ).toMatch(/^not authorized \/ logged out/)
    );
    expect(section('half_plus_two')).not.toBeNull();
    api.statsAnswer = new ApiError('network', 0, 'Failed to fetch');
    await until(() =>
      expect(
        panel.node.querySelector('.jp-TFServing-banner')!.textContent
      ).toMatch(/^server unreachable, retrying/)
    );
  });

  it('drops a model that disappears', async () => {
    const s = parseStats(statsAnswer);
    s.models = s.models.filter(m => m.name !== 'broken');
    const l = parseModelList(modelsAnswer);
    l.models = l.models.filter(m => m.name !== 'broken');
    api.statsAnswer = s;
    api.modelsAnswer = l;
    await until(() => expect(section('broken')).toBeNull());
    expect(section('half_plus_two')).not.toBeNull();
  });

  it('pages thousands of versions', async () => {
    const s = parseStats(statsAnswer);
    const l = parseModelList(modelsAnswer);
    const template = s.models[1].versions[1];
    s.models[1].versions = Array.from({ length: 3000 }, (_, i) => ({
      ...template,
      version: i + 1
    }));
    l.models[1].versions = [];
    l.models[1].labels = { stable: 1 };
    l.models[1].canary = null;
    l.models[1].traffic = { '1': 1 };
    api.statsAnswer = s;
    api.modelsAnswer = l;
    const rows = () =>
      section('half_plus_two').querySelectorAll('li.jp-TFServing-version');
    await until(() => expect(rows()).toHaveLength(11));
    expect(rows()[0].getAttribute('data-version')).toBe('3000');
    expect(rows()[10].getAttribute('data-version')).toBe('1');
    const more = section('half_plus_two').querySelector(
      'button[data-action="more-versions"]'
    ) as HTMLButtonElement;
    expect(more.textContent).toBe('Show more (2989 older versions hidden)');
    more.click();
    await until(() => expect(rows()).toHaveLength(21));
  });

  it('stops polling when hidden', async () => {
    panel.hide();
    expect(model.isPolling).toBe(false);
    panel.show();
    expect(model.isPolling).toBe(true);
  });
});

describe('TFServingStatus', () => {
  it('shows "N models · R req/s" and opens the panel', async () => {
    const consoleError = jest.spyOn(console, 'error');
    const model = new TFServingModel({
      api: new FakeApi(),
      statusInterval: 50
    });
    let opened = 0;
    const item = new TFServingStatus(model, () => opened++);
    Widget.attach(item, document.body);
    expect(model.isPolling).toBe(true);
    await until(() => expect(item.node.textContent).toBe('2 models · – req/s'));
    const button = item.node.querySelector('button')!;
    expect(button.getAttribute('aria-label')).toBe(
      'TF Serving: 2 models · – req/s. Open the TF Serving panel'
    );
    button.click();
    expect(opened).toBe(1);
    item.dispose();
    expect(model.isPolling).toBe(false);
    model.dispose();
    expect(consoleError).not.toHaveBeenCalled();
    consoleError.mockRestore();
  });
});
