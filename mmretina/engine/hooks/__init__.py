from .check_finite_loss_hook import CheckFiniteLossHook, non_finite_message
from .num_classes_check_hook import NumClassesCheckHook

__all__ = [
    'CheckFiniteLossHook', 'non_finite_message', 'NumClassesCheckHook'
]
