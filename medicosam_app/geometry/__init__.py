"""Volumes and their geometry: reading images with their direction and spacing, and the one mapping between
voxels, display-oriented slice pixels and SAM's 1024² frame."""
