// The MedicoSAM extension for OHIF 3.13, loaded at runtime as a plain ES module (app-config.js lists it).
// On entering a mode it mounts the MedicoSAM panel and listens for prompt marks; on leaving it cleans up.

import { Controller } from './controller.js';
import { activate, onPromptCompleted } from './tools.js';
import { mountPanel } from './panel.js';

let servicesManager = null;
let session = null;

function enter() {
  leave();
  const panel = mountPanel({
    chooseTool: kind => activate(kind),
    setLive: live => { controller.live = live; },
    run: () => controller.run(),
    undo: () => controller.undo(),
    clear: () => controller.clearPrompts(),
  });
  const controller = new Controller(servicesManager.services, (state, message) => {
    panel.report(state, message);
    if (state === 'error') console.warn(`MedicoSAM: ${message}`);
    else console.log(`MedicoSAM: ${message}`);
  });
  const unsubscribe = onPromptCompleted((kind, annotation) => controller.addPrompt(kind, annotation));
  session = { panel, controller, unsubscribe };
  window.medicosam = controller; // for the browser tests and a curious developer's console
}

function leave() {
  if (!session) return;
  session.unsubscribe();
  session.panel.remove();
  session = null;
  window.medicosam = undefined;
}

export default {
  id: 'medicosam',
  preRegistration(context) {
    servicesManager = context.servicesManager;
  },
  onModeEnter: enter,
  onModeExit: leave,
};
