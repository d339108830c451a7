// One annotator's MedicoSAM session in the viewer: a prompt mark → voxels → the server → the labelmap.
// Keeps the prompts of the current plane, the undo history, the classes and the grid of each open series.

import { parseNrrd } from './nrrd.js';
import { seriesGrid, worldToVoxel, viewAxis, checkAnswerGrid } from './grid.js';
import { infer } from './server.js';
import { ensureSegmentation, writeAnswer, undoWrite } from './labelmap.js';
import { seriesLayout, offered } from './layout.js';
import { PromptSet } from './prompts.js';
import { removeMarks, setMarksVisible } from './tools.js';

export const INTERACTIVE_MODEL = 'medicosam_interactive';
export const PROPAGATION_MODEL = 'medicosam_3d';
export const SEMANTIC_MODEL = 'medicosam_semantic';

/** The slice a plane at ``position`` (voxels along its axis) shows. A view centred on a volume of even size lies
 * half way between two slices; it is rounded down every time, whatever the float noise in the camera. */
function sliceAt(position) {
  return Math.round(position - 1e-3);
}

function planeName(layout, axis) {
  if (layout === 'cine') return 'frame';
  if (layout === 'plane' || layout === 'stack') return 'image';
  return `${['sagittal', 'coronal', 'axial'][axis]} slice`;
}

/** The classes a user labels: the semantic model's (so accepted labels train it), else the interactive model's. */
export function classesOf(info) {
  const models = info?.models ?? {};
  const colors = { ...(info?.capabilities?.[INTERACTIVE_MODEL]?.label_colors ?? {}),
    ...(info?.capabilities?.[SEMANTIC_MODEL]?.label_colors ?? {}) };
  let labels = models[SEMANTIC_MODEL]?.labels;
  if (!labels || !Object.keys(labels).length) labels = models[INTERACTIVE_MODEL]?.labels ?? ['label'];
  const values = Array.isArray(labels) ? Object.fromEntries(labels.map((name, n) => [name, n + 1])) : labels;
  return Object.fromEntries(Object.entries(values).map(([label, value]) => [value, { label, color: colors[label] }]));
}

export class Controller {
  constructor(services, report) {
    this.services = services;
    this.report = report; // (state: 'busy' | 'done' | 'error', message) → shown in the panel
    this.clientId = `ohif-${crypto.randomUUID()}`;
    this.live = true;
    this.propagationOptions = {}; // the propagation task's options (stop rule, frame step); its defaults if empty
    this.info = null;
    this.classes = { 1: { label: 'label' } };
    this.segment = 1; // the class prompts label: its segment index is its label value
    this.grids = new Map();
    this.answerGrids = new Map(); // series → the server's NRRD grid, as its answers carry it (for saving)
    this.layouts = new Map(); // series → layout, confirmed by the server's answers
    this.prompts = null;
    this.history = []; // { prompt, prompts, write, replaced } newest last
    this.running = null;
    this.lastAnswer = null;
    this.sent = []; // the last requests, oldest first (tests replay them; a developer reads them)
    this.resetNext = false; // after an undo the server's memory of this plane is ahead of the viewer
  }

  setInfo(info) {
    this.info = info;
    this.classes = classesOf(info);
    this.segment = Number(Object.keys(this.classes)[0]);
  }

  get label() {
    return this.classes[this.segment]?.label ?? 'label';
  }

  /** The active viewport, its cornerstone viewport, its display set and that series' grid. */
  activeView() {
    const { viewportGridService, cornerstoneViewportService, displaySetService } = this.services;
    const viewportId = viewportGridService.getActiveViewportId();
    const viewport = cornerstoneViewportService.getCornerstoneViewport(viewportId);
    const uids = viewportGridService.getDisplaySetsUIDsForViewport(viewportId) || [];
    const displaySet = uids.map(uid => displaySetService.getDisplaySetByUID(uid)).find(ds => ds?.imageIds?.length);
    if (!viewport || !displaySet) throw new Error('open an image in the active viewport first');
    const grid = this.grid(displaySet);
    return { viewportId, viewport, displaySet, grid, seriesUid: displaySet.SeriesInstanceUID };
  }

