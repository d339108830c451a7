// The MedicoSAM panel: a small floating tool box over the viewer (plain DOM: the extension has no bundler and
// so no React). Buttons choose the prompt tool; the status line shows progress and the server's errors.

const STYLE = `
#medicosam-panel { position: fixed; left: 8px; bottom: 8px; z-index: 20; width: 232px; padding: 8px;
  background: #0b1a42ee; color: #e6edf7; border: 1px solid #3a5ba0; border-radius: 6px;
  font: 13px/1.4 system-ui, sans-serif; box-shadow: 0 4px 16px #0008; }
#medicosam-panel h2 { margin: 0 0 6px; font-size: 13px; font-weight: 600; color: #7ec8ff; }
#medicosam-panel .medicosam-row { display: flex; gap: 4px; margin: 4px 0; padding: 0; border: 0; flex-wrap: wrap; align-items: center; }
#medicosam-panel button { flex: 1; padding: 4px 6px; background: #15306b; color: inherit; border: 1px solid #3a5ba0;
  border-radius: 4px; cursor: pointer; font: inherit; }
#medicosam-panel button[aria-pressed="true"] { background: #2f6fd6; border-color: #7ec8ff; }
#medicosam-panel button:disabled { opacity: 0.5; cursor: default; }
#medicosam-panel [data-role="status"] { min-height: 2.8em; margin-top: 6px; white-space: normal; }
#medicosam-panel [data-state="error"] { color: #ff9c9c; }
#medicosam-panel [data-state="busy"] { color: #ffd866; }
`;

const TOOL_BUTTONS = [
  ['include', 'Include', 'Left click: a point inside the structure'],
  ['exclude', 'Exclude', 'Left click: a point outside the structure'],
  ['box', 'Box', 'Drag a box around the structure'],
];

function element(tag, attributes = {}, text = '') {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

/** Mount the panel; ``actions`` holds chooseTool(kind), setLive(bool), run(), undo(), clear(). */
export function mountPanel(actions) {
  document.getElementById('medicosam-panel')?.remove();
  if (!document.getElementById('medicosam-style')) {
    document.head.append(element('style', { id: 'medicosam-style' }, STYLE));
  }
  const panel = element('section', { id: 'medicosam-panel', 'aria-label': 'MedicoSAM' });
  panel.append(element('h2', {}, 'MedicoSAM'));

  const tools = element('div', { class: 'medicosam-row', role: 'group', 'aria-label': 'prompt tool' });
  const toolButtons = TOOL_BUTTONS.map(([kind, text, title]) => {
    const button = element('button', { 'data-tool': kind, title, 'aria-pressed': 'false' }, text);
    button.addEventListener('click', () => {
      toolButtons.forEach(b => b.setAttribute('aria-pressed', String(b === button)));
      actions.chooseTool(kind);
    });
    return button;
  });
  tools.append(...toolButtons);

  const live = element('input', { type: 'checkbox', id: 'medicosam-live', checked: '' });
  live.addEventListener('change', () => actions.setLive(live.checked));
  const liveRow = element('div', { class: 'medicosam-row' });
  liveRow.append(live, element('label', { for: 'medicosam-live', title: 'Segment after every prompt' }, 'Live'));

  const commands = element('div', { class: 'medicosam-row' });
  for (const [action, text, title] of [
    ['run', 'Run', 'Segment this slice from its prompts'],
    ['undo', 'Undo', 'Take back the last prompt and its mask'],
    ['clear', 'Clear prompts', 'Remove the prompt marks (the mask stays)'],
  ]) {
    const button = element('button', { 'data-action': action, title }, text);
    button.addEventListener('click', () => actions[action]());
    commands.append(button);
  }
  liveRow.append(commands);

  const status = element('div', { 'data-role': 'status', role: 'status', 'aria-live': 'polite' },
    'Choose Include, Exclude or Box, then click or drag on the image.');
  panel.append(tools, liveRow, status);
  document.body.append(panel);
  return {
    report(state, message) {
      status.dataset.state = state;
      status.textContent = message;
    },
    remove() {
      panel.remove();
    },
  };
}
