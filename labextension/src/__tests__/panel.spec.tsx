/**
 * The panel's view (panel.tsx) rendered in jsdom over a fake server: the DOM the browser test
 * targets, accessible names on every control, pagination of thousands of versions, the
 * confirmation and the server's answer inline, a 403, a model that disappears, the bulk jobs
 * (progress, rate, ETA, error; cancel, resume, remove), the traffic tools (warmup and the last
 * minute per version; request logging and the recent requests of an open model; the shadow
 * report; starting and ending a shadow, turning logging on and off), and no console error on
 * the way.
 */

import { Widget } from '@lumino/widgets';

import {
  ApiError,
  IJob,
  IJobList,
  JobAction,
  parseJobList,
  parseModelList,
  parseStats
} from '../model';
import { IPanelHost, TFServingPanel } from '../panel';
import { TFServingStatus } from '../status';
import { TFServingModel } from '../store';

import { FakeApi as BaseFakeApi } from './fakes';
import jobsAnswer from './fixtures/jobs.json';
import modelsAnswer from './fixtures/models.json';
import statsAnswer from './fixtures/stats.json';
import trafficStats from './fixtures/stats-traffic.json';

/** Acts on its own jobs, as the server would: cancelled at once, resumed, forgotten. */
class FakeApi extends BaseFakeApi {
  baseUrl = 'http://localhost/';
  jobActError: ApiError | null = null;
  async jobAct(id: string, action: JobAction): Promise<IJob> {
    this.jobActs.push([id, action]);
    if (this.jobActError) {
      throw this.jobActError;
    }
    const list = this.jobsAnswer as IJobList;
    const job = list.jobs.find(j => j.id === id)!;
    if (action === 'remove') {
      list.jobs = list.jobs.filter(j => j !== job);
      return job;
    }
    job.state = action === 'cancel' ? 'cancelled' : 'running';
    return { ...job };
  }
}

