from .focal_loss import FocalLoss, focal_loss_sum, sigmoid_focal_loss

__all__ = ['FocalLoss', 'focal_loss_sum', 'sigmoid_focal_loss']
