"""Automatic instance segmentation, CellSAM's way: something proposes where objects are, MedicoSAM draws them.

- :mod:`.mask_generator` — the ``everything`` mode: a grid of point prompts on one slice, filtered by the
  model's predicted IoU and mask stability, duplicates removed by non-maximum suppression.
- :mod:`.proposals` — where objects are, from the semantic decoder's components or from boxes a request gives.
- :mod:`.drawing` — one proposal → one 3D instance, slice by slice, with 3D propagation's stop rules.
- :mod:`.instance_label` — instances → one label volume (values 1..N) and the JSON that describes each.
- :mod:`.segmenter` — the modes end to end on a volume, sharing the interactive tasks' embedding cache.
"""
