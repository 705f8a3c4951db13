from .check_finite_loss_hook import CheckFiniteLossHook, non_finite_message

__all__ = ['CheckFiniteLossHook', 'non_finite_message']
