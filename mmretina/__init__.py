"""mmretina: RetinaNet (Lin et al., "Focal Loss for Dense Object Detection")
for MMDetection 3.x. Importing the package registers its modules in the
``mmretina`` scope."""
from .version import __version__
from . import models  # noqa: F401  (registers modules)
from .registry import MODELS, TASK_UTILS

__all__ = ['__version__', 'MODELS', 'TASK_UTILS']
