// Prompts on one plane (series, axis, slice) for one class (segment), as the server takes them: voxel indices, a box as [i0, i1, j0, j1,
// k0, k1]. A prompt on another plane starts a new set; a second box replaces the first.

export class PromptSet {
  constructor(seriesUid, axis, slice, segment) {
    Object.assign(this, { seriesUid, axis, slice, segment, include: [], exclude: [], box: null });
  }

  matches(seriesUid, axis, slice, segment) {
    return this.seriesUid === seriesUid && this.axis === axis && this.slice === slice && this.segment === segment;
  }

  /** Add a prompt; returns the mark it replaces (a previous box), if any. */
  add(kind, prompt) {
    if (kind === 'box') {
      const replaced = this.box;
      this.box = prompt;
      return replaced;
    }
    this[kind].push(prompt);
    return null;
  }

  remove(prompt) {
    for (const kind of ['include', 'exclude']) this[kind] = this[kind].filter(p => p !== prompt);
    if (this.box === prompt) this.box = null;
  }

  get isEmpty() {
    return !this.include.length && !this.exclude.length && !this.box;
  }

  /** The request's prompt fields: voxel indices rounded to whole voxels on this plane. */
  params() {
    const onPlane = voxel => voxel.map((v, axis) => (axis === this.axis ? this.slice : Math.round(v)));
    const params = {
      foreground: this.include.map(p => onPlane(p.voxel)),
      background: this.exclude.map(p => onPlane(p.voxel)),
      axis: this.axis,
      slice: this.slice,
    };
    if (this.box) {
      const corners = this.box.corners.map(onPlane);
      params.roi = [0, 1, 2].flatMap(axis => [
        Math.min(...corners.map(c => c[axis])), Math.max(...corners.map(c => c[axis])),
      ]);
    }
    return params;
  }
}
