// The layout of an open series as the server will see it (volume, cine, stack, plane), from the viewer's
// metadata, so the panel offers only what the server's models can do with it. The first answer's ``layout``
// confirms it.

export function seriesLayout(displaySet, grid) {
  const count = grid.imageIds.length;
  if (count <= 1) return 'plane';
  const instances = displaySet.instances?.length ?? count;
  const placed = grid.sliceSpacingKnown; // distinct positions along the normal
  if (instances === 1) return placed ? 'volume' : 'cine'; // one multi-frame instance
  return placed ? 'volume' : 'stack';
}

/** What ``info.capabilities`` lets each model do for ``layout``: { model: { prompts, propagates, automatic } }. */
export function offered(info, layout) {
  const table = info?.capabilities ?? {};
  return Object.fromEntries(Object.entries(table)
    .filter(([, entry]) => entry.layouts?.[layout])
    .map(([model, entry]) => [model, entry.layouts[layout]]));
}
