"""Deployment of exported models: runtimes (onnxruntime, OpenVINO) behind
one interface, evaluation of an exported model with the config's datasets
and metrics, and INT8 quantization calibrated on the user's images.

Importing this package is cheap; onnx / onnxruntime / openvino are
imported when used (``pip install -r requirements/deploy.txt``).
"""
from .backends import (BACKENDS, ExportedDetector, OpenVINOSession,
                       build_backend, check_exported_model)

__all__ = [
    'BACKENDS', 'ExportedDetector', 'OpenVINOSession', 'build_backend',
    'check_exported_model'
]
