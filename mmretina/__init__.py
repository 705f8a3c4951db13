"""mmretina: RetinaNet (Lin et al., "Focal Loss for Dense Object Detection")
for MMDetection 3.x. Importing the package registers its modules in the
``mmretina`` scope."""
from .version import __version__
from . import models  # noqa: F401  (registers modules)
from . import datasets, engine  # noqa: F401  (registers modules)
from .registry import DATASETS, HOOKS, MODELS, TASK_UTILS, TRANSFORMS

__all__ = [
    '__version__', 'MODELS', 'TASK_UTILS', 'DATASETS', 'TRANSFORMS', 'HOOKS'
]

# torch >= 2.6 refuses full mmengine checkpoints by default: mmengine's
# loader of local files gets exactly the types they hold, within its own
# loads only (see mmretina/engine/checkpoint.py).
from .engine.checkpoint import install_checkpoint_loader  # noqa: E402

install_checkpoint_loader()