class FakeHost implements IPanelHost {
  answer = true;
  asked: string[] = [];
  dismissLabels: Array<string | undefined> = [];
  copied: string[] = [];
  label: string | null = 'prod';
  async confirm(c: {
    title: string;
    body: string;
    dismiss?: string;
  }): Promise<boolean> {
    this.asked.push(c.body);
    this.dismissLabels.push(c.dismiss);
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

/** The panel's controls, and those of them without an accessible name. */
function controls(panel: TFServingPanel): {
  all: Element[];
  unnamed: string[];
} {
  // jp-button: JupyterLab's toolbar buttons (a web component); the hidden
  // form-associated proxy inputs are jsdom's (browsers use ElementInternals)
  const all = Array.from(
    panel.node.querySelectorAll(
      'button, jp-button, input:not([slot="form-associated-proxy"]), select, summary, svg[role="img"]'
    )
  );
  const unnamed = all
    .filter(c => !(c.getAttribute('aria-label') || '').trim())
    .map(c => c.outerHTML.slice(0, 120));
  return { all, unnamed };
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
    model = new TFServingModel({
      api,
      interval: 50,
      maxInterval: 200,
      jobInterval: 50,
      jobIdleInterval: 100
    });
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
    const { all, unnamed } = controls(panel);
    expect(all.length).toBeGreaterThan(10);
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

  const jobs = () => panel.node.querySelector('.jp-TFServing-jobs');
  const job = (id: string) =>
    panel.node.querySelector(
      `li.jp-TFServing-job[data-job="${id}"]`
    ) as HTMLElement;
  const jobsResult = () =>
    jobs()!.querySelector('.jp-TFServing-result') as HTMLElement;

  it('shows the bulk jobs newest first, above the models', async () => {
    await until(() => expect(jobs()).not.toBeNull());
    const view = panel.node.querySelector('.jp-TFServing-view')!;
    expect(
      Array.from(view.children).map(c => c.className.split(' ')[0])
    ).toEqual(['jp-TFServing-top', 'jp-TFServing-jobs', 'jp-TFServing-models']);
    expect(
      jobs()!.querySelector('.jp-TFServing-jobsSummary')!.textContent
    ).toBe('1 running · 1 failed · 1 cancelled · 1 completed');
    const rows = jobs()!.querySelectorAll('li.jp-TFServing-job');
    expect(Array.from(rows).map(r => r.getAttribute('data-job'))).toEqual([
      'ec88cad2270a',
      'stopped',
      'csv-import',
      'scores'
    ]);
  });

  it('shows progress, rate and ETA while a job runs', async () => {
    await until(() => expect(job('ec88cad2270a')).not.toBeNull());
    const running = job('ec88cad2270a');
    expect(running.dataset.state).toBe('running');
    expect(running.classList).toContain('jp-mod-running');
    expect(running.querySelector('.jp-TFServing-jobTarget')!.textContent).toBe(
      'half_plus_two v2'
    );
    const bar = running.querySelector('[role="progressbar"]')!;
    expect(bar.getAttribute('aria-valuenow')).toBe('0');
    expect(bar.getAttribute('aria-label')).toBe('Progress of job ec88cad2270a');
    expect(bar.getAttribute('aria-valuetext')).toBe(
      '<1%: 7,000 / 2M rows, 7 / 2,000 shards'
    );
    const metric = (row: HTMLElement, name: string) =>
      row.querySelector(`[data-metric="${name}"]`)?.textContent ?? null;
    expect(metric(running, 'percent')).toBe('<1%');
    expect(metric(running, 'rows')).toBe('7,000 / 2M rows');
    expect(metric(running, 'shards')).toBe('7 / 2,000 shards');
    expect(metric(running, 'rate')).toBe('3k rows/s');
    expect(metric(running, 'eta')).toBe('ETA 11 min');
    expect(running.querySelector('.jp-TFServing-jobOutput')!.textContent).toBe(
      '→ …/out/big (parquet)'
    );
    const done = job('scores');
    expect(
      done.querySelector('[role="progressbar"]')!.getAttribute('aria-valuenow')
    ).toBe('100');
    expect(metric(done, 'percent')).toBe('100%');
    expect(metric(done, 'rate')).toBeNull();
    expect(metric(done, 'eta')).toBeNull();
  });

  it('shows why a job failed, and the actions each state allows', async () => {
    await until(() => expect(job('csv-import')).not.toBeNull());
    expect(
      job('csv-import').querySelector('.jp-TFServing-jobError')!.textContent
    ).toMatch(/bad\.csv rows 500-501: column x does not fit/);
    expect(job('scores').querySelector('.jp-TFServing-jobError')).toBeNull();
    const actions = (id: string) =>
      Array.from(job(id).querySelectorAll('[data-action]')).map(b =>
        b.getAttribute('data-action')
      );
    expect(actions('ec88cad2270a')).toEqual(['cancel']);
    expect(actions('csv-import')).toEqual(['resume', 'remove']);
    expect(actions('stopped')).toEqual(['resume', 'remove']);
    expect(actions('scores')).toEqual(['remove']);
    expect(
      job('stopped')
        .querySelector('[data-action="resume"]')!
        .getAttribute('aria-label')
    ).toBe('Resume job stopped');
  });

  it('asks before cancelling a job, then shows the answer', async () => {
    await until(() => expect(job('ec88cad2270a')).not.toBeNull());
    (
      job('ec88cad2270a').querySelector(
        '[data-action="cancel"]'
      ) as HTMLButtonElement
    ).click();
    await until(() =>
      expect(jobsResult().textContent).toBe(
        'Cancel job ec88cad2270a: done, at <1%.'
      )
    );
    expect(host.asked[0]).toMatch(/^The job on half_plus_two v2 stops/);
    expect(host.dismissLabels).toEqual(['Keep running']);
    expect(api.jobActs).toEqual([['ec88cad2270a', 'cancel']]);
    expect(jobsResult().dataset.kind).toBe('ok');
    await until(() =>
      expect(job('ec88cad2270a').dataset.state).toBe('cancelled')
    );
    expect(
      job('ec88cad2270a').querySelector('[data-action="resume"]')
    ).not.toBeNull();
  });

  it('does nothing when the user keeps the job running', async () => {
    host.answer = false;
    await until(() => expect(job('ec88cad2270a')).not.toBeNull());
    (
      job('ec88cad2270a').querySelector(
        '[data-action="cancel"]'
      ) as HTMLButtonElement
    ).click();
    await until(() =>
      expect(jobsResult().textContent).toBe(
        'Cancel job ec88cad2270a: dismissed.'
      )
    );
    expect(api.jobActs).toEqual([]);
  });

  it('resumes a job, and removes a completed one without asking', async () => {
    await until(() => expect(job('scores')).not.toBeNull());
    (
      job('stopped').querySelector(
        '[data-action="resume"]'
      ) as HTMLButtonElement
    ).click();
    await until(() => expect(job('stopped').dataset.state).toBe('running'));
    (
      job('scores').querySelector('[data-action="remove"]') as HTMLButtonElement
    ).click();
    await until(() => expect(job('scores')).toBeNull());
    expect(host.asked).toEqual([]);
    expect(jobsResult().textContent).toBe(
      'Remove job scores: done. Its results stay in /tmp/jtfs/work/out/scores.'
    );
  });

  it("shows the server's message when it refuses a job action", async () => {
    api.jobActError = new ApiError('http', 409, 'Job stopped is running');
    await until(() => expect(job('stopped')).not.toBeNull());
    (
      job('stopped').querySelector(
        '[data-action="resume"]'
      ) as HTMLButtonElement
    ).click();
    await until(() =>
      expect(jobsResult().textContent).toBe(
        'Resume job stopped refused: Job stopped is running (HTTP 409)'
      )
    );
    expect(jobsResult().dataset.kind).toBe('error');
  });

  it('pages the ended jobs', async () => {
    const template = parseJobList(jobsAnswer).jobs[0];
    api.jobsAnswer = {
      jobs: Array.from({ length: 25 }, (_, i) => ({
        ...template,
        id: `j${i}`,
        created_at: i
      }))
    };
    const rows = () => jobs()!.querySelectorAll('li.jp-TFServing-job');
    await until(() => expect(rows()).toHaveLength(10));
    expect(rows()[0].getAttribute('data-job')).toBe('j24');
    const more = jobs()!.querySelector(
      'button[data-action="more-jobs"]'
    ) as HTMLButtonElement;
    expect(more.textContent).toBe('Show more jobs (15 ended jobs hidden)');
    more.click();
    await until(() => expect(rows()).toHaveLength(20));
  });

  it('collapses the jobs', async () => {
    await until(() => expect(jobs()).not.toBeNull());
    const body = jobs()!.querySelector('.jp-TFServing-jobsBody') as HTMLElement;
    expect(body.hidden).toBe(false);
    (
      jobs()!.querySelector('[data-action="toggle-jobs"]') as HTMLElement
    ).click();
    await until(() => expect(body.hidden).toBe(true));
  });

  it('shows no jobs section without jobs, or without the jobs API', async () => {
    api.jobsAnswer = { jobs: [] };
    await until(() => expect(jobs()).toBeNull());
    api.jobsAnswer = new ApiError('http', 404, 'Not Found');
    await sleep(150);
    expect(jobs()).toBeNull();
    expect(model.jobsSupported).toBe(false);
  });

  it('stops polling when hidden', async () => {
    panel.hide();
    expect(model.isPolling).toBe(false);
    expect(model.isPollingJobs).toBe(false);
    panel.show();
    expect(model.isPolling).toBe(true);
    expect(model.isPollingJobs).toBe(true);
  });
  describe('traffic tools', () => {
    /** The server answers `stats` from now on; once the panel shows them. */
    async function open(stats: unknown): Promise<void> {
      const next = parseStats(stats);
      api.statsAnswer = next;
      const logging = next.models[1].logging !== null;
      await until(() =>
        expect(tool('logging')?.dataset.state).toBe(logging ? 'on' : 'off')
      );
    }

    const find = (selector: string) =>
      section('half_plus_two').querySelector(selector) as HTMLElement;
    const text = (selector: string) => find(selector)?.textContent ?? null;
    const tool = (kind: string) => find(`.jp-TFServing-${kind}`);
    const click = (selector: string) => find(selector).click();
    const result = () => find('.jp-TFServing-result');
    const type = (selector: string, value: string) => {
      const input = find(selector) as HTMLInputElement;
      // React tracks the value it set: go through the native setter
      Object.getOwnPropertyDescriptor(
        HTMLInputElement.prototype,
        'value'
      )!.set!.call(input, value);
      input.dispatchEvent(new Event('input', { bubbles: true }));
    };

    it('shows the warmup and the last minute beside the since-load latency', async () => {
      await open(trafficStats);
      const v2 = 'li.jp-TFServing-version[data-version="2"]';
      await until(() =>
        expect(text(`${v2} dd[data-metric="recent-p99"]`)).toBe('3.3 ms')
      );
      expect(text(`${v2} dd[data-metric="recent-p50"]`)).toBe('1.4 ms');
      expect(text(`${v2} dd[data-metric="p99"]`)).toBe('12 ms');
      expect(
        find(`${v2} dd[data-metric="recent-p50"]`).previousSibling!.textContent
      ).toBe('p50 1 min');
      expect(text(`${v2} [data-metric="warmup"]`)).toBe(
        'warmup: 2 requests in 0.043 s'
      );
      expect(
        find('li.jp-TFServing-version[data-version="1"] [data-metric="warmup"]')
      ).toBeNull();
    });

    it('shows request logging and the recent requests of an open model', async () => {
      await open(trafficStats);
      await until(() => expect(tool('logging').dataset.state).toBe('on'));
      expect(
        text('.jp-TFServing-logging [data-metric="logging-summary"]')
      ).toBe('50% of requests');
      expect(text('.jp-TFServing-logging dd[data-metric="logged"]')).toBe(
        '1,234'
      );
      expect(
        find('.jp-TFServing-logging dd[data-metric="dropped"]').parentElement!
          .classList
      ).toContain('jp-mod-warn');
      expect(text('.jp-TFServing-logging dd[data-metric="bytes"]')).toBe(
        '1.2 MB'
      );
      const rows = () =>
        section('half_plus_two').querySelectorAll(
          '.jp-TFServing-requestList > li'
        );
      await until(() => expect(rows()).toHaveLength(4));
      const first = rows()[0] as HTMLElement;
      expect(first.dataset.version).toBe('1');
      expect(
        first.querySelector('.jp-TFServing-requestMethod')!.textContent
      ).toBe('predict');
      expect(first.querySelector('[data-tensors="inputs"]')!.textContent).toBe(
        '→ x=[[1], [3]]'
      );
      expect(first.querySelector('[data-tensors="outputs"]')!.textContent).toBe(
        '← y=[[2.5], [3.5]]'
      );
      const long = rows()[1].querySelector('[data-tensors="inputs"]')!;
      expect(long.textContent).toBe('→ x=[[0], [1], [2], …+61]');
      expect(long.getAttribute('title')).toMatch(
        /^x=\[\[0\], \[1\], .*…\+52\]$/
      );
      expect(
        rows()[2].querySelector('.jp-TFServing-requestMethod')!.textContent
      ).toBe('regress (regress_x_to_y)');
      expect(controls(panel).unnamed).toEqual([]);
    });

    it('reads the recent requests only while the model is open', async () => {
      await open(trafficStats);
      await until(() => expect(api.requestsCalls.length).toBeGreaterThan(1));
      expect(model.isWatched('half_plus_two')).toBe(true);
      click('[data-action="toggle"]');
      await until(() => expect(model.isWatched('half_plus_two')).toBe(false));
      const calls = api.requestsCalls.length;
      await sleep(150);
      expect(api.requestsCalls.length).toBeLessThanOrEqual(calls + 1);
      const after = api.requestsCalls.length;
      await sleep(150);
      expect(api.requestsCalls).toHaveLength(after);
      click('[data-action="toggle"]');
      await until(() =>
        expect(api.requestsCalls.length).toBeGreaterThan(after)
      );
    });

    it('shows why logging stopped, as an error', async () => {
      const stats = parseStats(trafficStats);
      stats.models[1].logging!.error =
        'Permission denied: /tmp/tfs/models/half_plus_two/logs';
      await open(trafficStats);
      api.statsAnswer = stats;
      await until(() =>
        expect(text('.jp-TFServing-logging .jp-TFServing-toolError')).toBe(
          'Logging stopped: Permission denied: /tmp/tfs/models/half_plus_two/logs'
        )
      );
      expect(
        find('.jp-TFServing-logging .jp-TFServing-toolError').getAttribute(
          'role'
        )
      ).toBe('alert');
    });

    it('shows the shadow report: agreement, differences, latency, worst pairs', async () => {
      await open(trafficStats);
      await until(() => expect(tool('shadow').dataset.state).toBe('active'));
      expect(text('[data-metric="shadow-summary"]')).toMatch(
        /^v2 · 100% of the unversioned requests · since /
      );
      expect(text('.jp-TFServing-shadow dd[data-metric="pairs"]')).toBe('20');
      expect(text('.jp-TFServing-shadow dd[data-metric="agreement"]')).toBe(
        '95%'
      );
      expect(
        find('.jp-TFServing-shadow dd[data-metric="mismatches"]').dataset.value
      ).toBe('1');
      const output = (name: string, metric: string) =>
        text(
          `.jp-TFServing-shadowOutputs tr[data-output="${name}"] [data-metric="${metric}"]`
        );
      expect(output('y', 'agreement')).toBe('95%');
      expect(output('y', 'max-diff')).toBe('0.5');
      expect(output('y', 'mean-diff')).toBe('0.025');
      expect(output('y', 'argmax')).toBe('–');
      expect(output('y', 'diff-p99')).toBe('0.5');
      expect(output('scores', 'argmax')).toBe('95%');
      expect(output('scores', 'max-diff')).toBe('1.25e-7');
      const latency = (side: string, q: string) =>
        text(
          `.jp-TFServing-shadowLatency tr[data-side="${side}"] [data-metric="${q}"]`
        );
      expect(latency('serving', 'p50')).toBe('1.4 ms');
      expect(latency('shadow', 'p99')).toBe('4.4 ms');
      expect(
        text('.jp-TFServing-shadowLatency tr[data-side="shadow"] th')
      ).toBe('shadow v2');
      const worst = section('half_plus_two').querySelectorAll(
        '.jp-TFServing-worstList > li'
      );
      expect(worst).toHaveLength(2);
      expect(
        worst[0].querySelector('[data-metric="max-diff"]')!.textContent
      ).toBe('max |Δ| 0.5');
      expect(
        worst[0].querySelector('[data-tensors="request"]')!.textContent
      ).toBe('→ x=[[3]]');
      expect(
        worst[1].querySelector('[data-metric="max-diff"]')!.textContent
      ).toBe('shape (2, 3) vs (2, 4)');
      expect(worst[1].querySelector('[data-tensors]')).toBeNull();
      expect(find('[data-action="shadow"]').textContent).toBe('Move shadow');
      expect(controls(panel).unnamed).toEqual([]);
    });

    it('shows the three worst pairs, and all of them on demand', async () => {
      const stats = parseStats(trafficStats);
      const report = stats.models[1].shadow!;
      report.worst = Array.from({ length: 10 }, (_, i) => ({
        ...report.worst[0],
        max_abs_diff: 10 - i
      }));
      await open(trafficStats);
      api.statsAnswer = stats;
      const worst = () =>
        section('half_plus_two').querySelectorAll(
          '.jp-TFServing-worstList > li'
        );
      await until(() =>
        expect(find('[data-action="more-worst"]')).not.toBeNull()
      );
      expect(worst()).toHaveLength(3);
      expect(text('[data-action="more-worst"]')).toBe('Show all 10');
      click('[data-action="more-worst"]');
      await until(() => expect(worst()).toHaveLength(10));
      expect(
        Array.from(worst()).map(
          w => w.querySelector('[data-metric="max-diff"]')!.textContent
        )[9]
      ).toBe('max |Δ| 1');
      expect(find('[data-action="more-worst"]')).toBeNull();
    });

    it('starts a shadow on the chosen version, after asking', async () => {
      await open(statsAnswer);
      await until(() => expect(tool('shadow')).not.toBeNull());
      expect(tool('shadow').dataset.state).toBe('none');
      expect(find('[data-action="end-shadow"]')).toBeNull();
      const select = find('select') as HTMLSelectElement;
      expect(select.getAttribute('aria-label')).toBe(
        'Candidate version of the shadow of half_plus_two'
      );
      expect(Array.from(select.options).map(o => o.textContent)).toEqual([
        'v2'
      ]);
      type('input.jp-TFServing-shadowFraction', '50%');
      click('[data-action="shadow"]');
      await until(() =>
        expect(result().textContent).toBe(
          'Shadow v2 at 50%: done. v2 gets 100% of the unversioned requests as a shadow.'
        )
      );
      expect(host.asked).toEqual([
        "v2 gets a copy of 50% of the unversioned requests to half_plus_two, after stable v1 has answered: the clients' answers do not change, the server does more work."
      ]);
      expect(api.trafficActs).toEqual([
        ['half_plus_two', { kind: 'shadow', version: 2, fraction: 0.5 }]
      ]);
    });

    it('refuses a shadow of 0% in the field', async () => {
      await open(statsAnswer);
      await until(() => expect(tool('shadow')).not.toBeNull());
      type('input.jp-TFServing-shadowFraction', '0');
      click('[data-action="shadow"]');
      await until(() =>
        expect(result().textContent).toBe(
          'Shadow: a shadow takes more than 0% (End stops it)'
        )
      );
      expect(
        find('input.jp-TFServing-shadowFraction').getAttribute('aria-invalid')
      ).toBe('true');
      expect(api.trafficActs).toEqual([]);
      expect(host.asked).toEqual([]);
    });

    it('ends the shadow after asking, and not when the user keeps it', async () => {
      await open(trafficStats);
      await until(() =>
        expect(find('[data-action="end-shadow"]')).not.toBeNull()
      );
      host.answer = false;
      click('[data-action="end-shadow"]');
      await until(() =>
        expect(result().textContent).toBe('End the shadow: cancelled.')
      );
      expect(api.trafficActs).toEqual([]);
      expect(host.dismissLabels).toEqual(['Keep shadowing']);
      host.answer = true;
      click('[data-action="end-shadow"]');
      await until(() => expect(api.trafficActs).toHaveLength(1));
      expect(api.trafficActs[0]).toEqual([
        'half_plus_two',
        { kind: 'endShadow' }
      ]);
    });

    it('turns logging on after asking, and off without', async () => {
      await open(statsAnswer);
      await until(() => expect(tool('logging')).not.toBeNull());
      expect(tool('logging').dataset.state).toBe('off');
      expect(find('.jp-TFServing-requests')).toBeNull();
      expect(
        (find('[data-action="logging-off"]') as HTMLButtonElement).disabled
      ).toBe(true);
      type('input.jp-TFServing-loggingRate', '10%');
      click('[data-action="logging"]');
      await until(() => expect(api.trafficActs).toHaveLength(1));
      expect(api.trafficActs[0]).toEqual([
        'half_plus_two',
        { kind: 'logging', rate: 0.1 }
      ]);
      expect(host.asked[0]).toMatch(/^The server writes 10% of the requests/);
      api.statsAnswer = parseStats(trafficStats);
      await until(() => expect(tool('logging').dataset.state).toBe('on'));
      click('[data-action="logging-off"]');
      await until(() => expect(api.trafficActs).toHaveLength(2));
      expect(api.trafficActs[1]).toEqual([
        'half_plus_two',
        { kind: 'logging', rate: 0 }
      ]);
      expect(host.asked).toHaveLength(1);
    });
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
