"""Detection over images and rasters: one tiled-detection loop
(:mod:`.tiled`: windows -> batches -> a backend -> merge), the merge rules
(:mod:`.merge`), the run around it (:mod:`.run`: inputs and the order of
the steps; :mod:`.records`: what lets a run resume; :mod:`.outputs`: the
files written) and progress lines (:mod:`.progress`). The backends
(PyTorch, onnxruntime, OpenVINO) are :mod:`mmretina.deploy`'s."""
from .run import InferenceRun, list_inputs
from .tiled import (LazyBackend, TiledInferencer, detect_raster,
                    detect_windows, load_image)

__all__ = [
    'InferenceRun', 'list_inputs', 'LazyBackend', 'TiledInferencer',
    'detect_raster', 'detect_windows', 'load_image'
]
