"""MONAI Label tasks over the core: inference, training, next sample, and what they write and audit."""
