// The prompt tools: cornerstone's Probe (a point) and RectangleROI (a box) as named instances, so our marks are
// told apart from the user's measurements and styled as prompts (green include, red exclude, yellow box).

export const TOOLS = {
  include: { name: 'MedicoSAMInclude', base: 'Probe', color: 'rgb(40, 220, 90)' },
  exclude: { name: 'MedicoSAMExclude', base: 'Probe', color: 'rgb(240, 70, 70)' },
  box: { name: 'MedicoSAMBox', base: 'RectangleROI', color: 'rgb(250, 210, 40)' },
};
const NAMES = new Set(Object.values(TOOLS).map(tool => tool.name));
const PRIMARY = [{ mouseButton: 1 }];

function toolGroups() {
  return window.cornerstoneTools.ToolGroupManager.getAllToolGroups();
}

function ensureTools(toolGroup) {
  const { annotation } = window.cornerstoneTools;
  for (const tool of Object.values(TOOLS)) {
    if (!toolGroup.hasTool(tool.name)) {
      toolGroup.addToolInstance(tool.name, tool.base, {});
      toolGroup.setToolPassive(tool.name);
    }
  }
  const styles = Object.fromEntries(Object.values(TOOLS).map(tool => [tool.name, {
    color: tool.color, colorHighlighted: tool.color, colorSelected: tool.color, lineWidth: '2', textBoxFontSize: '1px',
  }]));
  annotation.config.style.setToolGroupToolStyles(toolGroup.id, styles);
}

/** Make ``kind`` (include, exclude, box) the left-button tool in every viewport; the others go passive. */
export function activate(kind) {
  for (const toolGroup of toolGroups()) {
    ensureTools(toolGroup);
    const primary = toolGroup.getActivePrimaryMouseButtonTool?.();
    if (primary && !NAMES.has(primary)) toolGroup.setToolPassive(primary);
    for (const tool of Object.values(TOOLS)) {
      if (tool === TOOLS[kind]) toolGroup.setToolActive(tool.name, { bindings: PRIMARY });
      else toolGroup.setToolPassive(tool.name);
    }
  }
}

/** Which prompt a finished annotation is (include, exclude, box), or null if it is not one of ours. */
export function promptKind(annotation) {
  const name = annotation?.metadata?.toolName;
  return Object.keys(TOOLS).find(kind => TOOLS[kind].name === name) ?? null;
}

/** Calls ``onPrompt(kind, annotation)`` for each finished prompt mark; returns the unsubscribe function. */
export function onPromptCompleted(onPrompt) {
  const { eventTarget } = window.cornerstone;
  const event = window.cornerstoneTools.Enums.Events.ANNOTATION_COMPLETED;
  const listener = evt => {
    const kind = promptKind(evt.detail?.annotation);
    if (kind) onPrompt(kind, evt.detail.annotation);
  };
  eventTarget.addEventListener(event, listener);
  return () => eventTarget.removeEventListener(event, listener);
}

export function setMarksVisible(annotationUIDs, visible) {
  const { visibility } = window.cornerstoneTools.annotation;
  for (const uid of annotationUIDs) visibility.setAnnotationVisibility(uid, visible);
  window.cornerstone.getRenderingEngines?.().forEach(engine => engine.render());
}

/** Calls ``onMoved(kind, annotation)`` for each prompt mark the user dragged, once the mouse button is released
 *  (cornerstone reports every step of a drag; the gesture ends at the release); returns the unsubscribe function. */
export function onPromptMoved(onMoved) {
  const { eventTarget } = window.cornerstone;
  const event = window.cornerstoneTools.Enums.Events.ANNOTATION_MODIFIED;
  const moved = new Map();
  const listener = evt => {
    const annotation = evt.detail?.annotation;
    if (promptKind(annotation)) moved.set(annotation.annotationUID, annotation);
  };
  const released = () => {
    if (!moved.size) return;
    const annotations = [...moved.values()];
    moved.clear();
    setTimeout(() => annotations.forEach(a => onMoved(promptKind(a), a)), 0); // after cornerstone's own handler
  };
  eventTarget.addEventListener(event, listener);
  document.addEventListener('pointerup', released, true);
  return () => {
    eventTarget.removeEventListener(event, listener);
    document.removeEventListener('pointerup', released, true);
  };
}

export function removeMarks(annotationUIDs) {
  const { state } = window.cornerstoneTools.annotation;
  for (const uid of annotationUIDs) state.removeAnnotation(uid);
  window.cornerstone.getRenderingEngines?.().forEach(engine => engine.render());
}
