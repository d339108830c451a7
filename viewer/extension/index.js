// The MedicoSAM extension for OHIF 3.13, loaded at runtime as a plain ES module (app-config.js lists it).
// On entering a mode it mounts the MedicoSAM panel, reads what the server offers (/info) and listens for
// prompt marks; on leaving it cleans up.

import { Controller, PROPAGATION_MODEL } from './controller.js';
import { fetchInfo } from './server.js';
import { activate, onPromptCompleted, onPromptMoved } from './tools.js';
import { mountPanel } from './panel.js';
import { propagate, automatic, accept, openNext } from './tasks.js';

let servicesManager = null;
let session = null;

function enter() {
  leave();
  const controller = new Controller(servicesManager.services, (state, message) => {
    panel.report(state, message);
    (state === 'error' ? console.warn : console.log)(`MedicoSAM [${state}] ${message}`);
  });
  const refresh = () => {
    const offers = controller.offers();
    panel.update({ classes: controller.classes, segment: controller.segment, offers,
      propagation: offers[PROPAGATION_MODEL]?.propagates,
      semanticTrained: controller.info?.models?.medicosam_semantic?.model_version != null });
  };
  const panel = mountPanel({
    chooseTool: kind => activate(kind),
    chooseClass: index => { controller.segment = index; },
    setLive: live => { controller.live = live; },
    run: () => controller.run(),
    undo: () => controller.undo(),
    clear: () => controller.clearPrompts(),
    propagate: () => propagate(controller),
    semantic: () => automatic(controller, 'medicosam_semantic'),
    instances: () => automatic(controller, 'medicosam_instances'),
    accept: () => accept(controller),
    next: () => openNext(controller),
  });
  // What the panel offers follows the active series: refreshed whenever the grid or its viewports change, and
  // when the pointer comes to the panel (a cheap catch-all for a change no event announced).
  const { viewportGridService } = servicesManager.services;
  const subscriptions = ['ACTIVE_VIEWPORT_ID_CHANGED', 'LAYOUT_CHANGED', 'GRID_STATE_CHANGED', 'VIEWPORTS_READY']
    .map(name => viewportGridService.EVENTS[name]).filter(Boolean)
    .map(event => viewportGridService.subscribe(event, refresh));
  panel.element.addEventListener('pointerenter', refresh);
  const unsubscribe = onPromptCompleted(async (kind, annotation) => {
    await controller.addPrompt(kind, annotation);
    refresh(); // the first answer confirms the series' layout
  });
  fetchInfo().then(info => {
    controller.setInfo(info);
    refresh();
    console.log('MedicoSAM ready');
  }).catch(error => controller.report('error', error.message));
  const unsubscribeMoves = onPromptMoved((kind, annotation) => controller.movePrompt(kind, annotation));
  session = { panel, controller, unsubscribe: () => { unsubscribe(); unsubscribeMoves(); }, subscriptions };
  window.medicosam = controller; // for the browser tests and a curious developer's console
}

function leave() {
  if (!session) return;
  session.unsubscribe();
  session.subscriptions.forEach(subscription => subscription.unsubscribe());
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
