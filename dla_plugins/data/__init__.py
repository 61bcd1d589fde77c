"""Data helpers of the core: the synthetic shapes every demo and test trains on."""
from .synthetic import SHAPE_CLASSES, ShapesSample, render_shapes

__all__ = ['SHAPE_CLASSES', 'ShapesSample', 'render_shapes']
