/**
 * Reading the management API's JSON defensively: each helper takes any value and answers a
 * value of its type (or the fallback), never throws. Shared by the parsers of model.ts and
 * traffic.ts.
 */

/**
 * Why a call failed:
 * - `network`: no answer (server down, connection refused, proxy gone);
 * - `forbidden`: 401/403, the user is not (or no longer) logged in, or not allowed;
 * - `http`: any other error answer, with the server's `{"error": ...}` message;
 * - `parse`: an answer that is not the JSON the panel expects.
 */
export type ApiErrorKind = 'network' | 'forbidden' | 'http' | 'parse';

/** An error of the management API, with what the panel shows for it. */
export class ApiError extends Error {
  constructor(
    readonly kind: ApiErrorKind,
    readonly status: number,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function num(value: unknown, fallback = 0): number {
  if (typeof value === 'number' && Number.isFinite(value)) {
    return value;
  }
  if (typeof value === 'string' && /^-?[0-9]+(\.[0-9]+)?$/.test(value)) {
    return Number(value);
  }
  return fallback;
}

export function numOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

export function str(value: unknown, fallback = ''): string {
  return typeof value === 'string' ? value : fallback;
}

export function strOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

export function versionNumber(value: unknown): number | null {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) {
    return value;
  }
  if (typeof value === 'string' && /^[0-9]+$/.test(value)) {
    return Number(value);
  }
  return null;
}
