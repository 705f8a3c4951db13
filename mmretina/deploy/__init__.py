"""Every runtime behind one backend interface (a list of BGR images in, one
``InstanceData`` per image out): PyTorch (:mod:`.pytorch`), onnxruntime and
OpenVINO (:mod:`.runtime`, :mod:`.backends`); ONNX export (:mod:`.export`),
evaluation of an exported model with the config's datasets and metrics,
and INT8 quantization calibrated on the user's images.

Importing this package is cheap; onnx / onnxruntime / openvino are
imported when used (``pip install -r requirements/deploy.txt``).
"""
from .backends import (BACKENDS, ExportedDetector, OpenVINOSession,
                       build_backend, check_exported_model)

__all__ = [
    'BACKENDS', 'ExportedDetector', 'OpenVINOSession',
    'build_backend', 'check_exported_model'
]
