"""MedicoSAM Label core: MedicoSAM inference for medical volumes, usable without any server.

Nothing in this package imports monailabel; ``apps/medicosam`` adapts it to MONAI Label.
"""

__version__ = "0.1.0"
