// The layout of an open series as the server will see it (volume, cine, stack, plane), from the viewer's
// metadata, so the panel offers only what the server's models can do with it. The first answer's ``layout``
// confirms it.

export function seriesLayout(displaySet, grid) {
  const count = grid.imageIds.length;
  if (count <= 1) return 'plane';
  const instances = displaySet.instances ?? [];
  if (instances.length === 1) {
    // One multi-frame instance: a volume only if its frames are placed in space (enhanced CT/MR/PET, tomosynthesis);
    // cornerstone invents positions for the frames of a clip, so its grid cannot tell.
    const frames = instances[0].PerFrameFunctionalGroupsSequence;
    return Array.isArray(frames) && frames[0]?.PlanePositionSequence ? 'volume' : 'cine';
  }
  return grid.sliceSpacingKnown ? 'volume' : 'stack'; // distinct positions along the normal, or pictures
}

/** What ``info.capabilities`` lets each model do for ``layout``: { model: { prompts, propagates, automatic } }. */
export function offered(info, layout) {
  const table = info?.capabilities ?? {};
  return Object.fromEntries(Object.entries(table)
    .filter(([, entry]) => entry.layouts?.[layout])
    .map(([model, entry]) => [model, entry.layouts[layout]]));
}
