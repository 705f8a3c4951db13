from .check_finite_loss_hook import (CheckFiniteLossHook,
                                     ensure_finite_loss_guard,
                                     non_finite_message)
from .num_classes_check_hook import NumClassesCheckHook

__all__ = [
    'CheckFiniteLossHook', 'non_finite_message', 'ensure_finite_loss_guard',
    'NumClassesCheckHook'
]
