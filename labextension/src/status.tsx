/**
 * The status-bar item: "N models · R req/s" (or why there is nothing to show); a click opens
 * the panel. While it is shown and the panel is not, the model polls slowly (store.ts).
 */

import { ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import { tfservingIcon } from './icon';
import { summaryText } from './model';
import { TFServingModel } from './store';

/** The text of the status-bar item. */
export function statusText(model: TFServingModel): string {
  switch (model.connection) {
    case 'ok':
      return summaryText(model.snapshot);
    case 'connecting':
      return 'TF Serving';
    case 'unreachable':
      return 'TF Serving: unreachable';
    case 'forbidden':
      return 'TF Serving: logged out';
    default:
      return 'TF Serving: error';
  }
}

/** The status-bar item of the TF Serving panel. */
export class TFServingStatus extends ReactWidget {
  constructor(
    readonly model: TFServingModel,
    private readonly _open: () => void
  ) {
    super();
    this.addClass('jp-TFServing-statusItem');
    model.changed.connect(this._onChanged, this);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.changed.disconnect(this._onChanged, this);
    this.model.setStatusVisible(false);
    super.dispose();
  }

  protected render(): JSX.Element {
    const text = statusText(this.model);
    const detail =
      this.model.connection === 'ok' || this.model.connection === 'connecting'
        ? ''
        : ` (${this.model.connectionMessage})`;
    return (
      <button
        type="button"
        className="jp-TFServing-status"
        data-connection={this.model.connection}
        aria-label={`TF Serving: ${text}${detail}. Open the TF Serving panel`}
        title={`TF Serving: ${text}${detail}. Click to open the panel.`}
        onClick={() => this._open()}
      >
        <tfservingIcon.react
          tag="span"
          elementSize="small"
          aria-hidden="true"
        />
        <span className="jp-TFServing-statusText">{text}</span>
      </button>
    );
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.model.setStatusVisible(this.isVisible);
  }

  protected onBeforeDetach(msg: Message): void {
    this.model.setStatusVisible(false);
    super.onBeforeDetach(msg);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.setStatusVisible(true);
    this.update();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.setStatusVisible(false);
  }

  private _onChanged(): void {
    this.update();
  }
}
