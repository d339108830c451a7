"""Prompted segmentation: request prompts → a slice's mask (with the previous logits), and the 3D walk that
propagates it through the volume."""
