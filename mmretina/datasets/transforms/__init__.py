from .blur import RandomGaussianBlur
from .loading import LoadImageFromFile

__all__ = ['LoadImageFromFile', 'RandomGaussianBlur']
