from .assigners import MaxIoUAssigner
from .prior_generators import AnchorGenerator

__all__ = ['AnchorGenerator', 'MaxIoUAssigner']