  grid(displaySet) {
    const key = displaySet.displaySetInstanceUID;
    if (!this.grids.has(key)) this.grids.set(key, seriesGrid(displaySet.imageIds, window.cornerstone.metaData));
    return this.grids.get(key);
  }

  /** The plane the active view shows: { axis, slice } in the server's grid. */
  currentPlane(view = this.activeView()) {
    const { grid, viewport } = view;
    if (viewport.type === 'stack') {
      return { axis: 2, slice: grid.sliceOf.get(viewport.getCurrentImageId()) ?? 0 };
    }
    const camera = viewport.getCamera();
    const axis = viewAxis(grid, camera.viewPlaneNormal);
    const slice = sliceAt(worldToVoxel(grid, camera.focalPoint)[axis]);
    return { axis, slice: Math.min(Math.max(slice, 0), grid.sizes[axis] - 1) };
  }

  layout(view) {
    return this.layouts.get(view.seriesUid) ?? seriesLayout(view.displaySet, view.grid);
  }

  /** What the server's models offer for the active series: { model: { prompts, propagates, automatic } }. */
  offers() {
    try {
      return offered(this.info, this.layout(this.activeView()));
    } catch {
      return {};
    }
  }

  /** Send ``params`` to ``model`` for the active series; returns the answer and its parsed, checked label. */
  async ask(model, view, params) {
    this.running?.abort();
    const running = new AbortController();
    this.running = running;
    try {
      const answer = await infer(model, view.seriesUid, params, running.signal);
      const nrrd = await parseNrrd(answer.label);
      checkAnswerGrid(view.grid, nrrd, answer.params.layout);
      if (answer.params.layout) this.layouts.set(view.seriesUid, answer.params.layout);
      this.answerGrids.set(view.seriesUid, nrrd);
      const segmentationId = await ensureSegmentation(this.services, view.displaySet, view.viewportId, this.classes);
      return { answer: answer.params, nrrd, segmentationId };
    } finally {
      if (this.running === running) this.running = null;
    }
  }

  /** The prompt a mark stands for, in voxels of the active series: { prompt, axis, slice } or an error. */
  promptOf(kind, annotation, view) {
    const { grid } = view;
    const axis = view.viewport.type === 'stack' ? 2 : viewAxis(grid, view.viewport.getCamera().viewPlaneNormal);
    const toVoxel = world => {
      const voxel = worldToVoxel(grid, world);
      // A stack shows one image at a time: the slice is that image's (frames of a clip share one position).
      const imageId = annotation.metadata?.referencedImageId;
      if (view.viewport.type === 'stack' && grid.sliceOf.has(imageId)) voxel[2] = grid.sliceOf.get(imageId);
      return voxel;
    };
    const points = annotation.data.handles.points;
    const prompt = { uid: annotation.annotationUID, kind };
    if (kind === 'box') prompt.corners = points.map(toVoxel);
    else prompt.voxel = toVoxel(points[0]);
    // A volume view's prompts all lie on the plane it shows: its slice, not each mark's own rounding (marks on one
    // plane half way between two slices would otherwise fall on either side of it by float noise).
    const slice = view.viewport.type === 'stack'
      ? Math.round((kind === 'box' ? prompt.corners[0] : prompt.voxel)[axis])
      : sliceAt(worldToVoxel(grid, view.viewport.getCamera().focalPoint)[axis]);
    if (slice < 0 || slice >= grid.sizes[axis]) throw new Error('the prompt lies outside the image');
    return { prompt, axis, slice };
  }

  /** A finished prompt mark (include/exclude point, box) from the tools. */
  async addPrompt(kind, annotation) {
    let view;
    let placed;
    try {
      view = this.activeView();
      placed = this.promptOf(kind, annotation, view);
    } catch (error) {
      removeMarks([annotation.annotationUID]);
      this.report('error', error.message);
      return;
    }
    const { prompt, axis, slice } = placed;
    if (!this.prompts || !this.prompts.matches(view.seriesUid, axis, slice, this.segment)) {
      this.prompts = new PromptSet(view.seriesUid, axis, slice, this.segment);
    }
    const replaced = this.prompts.add(kind, prompt);
    if (replaced) setMarksVisible([replaced.uid], false);
    const entry = { prompt, prompts: this.prompts, write: null, replaced };
    this.history.push(entry);
    if (this.live) await this.run(entry);
    else this.report('done', 'prompt added: press Run');
  }

