// The voxel grid the server uses for a series, rebuilt from the viewer's image metadata:
// i runs along a row (the image's columns), j down the columns (its rows), k over the images in the order of
// their position along the normal (frames of a clip, which share one position, keep their order).
// Prompts go world → voxel through this grid on any view (axial, sagittal, coronal, a radiograph, a frame).

const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const scale = (a, s) => a.map(v => v * s);
const minus = (a, b) => a.map((v, n) => v - b[n]);

function inverse3(m) {
  // m: three column vectors; returns rows of the inverse.
  const [a, b, c] = m;
  const det = dot(a, cross(b, c));
  if (!Number.isFinite(det) || Math.abs(det) < 1e-12) throw new Error('the series has a degenerate geometry');
  return [cross(b, c), cross(c, a), cross(a, b)].map(row => scale(row, 1 / det));
}

/** The grid of a series from its image ids (any order) and cornerstone's metadata provider. */
export function seriesGrid(imageIds, metaData) {
  const planes = imageIds.map(imageId => ({ imageId, plane: metaData.get('imagePlaneModule', imageId) || {} }));
  const first = planes[0].plane;
  const rowCosines = (first.rowCosines || [1, 0, 0]).map(Number);
  const columnCosines = (first.columnCosines || [0, 1, 0]).map(Number);
  const normal = cross(rowCosines, columnCosines);
  const position = p => (p.plane.imagePositionPatient ? dot(p.plane.imagePositionPatient.map(Number), normal) : 0);
  const ordered = planes.map((p, n) => ({ ...p, n, along: position(p) }))
    .sort((a, b) => a.along - b.along || a.n - b.n);
  const gaps = ordered.slice(1).map((p, n) => p.along - ordered[n].along);
  const placed = gaps.length > 0 && gaps.every(g => g > 1e-6);
  const sliceSpacing = placed ? gaps.reduce((a, b) => a + b, 0) / gaps.length : 1;
  const axes = [
    scale(rowCosines, Number(first.columnPixelSpacing) || 1),
    scale(columnCosines, Number(first.rowPixelSpacing) || 1),
    scale(normal, sliceSpacing),
  ];
  const origin = (ordered[0].plane.imagePositionPatient || [0, 0, 0]).map(Number);
  return {
    sizes: [Number(first.columns), Number(first.rows), ordered.length],
    sliceSpacingKnown: placed,
    origin,
    axes,
    inverse: inverse3(axes),
    imageIds: ordered.map(p => p.imageId), // imageIds[k]: the image holding slice k
    sliceOf: new Map(ordered.map((p, k) => [p.imageId, k])),
  };
}

/** A world point → continuous voxel index [i, j, k] (voxel centres at whole numbers). */
export function worldToVoxel(grid, world) {
  const offset = minus(world, grid.origin);
  return grid.inverse.map(row => dot(row, offset));
}

/** The grid axis (0 = i, 1 = j, 2 = k) a view looks along, from the camera's view-plane normal. */
export function viewAxis(grid, viewPlaneNormal) {
  const weights = grid.axes.map(axis => Math.abs(dot(axis, viewPlaneNormal)) / Math.hypot(...axis));
  return weights.indexOf(Math.max(...weights));
}

/** Refuse to draw an answer whose grid is not the one prompts were mapped with. */
export function checkAnswerGrid(grid, nrrd, layout) {
  const same = grid.sizes.every((size, n) => size === nrrd.sizes[n]);
  if (!same) {
    throw new Error(`the server's image is ${nrrd.sizes.join('×')} voxels, the viewer's ${grid.sizes.join('×')}: ` +
      'reload the study; if it persists the series changed on the PACS');
  }
  if (layout === 'volume') {
    const tolerance = 0.01 * Math.hypot(...grid.axes[0]) + 1e-3;
    const apart = Math.hypot(...minus(nrrd.origin, grid.origin));
    const turned = grid.axes.some((axis, n) => Math.hypot(...minus(axis, nrrd.directions[n])) > tolerance * 10);
    if (apart > tolerance * 10 || turned) {
      throw new Error('the server placed this series differently in space than the viewer does; the mask is not drawn');
    }
  }
}
