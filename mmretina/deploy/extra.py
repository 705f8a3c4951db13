"""What the deploy features need installed: the ``deploy`` extra (onnx,
onnxscript, onnxruntime, openvino), imported only when a runtime or the
exporter is used. Every message about a missing one ends with this hint."""

__all__ = ['DEPLOY_INSTALL_HINT']

DEPLOY_INSTALL_HINT = 'pip install -r requirements/deploy.txt'
