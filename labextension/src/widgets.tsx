/**
 * Small pieces of the panel's view that its sections share: a labelled figure (`Metric`), and
 * a field that takes a share (`ShareInput` with `useShareField`: the canary weight, the
 * logging rate, the shadow fraction).
 */

import * as React from 'react';

import { parseWeight } from './model';

/** The DOM ids of one model section's labelled parts. */
export interface ISectionIds {
  title: string;
  body: string;
  weight: string;
  loggingRate: string;
  shadowVersion: string;
  shadowFraction: string;
}

/** One figure of a `<dl className="jp-TFServing-metrics">`: `data-metric` and `data-value`
 * carry the raw value for the tests and the browser test. */
export function Metric(props: {
  name: string;
  label: string;
  title: string;
  value: number | null;
  text: string;
  warn?: boolean;
}): JSX.Element {
  return (
    <div
      className={`jp-TFServing-metric${props.warn ? ' jp-mod-warn' : ''}`}
      title={props.title}
    >
      <dt>{props.label}</dt>
      <dd
        data-metric={props.name}
        data-value={props.value === null ? '' : props.value}
      >
        {props.text}
      </dd>
    </div>
  );
}

/** The state of a share field: its text, why it is wrong ('' when it is not), and `read`,
 * which parses it (0 to 1, or a percentage), or says why not (in the field and through
 * `onError`) and answers null. `check` may refuse a parsed value with a reason. */
export interface IShareField {
  text: string;
  error: string;
  setText(text: string): void;
  read(check?: (value: number) => string | null): number | null;
}

export function useShareField(
  initial: string,
  onError: (message: string) => void
): IShareField {
  const [text, setText] = React.useState(initial);
  const [error, setError] = React.useState('');
  return {
    text,
    error,
    setText(t: string) {
      setText(t);
      setError('');
    },
    read(check) {
      const w = parseWeight(text);
      const message = w.ok ? (check?.(w.value) ?? '') : w.error;
      setError(message);
      if (message) {
        onError(message);
        return null;
      }
      return w.ok ? w.value : null;
    }
  };
}

/** A share typed as `0.1` or `10%`, with its label; Enter runs `onEnter`. */
export function ShareInput(props: {
  id: string;
  /** The input's own class (the tests find it by it), beside the shared one. */
  className: string;
  field: IShareField;
  /** The visible label. */
  label: string;
  /** The accessible name. */
  ariaLabel: string;
  /** What the field takes, as its tooltip while it is valid. */
  hint: string;
  onEnter: () => void;
}): JSX.Element {
  const { id, field } = props;
  return (
    <>
      <label className="jp-TFServing-fieldLabel" htmlFor={id}>
        {props.label}
      </label>
      <input
        id={id}
        className={`jp-mod-styled jp-TFServing-shareInput ${props.className}`}
        type="text"
        inputMode="decimal"
        size={5}
        value={field.text}
        aria-label={props.ariaLabel}
        aria-invalid={field.error ? true : undefined}
        title={field.error || props.hint}
        onChange={e => field.setText(e.target.value)}
        onKeyDown={e => {
          if (e.key === 'Enter') {
            e.preventDefault();
            props.onEnter();
          }
        }}
      />
    </>
  );
}
