"""Automatic (semantic) segmentation: a UNETR decoder on the frozen MedicoSAM encoder, its training on
accepted labels, and its versions."""
