"""Boundary detection (the DLA paper's fourth task) in mmseg: BSDS500 data, the boundary loss and the BSDS benchmark.

Registers ``BSDS500Dataset`` (DATASETS), ``LoadBoundaryAnnotations`` (TRANSFORMS), ``WeightedBoundaryLoss``
(MODELS) and ``BoundaryMetric`` (METRICS) in mmseg's registries; the model is the ``DLA`` backbone + ``DLAUpHead`` at
stride 2.
See docs/boundary.md.
"""
from .bsds import BSDS500Dataset, LoadBoundaryAnnotations, consensus_label, read_bsds_boundaries
from .evaluation import edge_nms, evaluate_image, summarize, thin
from .loss import WeightedBoundaryLoss
from .metric import BoundaryMetric

__all__ = ['BSDS500Dataset', 'LoadBoundaryAnnotations', 'WeightedBoundaryLoss', 'BoundaryMetric',
           'consensus_label', 'read_bsds_boundaries', 'edge_nms', 'evaluate_image', 'summarize', 'thin']
