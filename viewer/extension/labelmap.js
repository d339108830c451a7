// The viewer's labelmap for one series: created once per series, written one plane at a time from the server's
// answer, with what each write replaced kept so it can be undone.

const SEGMENTATION_PREFIX = 'medicosam-';

/** The MedicoSAM segmentation of ``displaySet`` (created and shown in ``viewportId`` on first use). */
export async function ensureSegmentation(services, displaySet, viewportId, segments) {
  const { segmentationService } = services;
  const segmentationId = SEGMENTATION_PREFIX + displaySet.displaySetInstanceUID;
  if (!segmentationService.getSegmentation(segmentationId)) {
    await segmentationService.createLabelmapForDisplaySet(displaySet, {
      segmentationId, label: 'MedicoSAM', segments,
    });
  }
  const shown = segmentationService.getSegmentationRepresentations(viewportId, { segmentationId });
  if (!shown?.length) await segmentationService.addSegmentationRepresentation(viewportId, { segmentationId });
  return segmentationId;
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

/** The voxels of plane ``index`` along ``axis`` as (slice, offset) pairs, in the answer's voxel order. */
function planeVoxels(grid, axis, index) {
  const [ni, nj, nk] = grid.sizes;
  const voxels = [];
  for (let k = 0; k < nk; k++) {
    if (axis === 2 && k !== index) continue;
    for (let j = 0; j < nj; j++) {
      if (axis === 1 && j !== index) continue;
      for (let i = 0; i < ni; i++) {
        if (axis === 0 && i !== index) continue;
        voxels.push([k, j * ni + i, (k * nj + j) * ni + i]);
      }
    }
  }
  return voxels;
}

/**
 * Draw segment ``segmentIndex`` on one plane from ``mask`` (the server's label, whole volume): voxels in the mask
 * take the segment, voxels of that segment outside it are cleared, other segments are kept. Returns an undo
 * record.
 */
export function writePlane(segmentationId, grid, axis, index, mask, segmentIndex) {
  const slices = labelmapSlices(segmentationId, grid);
  const voxels = planeVoxels(grid, axis, index);
  const before = new Uint8Array(voxels.length);
  voxels.forEach(([k, offset, source], n) => {
    const pixels = slices[k];
    before[n] = pixels[offset];
    if (mask[source]) pixels[offset] = segmentIndex;
    else if (pixels[offset] === segmentIndex) pixels[offset] = 0;
  });
  modified(segmentationId);
  return { segmentationId, grid, voxels, before };
}

/** Put back what ``record`` replaced. */
export function undoWrite(record) {
  const slices = labelmapSlices(record.segmentationId, record.grid);
  record.voxels.forEach(([k, offset], n) => { slices[k][offset] = record.before[n]; });
  modified(record.segmentationId);
}

function modified(segmentationId) {
  window.cornerstoneTools.segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(segmentationId);
}
