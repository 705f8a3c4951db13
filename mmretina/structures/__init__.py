"""Box structures shared by the models, the analysis and the inference code:
pixel-coordinate (x1, y1, x2, y2) boxes."""
from .boxes import aligned_iou, pairwise_iou

__all__ = ['pairwise_iou', 'aligned_iou']
