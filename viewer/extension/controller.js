// One annotator's MedicoSAM session in the viewer: a prompt mark → voxels → the server → the labelmap.
// Keeps the prompts of the current plane, the undo history and the grid of each open series.

import { parseNrrd } from './nrrd.js';
import { seriesGrid, worldToVoxel, viewAxis, checkAnswerGrid } from './grid.js';
import { infer } from './server.js';
import { ensureSegmentation, writePlane, undoWrite } from './labelmap.js';
import { PromptSet } from './prompts.js';
import { removeMarks } from './tools.js';

export const INTERACTIVE_MODEL = 'medicosam_interactive';

function planeName(layout, axis) {
  if (layout === 'cine') return 'frame';
  if (layout === 'plane' || layout === 'stack') return 'image';
  return `${['sagittal', 'coronal', 'axial'][axis]} slice`;
}

export class Controller {
  constructor(services, report) {
    this.services = services;
    this.report = report; // (kind: 'busy' | 'done' | 'error', message) → shown in the panel
    this.clientId = `ohif-${crypto.randomUUID()}`;
    this.live = true;
    this.label = 'label';
    this.grids = new Map();
    this.prompts = null;
    this.history = []; // { prompt, write } newest last
    this.running = null;
    this.lastAnswer = null;
    this.sent = []; // the last requests, oldest first (tests replay them; a developer reads them)
    this.resetNext = false; // after an undo the server's memory of this plane is ahead of the viewer
  }

  /** The active viewport, its cornerstone viewport and its display set. */
  activeView() {
    const { viewportGridService, cornerstoneViewportService, displaySetService } = this.services;
    const viewportId = viewportGridService.getActiveViewportId();
    const viewport = cornerstoneViewportService.getCornerstoneViewport(viewportId);
    const uids = viewportGridService.getDisplaySetsUIDsForViewport(viewportId) || [];
    const displaySet = uids.map(uid => displaySetService.getDisplaySetByUID(uid)).find(ds => ds?.imageIds?.length);
    if (!viewport || !displaySet) throw new Error('open an image in the active viewport first');
    return { viewportId, viewport, displaySet };
  }

  grid(displaySet) {
    const key = displaySet.displaySetInstanceUID;
    if (!this.grids.has(key)) this.grids.set(key, seriesGrid(displaySet.imageIds, window.cornerstone.metaData));
    return this.grids.get(key);
  }

  /** A finished prompt mark (include/exclude point, box) from the tools. */
  async addPrompt(kind, annotation) {
    let view;
    try {
      view = this.activeView();
    } catch (error) {
      removeMarks([annotation.annotationUID]);
      this.report('error', error.message);
      return;
    }
    const grid = this.grid(view.displaySet);
    const axis = view.viewport.type === 'stack' ? 2 : viewAxis(grid, view.viewport.getCamera().viewPlaneNormal);
    const points = annotation.data.handles.points;
    const toVoxel = world => {
      const voxel = worldToVoxel(grid, world);
      // A stack shows one image at a time: the slice is that image's (frames of a clip share one position).
      const imageId = annotation.metadata?.referencedImageId;
      if (view.viewport.type === 'stack' && grid.sliceOf.has(imageId)) voxel[2] = grid.sliceOf.get(imageId);
      return voxel;
    };
    const prompt = { uid: annotation.annotationUID, kind };
    if (kind === 'box') prompt.corners = points.map(toVoxel);
    else prompt.voxel = toVoxel(points[0]);
    const anchor = kind === 'box' ? prompt.corners[0] : prompt.voxel;
    const slice = Math.round(anchor[axis]);
    if (slice < 0 || slice >= grid.sizes[axis]) {
      removeMarks([prompt.uid]);
      this.report('error', 'the prompt lies outside the image');
      return;
    }
    const seriesUid = view.displaySet.SeriesInstanceUID;
    if (!this.prompts || !this.prompts.matches(seriesUid, axis, slice)) {
      this.prompts = new PromptSet(seriesUid, axis, slice);
    }
    const replaced = this.prompts.add(kind, prompt);
    if (replaced) removeMarks([replaced.uid]);
    const entry = { prompt, prompts: this.prompts, write: null };
    this.history.push(entry);
    if (this.live) await this.run(view, entry);
    else this.report('done', 'prompt added: press Run');
  }

  /** Segment the current plane from its prompts and draw the answer. */
  async run(view = this.activeView(), entry = this.history[this.history.length - 1]) {
    const prompts = this.prompts;
    if (!prompts || prompts.isEmpty) {
      this.report('error', 'place a point or draw a box first');
      return;
    }
    const grid = this.grid(view.displaySet);
    const params = {
      ...prompts.params(), label: this.label, client_id: this.clientId,
      result_extension: '.nrrd', result_compress: true,
    };
    if (this.resetNext) params.reset_state = true;
    this.sent = [...this.sent.slice(-49), params];
    this.running?.abort();
    const running = new AbortController();
    this.running = running;
    const started = performance.now();
    this.report('busy', 'segmenting …');
    try {
      const answer = await infer(INTERACTIVE_MODEL, prompts.seriesUid, params, running.signal);
      const nrrd = await parseNrrd(answer.label);
      checkAnswerGrid(grid, nrrd, answer.params.layout);
      const segmentationId = await ensureSegmentation(this.services, view.displaySet, view.viewportId, {
        1: { label: this.label, active: true },
      });
      const write = writePlane(segmentationId, grid, answer.params.axis, answer.params.slice, nrrd.data, 1);
      if (entry) entry.write = entry.write ?? write;
      this.resetNext = false;
      const elapsed = Math.round(performance.now() - started);
      this.lastAnswer = { params, answer: answer.params, elapsedMs: elapsed };
      const iou = answer.params.predicted_iou;
      this.report('done', `mask on ${planeName(answer.params.layout, params.axis)} ${params.slice + 1}` +
        (iou !== undefined ? `, predicted IoU ${iou.toFixed(2)}` : '') + ` (${elapsed} ms)`);
    } catch (error) {
      if (error.name === 'AbortError') return;
      this.report('error', error.message);
    } finally {
      if (this.running === running) this.running = null;
    }
  }

  /** Take back the last prompt: its mark goes, and the labelmap returns to what it was before it. */
  undo() {
    const entry = this.history.pop();
    if (!entry) {
      this.report('error', 'nothing to undo');
      return;
    }
    entry.prompts.remove(entry.prompt);
    removeMarks([entry.prompt.uid]);
    if (entry.write) undoWrite(entry.write);
    this.prompts = entry.prompts;
    this.resetNext = true;
    this.report('done', 'last prompt undone');
  }

  /** Remove every prompt mark (the labelmap stays). */
  clearPrompts() {
    removeMarks(this.history.map(entry => entry.prompt.uid));
    this.history = [];
    this.prompts = null;
    this.report('done', 'prompts cleared');
  }
}
