// The viewer's labelmap for one series: created once per series with a segment per class, written from the
// server's answers (one plane, or the whole volume), with what each write replaced kept so it can be undone.

const SEGMENTATION_PREFIX = 'medicosam-';

/**
 * The MedicoSAM segmentation of ``displaySet`` (created and shown in ``viewportId`` on first use). ``classes`` maps
 * segment index → { label, color: [r, g, b] }; the index is the class's label value on the server.
 */
export async function ensureSegmentation(services, displaySet, viewportId, classes) {
  const { segmentationService } = services;
  const segmentationId = SEGMENTATION_PREFIX + displaySet.displaySetInstanceUID;
  if (!segmentationService.getSegmentation(segmentationId)) {
    const segments = Object.fromEntries(Object.entries(classes).map(([index, { label }], n) => [
      index, { label, active: n === 0 },
    ]));
    await segmentationService.createLabelmapForDisplaySet(displaySet, { segmentationId, label: 'MedicoSAM', segments });
  }
  const shown = segmentationService.getSegmentationRepresentations(viewportId, { segmentationId });
  if (!shown?.length) {
    await segmentationService.addSegmentationRepresentation(viewportId, { segmentationId });
    for (const [index, { color }] of Object.entries(classes)) {
      if (color) segmentationService.setSegmentColor(viewportId, segmentationId, Number(index), [...color, 255]);
    }
  }
  return segmentationId;
}

/** Add segment ``value + offset`` named ``nameOf(value)`` for every value in ``answer`` the segmentation lacks. */
export function ensureSegments(services, segmentationId, answer, offset, nameOf) {
  const { segmentationService } = services;
  const existing = new Set(Object.keys(segmentationService.getSegmentation(segmentationId)?.segments ?? {}).map(Number));
  const values = new Set();
  for (let n = 0; n < answer.length; n++) if (answer[n]) values.add(answer[n]);
  for (const value of [...values].sort((a, b) => a - b)) {
    if (existing.has(value + offset)) continue;
    segmentationService.addSegment(segmentationId, { segmentIndex: value + offset, label: nameOf(value) });
  }
}

/** Labelmap pixel arrays by slice k of ``grid`` (labelmap images follow their source images). */
function labelmapSlices(segmentationId, grid) {
  const { cache } = window.cornerstone;
  const segmentation = window.cornerstoneTools.segmentation.state.getSegmentation(segmentationId);
  const byReference = new Map();
  for (const imageId of segmentation.representationData.Labelmap.imageIds) {
    const image = cache.getImage(imageId);
    byReference.set(image.referencedImageId, image.voxelManager.getScalarData());
  }
  return grid.imageIds.map(imageId => {
    const pixels = byReference.get(imageId);
    if (!pixels) throw new Error('the labelmap has no image for one of the series\' slices');
    return pixels;
  });
}

/**
 * Write ``answer`` (the server's label, whole volume, i fastest) into the labelmap, on plane ``index`` along
 * ``axis`` or everywhere (``axis`` null). ``segmentOf(value)`` gives the segment an answer value becomes; voxels
 * of the ``replaced`` segments the answer leaves empty are cleared; other segments are kept. Returns an undo
 * record holding only the voxels that changed.
 */
export function writeAnswer(segmentationId, grid, answer, { axis = null, index = 0, segmentOf, replaced }) {
  const slices = labelmapSlices(segmentationId, grid);
  const [ni, nj, nk] = grid.sizes;
  const changedSlice = [];
  const changedOffset = [];
  const before = [];
  for (let k = 0; k < nk; k++) {
    if (axis === 2 && k !== index) continue;
    const pixels = slices[k];
    for (let j = 0; j < nj; j++) {
      if (axis === 1 && j !== index) continue;
      for (let i = 0; i < ni; i++) {
        if (axis === 0 && i !== index) continue;
        const offset = j * ni + i;
        const value = answer[k * ni * nj + offset];
        const current = pixels[offset];
        const target = value ? segmentOf(value) : (replaced.has(current) ? 0 : current);
        if (target !== current) {
          changedSlice.push(k);
          changedOffset.push(offset);
          before.push(current);
          pixels[offset] = target;
        }
      }
    }
  }
  modified(segmentationId);
  return {
    segmentationId, grid, changed: before.length,
    slices: Int32Array.from(changedSlice), offsets: Int32Array.from(changedOffset), before: Uint8Array.from(before),
  };
}

/** Put back what ``record`` replaced. */
export function undoWrite(record) {
  const slices = labelmapSlices(record.segmentationId, record.grid);
  for (let n = 0; n < record.before.length; n++) slices[record.slices[n]][record.offsets[n]] = record.before[n];
  modified(record.segmentationId);
}

/** The whole labelmap in the server's voxel order (i fastest, then j, then k), for saving. */
export function labelmapVolume(segmentationId, grid) {
  const slices = labelmapSlices(segmentationId, grid);
  const [ni, nj] = grid.sizes;
  const volume = new Uint8Array(ni * nj * slices.length);
  slices.forEach((pixels, k) => volume.set(pixels.subarray(0, ni * nj), k * ni * nj));
  return volume;
}

function modified(segmentationId) {
  window.cornerstoneTools.segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(segmentationId);
}
