/**
 * The management API over `ServerConnection.makeRequest`: the user's own login (token or
 * cookie), the XSRF header, the server's `base_url`. Every failure is an `ApiError` (see
 * model.ts): `network`, `forbidden`, `http` (with the server's `{"error": ...}` message) or
 * `parse`.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  Action,
  ApiError,
  actionRequest,
  errorBodyMessage,
  IApiRequest,
  IJob,
  IJobList,
  IModelDescription,
  IModelDescriptionList,
  IStatsResponse,
  JobAction,
  jobActionRequest,
  parseJob,
  parseJobList,
  parseModelDescription,
  parseModelList,
  parseStats
} from './model';
import {
  IRequestList,
  IShadowReport,
  parseRequestList,
  parseShadowReport,
  parseTrafficAnswer,
  REQUESTS_SHOWN,
  requestsRequest,
  shadowReportRequest,
  TrafficAction,
  TrafficAnswer,
  trafficRequest
} from './traffic';

/** The URL prefix of the extension's routes (`TFServingApp.url_prefix`). */
export const DEFAULT_URL_PREFIX = 'tfserving';

/** What the panel needs from the server (a fake one in the tests). */
export interface ITFServingApi {
  /** The absolute base URL of the Jupyter server, ending with `/`. */
  readonly baseUrl: string;
  /** The URL prefix of the extension's routes, e.g. `tfserving`. */
  readonly prefix: string;
  /** `GET P/api/stats`. */
  stats(): Promise<IStatsResponse>;
  /** `GET P/api/models`. */
  models(): Promise<IModelDescriptionList>;
  /** `GET P/v1/models/{m}/metadata` (TF Serving's metadata, unparsed). */
  metadata(model: string): Promise<unknown>;
  /** An action; the model afterwards. */
  act(model: string, action: Action): Promise<IModelDescription>;
  /** `GET P/api/jobs`: the bulk jobs, oldest first. */
  jobs(): Promise<IJobList>;
  /** An action on a bulk job; the job as the server answers it. */
  jobAct(id: string, action: JobAction): Promise<IJob>;
  /** `POST P/api/models/{m}:logging` or `:shadow`; the status or report it answers. */
  traffic(model: string, action: TrafficAction): Promise<TrafficAnswer>;
  /** `GET P/api/models/{m}/requests?n=...`: the newest logged requests, newest first. */
  requests(model: string, n?: number): Promise<IRequestList>;
  /** `GET P/api/models/{m}/shadow`: the full shadow report. */
  shadowReport(model: string): Promise<IShadowReport>;
}

/** The management API of the server that serves this JupyterLab. */
export class TFServingClient implements ITFServingApi {
  constructor(options: TFServingClient.IOptions = {}) {
    this.serverSettings =
      options.serverSettings ?? ServerConnection.makeSettings();
    this.prefix = (options.prefix ?? DEFAULT_URL_PREFIX).replace(
      /^\/+|\/+$/g,
      ''
    );
  }

  readonly serverSettings: ServerConnection.ISettings;
  readonly prefix: string;

  get baseUrl(): string {
    const base = this.serverSettings.baseUrl;
    return base.endsWith('/') ? base : base + '/';
  }

  async stats(): Promise<IStatsResponse> {
    return parseStats(await this.request({ method: 'GET', path: 'api/stats' }));
  }

  async models(): Promise<IModelDescriptionList> {
    return parseModelList(
      await this.request({ method: 'GET', path: 'api/models' })
    );
  }

  async metadata(model: string): Promise<unknown> {
    return this.request({
      method: 'GET',
      path: `v1/models/${encodeURIComponent(model)}/metadata`
    });
  }

  async act(model: string, action: Action): Promise<IModelDescription> {
    return parseModelDescription(
      await this.request(actionRequest(model, action))
    );
  }

  async jobs(): Promise<IJobList> {
    return parseJobList(
      await this.request({ method: 'GET', path: 'api/jobs' })
    );
  }

  async jobAct(id: string, action: JobAction): Promise<IJob> {
    return parseJob(await this.request(jobActionRequest(id, action)));
  }

  async traffic(model: string, action: TrafficAction): Promise<TrafficAnswer> {
    return parseTrafficAnswer(
      action,
      await this.request(trafficRequest(model, action))
    );
  }

  async requests(model: string, n = REQUESTS_SHOWN): Promise<IRequestList> {
    return parseRequestList(await this.request(requestsRequest(model, n)));
  }

  async shadowReport(model: string): Promise<IShadowReport> {
    return parseShadowReport(await this.request(shadowReportRequest(model)));
  }

  /** One request under `P/`; its JSON answer, or an `ApiError`. */
  async request(req: IApiRequest): Promise<unknown> {
    const url = URLExt.join(this.baseUrl, this.prefix, req.path);
    // JupyterLab's default settings add `cache: 'no-store'` (a cache-busting query).
    const init: RequestInit = { method: req.method };
    if (req.body !== undefined) {
      init.body = JSON.stringify(req.body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    let text: string;
    try {
      response = await ServerConnection.makeRequest(
        url,
        init,
        this.serverSettings
      );
      text = await response.text();
    } catch (error) {
      throw new ApiError(
        'network',
        0,
        error instanceof Error ? error.message : String(error)
      );
    }
    if (!response.ok) {
      const message = errorBodyMessage(text, response.statusText);
      throw new ApiError(
        response.status === 401 || response.status === 403
          ? 'forbidden'
          : 'http',
        response.status,
        message
      );
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiError(
        'parse',
        response.status,
        `${req.method} ${req.path} did not answer JSON`
      );
    }
  }
}

/** The namespace of `TFServingClient`. */
export namespace TFServingClient {
  /** How to reach the server. */
  export interface IOptions {
    /** Default: `ServerConnection.makeSettings()` (this page's server, login and XSRF). */
    serverSettings?: ServerConnection.ISettings;
    /** Default: `tfserving`. */
    prefix?: string;
  }
}
