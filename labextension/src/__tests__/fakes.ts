/**
 * A fake management API for the store's and the view's tests: every answer is a field the test
 * sets (a value, or an `ApiError` it throws), by default the fixtures' real answers; the calls
 * are recorded.
 */

import { ITFServingApi } from '../client';
import {
  Action,
  ApiError,
  IJob,
  IJobList,
  IModelDescription,
  IModelDescriptionList,
  IStatsResponse,
  JobAction,
  parseJobList,
  parseModelList,
  parseStats
} from '../model';
import {
  IRequestList,
  IShadowReport,
  parseLoggingStatus,
  parseRequestList,
  parseShadowReport,
  TrafficAction,
  TrafficAnswer
} from '../traffic';

import jobsAnswer from './fixtures/jobs.json';
import loggingAnswer from './fixtures/logging.json';
import metadataAnswer from './fixtures/metadata.json';
import modelsAnswer from './fixtures/models.json';
import requestsAnswer from './fixtures/requests.json';
import shadowAnswer from './fixtures/shadow.json';
import statsAnswer from './fixtures/stats.json';

/** A fake server's answer: `value`, thrown when it is an error. */
export function answer<T>(value: T | ApiError): T {
  if (value instanceof ApiError) {
    throw value;
  }
  return value;
}

/** A server whose answers the test sets. */
export class FakeApi implements ITFServingApi {
  baseUrl = 'http://localhost:8888/lab-base/';
  prefix = 'tfserving';
  statsAnswer: IStatsResponse | ApiError = parseStats(statsAnswer);
  modelsAnswer: IModelDescriptionList | ApiError = parseModelList(modelsAnswer);
  actAnswer: IModelDescription | ApiError =
    parseModelList(modelsAnswer).models[1];
  jobsAnswer: IJobList | ApiError = parseJobList(jobsAnswer);
  jobActAnswer: IJob | ApiError | null = null;
  trafficAnswer: TrafficAnswer | ApiError | null = null;
  requestsAnswer: IRequestList | ApiError = parseRequestList(requestsAnswer);
  shadowAnswer: IShadowReport | ApiError = parseShadowReport(shadowAnswer);
  metadataCalls = 0;
  jobsCalls = 0;
  acts: Array<[string, Action]> = [];
  jobActs: Array<[string, JobAction]> = [];
  trafficActs: Array<[string, TrafficAction]> = [];
  requestsCalls: string[] = [];
  shadowCalls: string[] = [];

  async stats(): Promise<IStatsResponse> {
    return answer(this.statsAnswer);
  }
  async models(): Promise<IModelDescriptionList> {
    return answer(this.modelsAnswer);
  }
  async metadata(model: string): Promise<unknown> {
    this.metadataCalls++;
    return metadataAnswer;
  }
  async act(model: string, action: Action): Promise<IModelDescription> {
    this.acts.push([model, action]);
    return answer(this.actAnswer);
  }
  async jobs(): Promise<IJobList> {
    this.jobsCalls++;
    return answer(this.jobsAnswer);
  }
  /** The job itself, unless the test set another answer. */
  async jobAct(id: string, action: JobAction): Promise<IJob> {
    this.jobActs.push([id, action]);
    const list =
      this.jobsAnswer instanceof ApiError ? [] : this.jobsAnswer.jobs;
    return answer(this.jobActAnswer) ?? list.find(j => j.id === id)!;
  }
  /** The fixtures' logging status or shadow report, unless the test set another answer. */
  async traffic(model: string, action: TrafficAction): Promise<TrafficAnswer> {
    this.trafficActs.push([model, action]);
    return (
      answer(this.trafficAnswer) ??
      (action.kind === 'logging'
        ? { kind: 'logging', logging: parseLoggingStatus(loggingAnswer) }
        : { kind: 'shadow', shadow: parseShadowReport(shadowAnswer) })
    );
  }
  async requests(model: string): Promise<IRequestList> {
    this.requestsCalls.push(model);
    return answer(this.requestsAnswer);
  }
  async shadowReport(model: string): Promise<IShadowReport> {
    this.shadowCalls.push(model);
    return answer(this.shadowAnswer);
  }
}