  /** A prompt mark the user dragged to a new place: the prompt follows it and, live, the plane is segmented again
   *  (Undo then takes back that new mask; the mark stays where it was put). */
  async movePrompt(kind, annotation) {
    const entry = this.history.find(e => e.prompt?.uid === annotation.annotationUID);
    if (!entry || entry.prompts !== this.prompts) return; // a mark of an earlier plane: kept as it was drawn
    let placed;
    try {
      placed = this.promptOf(kind, annotation, this.activeView());
    } catch (error) {
      this.report('error', error.message);
      return;
    }
    if (placed.axis !== this.prompts.axis || placed.slice !== this.prompts.slice) return;
    const voxels = prompt => JSON.stringify((prompt.corners ?? [prompt.voxel]).map(v => v.map(Math.round)));
    if (voxels(placed.prompt) === voxels(entry.prompt)) return; // not moved by a whole voxel (or just drawn)
    Object.assign(entry.prompt, placed.prompt);
    const moved = { prompt: null, prompts: null, write: null, what: 'moved prompt' };
    this.history.push(moved);
    if (this.live) await this.run(moved);
  }

  /** Segment the current plane from its prompts and draw the answer. */
  async run(entry = this.history[this.history.length - 1]) {
    const prompts = this.prompts;
    if (!prompts || prompts.isEmpty) {
      this.report('error', 'place a point or draw a box first');
      return;
    }
    const params = {
      ...prompts.params(), label: this.classes[prompts.segment]?.label ?? this.label, client_id: this.clientId,
      result_extension: '.nrrd', result_compress: true,
    };
    if (this.resetNext) params.reset_state = true;
    this.sent = [...this.sent.slice(-49), params];
    const started = performance.now();
    this.report('busy', 'segmenting …');
    try {
      const view = this.activeView();
      const { answer, nrrd, segmentationId } = await this.ask(INTERACTIVE_MODEL, view, params);
      const segment = prompts.segment;
      const write = writeAnswer(segmentationId, view.grid, nrrd.data, {
        axis: answer.axis, index: answer.slice, segmentOf: () => segment, replaced: new Set([segment]),
      });
      if (entry && !entry.write) entry.write = write;
      this.resetNext = false;
      const elapsed = Math.round(performance.now() - started);
      this.lastAnswer = { params, answer, elapsedMs: elapsed };
      const iou = answer.predicted_iou;
      this.report('done', `${this.classes[segment]?.label}: mask on ${planeName(answer.layout, params.axis)} ` +
        `${params.slice + 1}` + (iou !== undefined ? `, predicted IoU ${iou.toFixed(2)}` : '') + ` (${elapsed} ms)`);
    } catch (error) {
      if (error.name !== 'AbortError') this.report('error', error.message);
    }
  }

  /** Record a whole-volume write (propagation, automatic) so Undo takes it back. */
  remember(write, what) {
    this.history.push({ prompt: null, prompts: null, write, what });
  }

  /** Take back the last action: a prompt's mark goes (a box it replaced comes back) and the labelmap returns
   *  to what it was before it. */
  undo() {
    const entry = this.history.pop();
    if (!entry) {
      this.report('error', 'nothing to undo');
      return;
    }
    if (entry.prompt) {
      entry.prompts.remove(entry.prompt);
      removeMarks([entry.prompt.uid]);
      if (entry.replaced) {
        entry.prompts.add('box', entry.replaced);
        setMarksVisible([entry.replaced.uid], true);
      }
      this.prompts = entry.prompts;
      this.resetNext = true;
    }
    if (entry.write) undoWrite(entry.write);
    this.report('done', entry.what ? `${entry.what} undone` : 'last prompt undone');
  }

  /** Remove every prompt mark (the labelmap stays). */
  clearPrompts() {
    const marks = this.history.flatMap(entry => [entry.prompt?.uid, entry.replaced?.uid]).filter(Boolean);
    removeMarks(marks);
    this.history = this.history.filter(entry => !entry.prompt);
    this.prompts = null;
    this.report('done', 'prompts cleared');
  }
}
