from .retina_head import RetinaHead

__all__ = ['RetinaHead']
