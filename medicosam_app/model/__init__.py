"""The model: checkpoints (registry, verified download, safe load), the SAM built from their weights, the
predictor that encodes and decodes, the encoder's speed-ups (fused attention, int8, measured precision choice)
and the provider that loads it all in the background and reports its status."""
