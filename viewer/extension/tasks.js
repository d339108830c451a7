// Whole-image actions of the panel: propagation through slices or frames, the automatic tasks, accepting the
// label (saved on the server, which writes it to the PACS as DICOM SEG) and opening the next sample.

import { writeAnswer, labelmapVolume, ensureSegments } from './labelmap.js';
import { writeNrrd } from './nrrd.js';
import { saveLabel, nextSample, studyOfSeries } from './server.js';
import { PROPAGATION_MODEL, SEMANTIC_MODEL } from './controller.js';

const RESULT = { result_extension: '.nrrd', result_compress: true };
const STRATEGIES = ['medicosam_uncertainty', 'random', 'first'];

/** The current plane's prompts, propagated by the server through the volume's slices or the clip's frames. */
export async function propagate(controller) {
  const prompts = controller.prompts;
  if (!prompts || prompts.isEmpty) {
    controller.report('error', 'place a point or draw a box on the slice or frame to start from');
    return;
  }
  const view = controller.activeView();
  const along = controller.offers()[PROPAGATION_MODEL]?.propagates;
  if (!along) {
    controller.report('error', `this ${controller.layout(view)} image has no slices or frames to propagate through`);
    return;
  }
  const params = { ...prompts.params(), label: controller.classes[prompts.segment]?.label, client_id: controller.clientId,
    ...RESULT, ...controller.propagationOptions };
  delete params.slice; // the propagation task starts from the prompted slice itself
  controller.report('busy', `propagating through the ${along} …`);
  const started = performance.now();
  try {
    const { answer, nrrd, segmentationId } = await controller.ask(PROPAGATION_MODEL, view, params);
    const segment = prompts.segment;
    const write = writeAnswer(segmentationId, view.grid, nrrd.data, {
      segmentOf: () => segment, replaced: new Set([segment]),
    });
    controller.remember(write, 'propagation');
    controller.lastAnswer = { params, answer, elapsedMs: Math.round(performance.now() - started) };
    const [low, high] = answer.slice_range ?? [0, 0];
    const doubtful = answer.low_confidence_slices?.length ?? 0;
    controller.report('done', `propagated over ${along} ${low + 1}–${high + 1}` +
      (doubtful ? `; check ${doubtful} with low confidence: ${answer.low_confidence_slices.map(s => s + 1).join(', ')}` : ''));
  } catch (error) {
    if (error.name !== 'AbortError') controller.report('error', error.message);
  }
}

/** Instances come from the semantic model's proposals once one is trained, else from a point grid on the slice
 *  or frame on screen. */
function instanceParams(controller, view) {
  if (controller.info?.models?.[SEMANTIC_MODEL]?.model_version != null) return { mode: 'semantic' };
  return { mode: 'everything', ...controller.currentPlane(view) };
}

/** An automatic task (``medicosam_semantic``, ``medicosam_instances``) over the whole image. */
export async function automatic(controller, model) {
  const view = controller.activeView();
  const params = { ...RESULT, ...(model === SEMANTIC_MODEL ? {} : instanceParams(controller, view)) };
  const where = params.mode === 'everything' ? 'this slice' : 'the whole image';
  controller.report('busy', `${model.replace('medicosam_', '')} segmentation of ${where} …`);
  const started = performance.now();
  try {
    const { answer, nrrd, segmentationId } = await controller.ask(model, view, params);
    // Semantic classes keep their label values (the segments of the same names); instances are numbered after
    // the classes, so object 1 never paints over class 1.
    const classes = controller.classes;
    const semantic = model === SEMANTIC_MODEL;
    const offset = semantic ? 0 : Math.max(0, ...Object.keys(classes).map(Number));
    ensureSegments(controller.services, segmentationId, nrrd.data, offset, value =>
      (semantic ? classes[value]?.label ?? `class ${value}` : `object ${value}`));
    const write = writeAnswer(segmentationId, view.grid, nrrd.data, {
      segmentOf: value => value + offset, replaced: semantic ? new Set(Object.keys(classes).map(Number)) : new Set(),
    });
    controller.remember(write, `${model.replace('medicosam_', '')} segmentation`);
    controller.lastAnswer = { params, answer, elapsedMs: Math.round(performance.now() - started) };
    const names = Object.keys(answer.label_names ?? {});
    controller.report('done', `${model.replace('medicosam_', '')}: ${write.changed} voxels` +
      (names.length ? ` (${names.join(', ')})` : '') + (answer.model_version ? `, model ${answer.model_version}` : ''));
  } catch (error) {
    if (error.name !== 'AbortError') controller.report('error', error.message);
  }
}

/** Save the active series' labelmap as its final label; the server stores it and writes it to the PACS. */
export async function accept(controller) {
  const view = controller.activeView();
  const segmentationId = `medicosam-${view.displaySet.displaySetInstanceUID}`;
  if (!controller.services.segmentationService.getSegmentation(segmentationId)) {
    controller.report('error', 'nothing to accept: segment something first');
    return;
  }
  const grid = controller.answerGrids.get(view.seriesUid) ?? {
    sizes: view.grid.sizes, origin: view.grid.origin, directions: view.grid.axes,
  };
  controller.report('busy', 'saving the label …');
  try {
    const label = await writeNrrd(grid, labelmapVolume(segmentationId, view.grid));
    const labels = Object.entries(controller.classes).map(([value, c]) => ({ name: c.label, idx: Number(value) }));
    const saved = await saveLabel(view.seriesUid, label, labels);
    controller.lastSaved = saved;
    controller.report('done', 'label accepted and saved' + (saved?.retraining ? '; retraining started' : ''));
  } catch (error) {
    controller.report('error', error.message);
  }
}

/** Ask the server's active-learning strategy for the next image and open its study. */
export async function openNext(controller) {
  const available = Object.keys(controller.info?.strategies ?? {});
  const strategies = STRATEGIES.filter(s => available.includes(s));
  controller.report('busy', 'asking for the next image …');
  let lastError = null;
  for (const strategy of strategies) {
    try {
      const sample = await nextSample(strategy);
      if (!sample?.id) throw new Error('every image is labelled: nothing left to annotate');
      const study = await studyOfSeries(sample.id);
      const query = new URLSearchParams({ StudyInstanceUIDs: study, initialSeriesInstanceUID: sample.id });
      window.location.assign(`${window.location.pathname.replace(/\/[^/]*$/, '')}/segmentation?${query}`);
      return;
    } catch (error) {
      lastError = error;
    }
  }
  controller.report('error', lastError ? lastError.message : 'the server offers no active-learning strategy');
}
