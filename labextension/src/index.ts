/**
 * jupyter_tfserving's JupyterLab extension: the TF Serving side panel (right sidebar), its
 * command "Open TF Serving panel" (command palette), its place kept across reloads
 * (ILayoutRestorer), and a status-bar item "N models · R req/s".
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';

import { DEFAULT_URL_PREFIX, TFServingClient } from './client';
import { tfservingIcon } from './icon';
import { PANEL_ID, TFServingPanel } from './panel';
import { TFServingStatus } from './status';
import { TFServingModel } from './store';

/** The extension's command ids. */
export namespace CommandIDs {
  export const open = 'jupyter_tfserving:open';
}

/** The TF Serving side panel. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter_tfserving:plugin',
  description:
    'A side panel showing every model jupyter_tfserving serves, with its versions, traffic and latency, and the management actions.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    statusBar: IStatusBar | null
  ) => {
    const client = new TFServingClient({
      serverSettings: ServerConnection.makeSettings(),
      // A server may set its TFServingApp.url_prefix in the page config; default tfserving.
      prefix: PageConfig.getOption('tfservingUrlPrefix') || DEFAULT_URL_PREFIX
    });
    const model = new TFServingModel({ api: client });
    const panel = new TFServingPanel(model);
    app.shell.add(panel, 'right', { rank: 900 });
    if (restorer) {
      restorer.add(panel, PANEL_ID);
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Open TF Serving panel',
      caption: 'Show the models that jupyter_tfserving serves',
      icon: args => (args['isPalette'] ? undefined : tfservingIcon),
      describedBy: {
        args: {
          type: 'object',
          properties: {
            isPalette: {
              type: 'boolean',
              description:
                'Whether the command is shown in the palette (no icon)'
            }
          }
        }
      },
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });
    if (palette) {
      palette.addItem({
        command: CommandIDs.open,
        category: 'TF Serving',
        args: { isPalette: true }
      });
    }

    if (statusBar) {
      const item = new TFServingStatus(model, () =>
        app.commands.execute(CommandIDs.open).catch(() => undefined)
      );
      statusBar.registerStatusItem('jupyter_tfserving:status', {
        item,
        align: 'left',
        rank: 100,
        isActive: () => true
      });
    }
  }
};

export default plugin;
