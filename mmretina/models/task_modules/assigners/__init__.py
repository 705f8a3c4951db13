from .max_iou_assigner import MaxIoUAssigner
from .rotated_overlaps import RBboxOverlaps2D

__all__ = ['MaxIoUAssigner', 'RBboxOverlaps2D']
