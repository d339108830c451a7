// The MedicoSAM panel: a small floating tool box over the viewer (plain DOM: the extension has no bundler and
// so no React). It offers only what the server's models can do with the active series; its status line shows
// progress and the server's errors in words.

const STYLE = `
#medicosam-panel { position: fixed; left: 8px; bottom: 8px; z-index: 20; width: 232px; padding: 8px;
  background: #0b1a42ee; color: #e6edf7; border: 1px solid #3a5ba0; border-radius: 6px;
  font: 13px/1.4 system-ui, sans-serif; box-shadow: 0 4px 16px #0008; }
#medicosam-panel h2 { margin: 0 0 6px; font-size: 13px; font-weight: 600; color: #7ec8ff; }
#medicosam-panel .medicosam-row { display: flex; gap: 4px; margin: 4px 0; padding: 0; border: 0; flex-wrap: wrap;
  align-items: center; }
#medicosam-panel button, #medicosam-panel select { flex: 1; padding: 3px 5px; background: #15306b; color: inherit;
  border: 1px solid #3a5ba0; border-radius: 4px; cursor: pointer; font: inherit; }
#medicosam-panel button[aria-pressed="true"] { background: #2f6fd6; border-color: #7ec8ff; }
#medicosam-panel button:disabled { opacity: 0.4; cursor: default; }
#medicosam-panel [data-role="status"] { min-height: 2.8em; margin-top: 6px; white-space: normal; }
#medicosam-panel [data-state="error"] { color: #ff9c9c; }
#medicosam-panel [data-state="busy"] { color: #ffd866; }
`;

const TOOL_BUTTONS = [
  ['include', 'Include', 'Left click: a point inside the structure'],
  ['exclude', 'Exclude', 'Left click: a point outside the structure'],
  ['box', 'Box', 'Drag a box around the structure'],
];
const COMMANDS = [
  [['run', 'Run', 'Segment this slice from its prompts'], ['undo', 'Undo', 'Take back the last action'],
    ['clear', 'Clear', 'Remove the prompt marks (the mask stays)']],
  [['propagate', 'Propagate', 'Follow the mask through the slices or frames'],
    ['semantic', 'Semantic', 'Segment every class in the whole image'],
    ['instances', 'Instances', 'Find and number every object']],
  [['accept', 'Accept', 'Save the label (written to the PACS as DICOM SEG)'],
    ['next', 'Next', 'Open the next image to label (active learning)']],
];

function element(tag, attributes = {}, text = '') {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function row(...children) {
  const node = element('div', { class: 'medicosam-row' });
  node.append(...children);
  return node;
}

/** Mount the panel; ``actions`` holds chooseTool(kind), chooseClass(index), setLive(bool) and one function per
 *  command (run, undo, clear, propagate, semantic, instances, accept, next). */
export function mountPanel(actions) {
  document.getElementById('medicosam-panel')?.remove();
  if (!document.getElementById('medicosam-style')) {
    document.head.append(element('style', { id: 'medicosam-style' }, STYLE));
  }
  const panel = element('section', { id: 'medicosam-panel', 'aria-label': 'MedicoSAM' });

  const classSelect = element('select', { 'aria-label': 'class', title: 'The class your prompts label' });
  classSelect.addEventListener('change', () => actions.chooseClass(Number(classSelect.value)));

  const toolButtons = TOOL_BUTTONS.map(([kind, text, title]) => {
    const button = element('button', { 'data-tool': kind, title, 'aria-pressed': 'false' }, text);
    button.addEventListener('click', () => {
      toolButtons.forEach(b => b.setAttribute('aria-pressed', String(b === button)));
      actions.chooseTool(kind);
    });
    return button;
  });

  const live = element('input', { type: 'checkbox', id: 'medicosam-live', checked: '' });
  live.addEventListener('change', () => actions.setLive(live.checked));
  const liveLabel = element('label', { for: 'medicosam-live', title: 'Segment after every prompt' }, 'Live');

  const commandButtons = {};
  const commandRows = COMMANDS.map(group => row(...group.map(([action, text, title]) => {
    const button = element('button', { 'data-action': action, title }, text);
    button.addEventListener('click', () => actions[action]());
    commandButtons[action] = button;
    return button;
  })));

  const status = element('div', { 'data-role': 'status', role: 'status', 'aria-live': 'polite' },
    'Choose Include, Exclude or Box, then click or drag on the image.');
  panel.append(element('h2', {}, 'MedicoSAM'), row(classSelect), row(...toolButtons), row(live, liveLabel),
    ...commandRows, status);
  document.body.append(panel);

  return {
    element: panel,
    report(state, message) {
      status.dataset.state = state;
      status.textContent = message;
    },
    /** Show ``classes`` (index → { label }) and enable what ``offers`` (model → capabilities) allows. */
    update({ classes, segment, offers, propagation, semanticTrained }) {
      const options = Object.entries(classes).map(([index, { label }]) => {
        const option = element('option', { value: index }, label);
        if (Number(index) === segment) option.selected = true;
        return option;
      });
      classSelect.replaceChildren(...options);
      const prompts = Boolean(offers.medicosam_interactive);
      toolButtons.forEach(button => { button.disabled = !prompts; });
      commandButtons.run.disabled = !prompts;
      commandButtons.propagate.disabled = !propagation;
      commandButtons.propagate.textContent = propagation === 'frames' ? 'Track frames' : 'Propagate';
      commandButtons.semantic.disabled = !offers.medicosam_semantic || !semanticTrained;
      commandButtons.semantic.title = semanticTrained ? 'Segment every class in the whole image'
        : 'No semantic model is trained yet: accept a few labels first';
      commandButtons.instances.disabled = !offers.medicosam_instances;
    },
    remove() {
      panel.remove();
    },
  };
}
