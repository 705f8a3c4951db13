from .bf16_optim_wrapper import BF16OptimWrapper, bf16_enabled, bf16_supported

__all__ = ['BF16OptimWrapper', 'bf16_enabled', 'bf16_supported']
