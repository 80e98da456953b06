/**
 * The panel's icon: an inline SVG (two stacked servers),
 * coloured by the theme through JupyterLab's `jp-icon3` class.
 */

import { LabIcon } from '@jupyterlab/ui-components';

const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h16a2 2 0 0 1 2 2v4a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm0 2v4h16V5H4zm2 1h2v2H6V6z"/>
    <path d="M4 13h16a2 2 0 0 1 2 2v4a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2v-4a2 2 0 0 1 2-2zm0 2v4h16v-4H4zm2 1h2v2H6v-2z"/>
    <path d="M11 6.25h7v1.5h-7zM11 16.25h7v1.5h-7z"/>
  </g>
</svg>`;

/** The TF Serving icon. */
export const tfservingIcon = new LabIcon({
  name: 'jupyter_tfserving:icon',
  svgstr
});
