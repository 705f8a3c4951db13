from .focal_loss import (FocalLoss, cls_maps_to_rows, focal_loss_sum,
                         sigmoid_focal_loss)

__all__ = [
    'FocalLoss', 'focal_loss_sum', 'sigmoid_focal_loss', 'cls_maps_to_rows'
]
