"""One interface over the runtimes that run an mmretina ONNX export, and an
mmengine model that evaluates such a file with the config's test loop.

* :func:`build_backend` returns an :class:`~mmretina.deploy.runtime.
  OrtBackend` whose session is onnxruntime's (``'onnxruntime'``) or
  OpenVINO's (``'openvino'``, through :class:`OpenVINOSession`, which has
  the three methods of onnxruntime's session that ``OrtBackend`` uses).
* :class:`ExportedDetector` (``type='mmretina.ExportedDetector'``) takes
  the test dataloader's batches (images already through the config's test
  pipeline) and returns ``DetDataSample`` s with ``pred_instances`` in
  original image pixels, as a PyTorch detector's ``test_step``: the Runner,
  the datasets and CocoMetric are the checkpoint's (``tools/test.py CONFIG
  MODEL.onnx --backend onnxruntime``).
"""
import os.path as osp
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.model import BaseModel

from mmretina.registry import MODELS
from mmretina.utils.extras import require
from .export import FORMAT_HBOX, FORMAT_RBOX

__all__ = [
    'BACKENDS', 'OpenVINOSession', 'build_backend', 'check_exported_model',
    'ExportedDetector'
]

BACKENDS = ('onnxruntime', 'openvino')
MIN_OPSET = 18
# what tools/deployment/export_onnx.py writes (onnx_export.onnx_metadata)
REQUIRED_METADATA = ('mmretina_format', 'test_pipeline', 'pad_size_divisor',
                     'pad_value', 'classes', 'nms_iou')
INPUTS = ('image', 'img_info')
OUTPUTS = ('dets', 'scores', 'labels', 'num_dets')


def check_exported_model(onnx_file: str, static: bool = False):
    """Check that ``onnx_file`` is an mmretina export this code can run,
    before any session is built; returns the loaded ``onnx.ModelProto``.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file and what
    is missing: a file that is not ONNX, inputs / outputs / metadata keys
    other than ``export_onnx``'s, an opset below 18, or (``static=True``)
    an input with a dynamic batch, height or width.
    """
    onnx = require(f'{onnx_file}: reading an ONNX model', 'onnx',
                   extra='deploy')
    if not osp.isfile(onnx_file):
        raise FileNotFoundError(f'{onnx_file}: no such model file')
    try:
        model = onnx.load(onnx_file, load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ValueError(f'{onnx_file} is not an ONNX model ({e})') from e
    problems = []
    names = [i.name for i in model.graph.input]
    if tuple(names[:2]) != INPUTS:
        problems.append(f'inputs {list(INPUTS)} (it has {names})')
    outs = [o.name for o in model.graph.output]
    if tuple(outs) != OUTPUTS:
        problems.append(f'outputs {list(OUTPUTS)} (it has {outs})')
    meta = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        problems.append('metadata ' + ', '.join(missing))
    elif meta['mmretina_format'] not in (FORMAT_HBOX, FORMAT_RBOX):
        problems.append(f'mmretina_format {FORMAT_HBOX} or {FORMAT_RBOX} '
                        f'(it has {meta["mmretina_format"]!r})')
    elif meta['mmretina_format'] == FORMAT_RBOX and 'nms' not in meta:
        problems.append('metadata nms (the NMS after an oriented graph)')
    if problems:
        raise ValueError(
            f'{onnx_file} is not an mmretina export: missing '
            + '; '.join(problems)
            + '. Export the checkpoint with tools/deployment/export_onnx.py')
    opset = max((o.version for o in model.opset_import
                 if o.domain in ('', 'ai.onnx')), default=0)
    if opset < MIN_OPSET:
        raise ValueError(
            f'{onnx_file} has opset {opset}; mmretina needs opset >= '
            f'{MIN_OPSET} (re-export with --opset {MIN_OPSET})')
    if static:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dyn = [axis for axis, d in zip('NCHW', dims)
               if not d.HasField('dim_value')]
        if dyn:
            raise ValueError(
                f'{onnx_file} has dynamic input dimensions {dyn} '
                '(exported with --dynamic); this step needs a static '
                'graph: re-export without --dynamic (and --shape H W)')
    return model


class OpenVINOSession:
    """An ONNX model compiled by OpenVINO for the CPU, with the three
    methods of ``onnxruntime.InferenceSession`` that ``OrtBackend`` calls
    (``run(None, feeds)``, ``get_inputs()``, ``get_modelmeta()``).

    Args:
        onnx_file (str): the model (fp32 or QDQ INT8; OpenVINO runs the
            quantize / dequantize pairs as integer kernels).
        num_threads (int, optional): ``INFERENCE_NUM_THREADS``.
    """

    def __init__(self, onnx_file: str,
                 num_threads: Optional[int] = None) -> None:
        ov = require(f'{onnx_file}: --backend openvino', 'openvino',
                     extra='deploy')
        proto = check_exported_model(onnx_file)
        self._meta = {p.key: p.value for p in proto.metadata_props}
        self._inputs = []
        for inp in proto.graph.input:
            dims = inp.type.tensor_type.shape.dim
            self._inputs.append(SimpleNamespace(
                name=inp.name,
                shape=[d.dim_value if d.HasField('dim_value') else
                       (d.dim_param or None) for d in dims]))
        # OpenVINO's CPU plugin runs a float32 model in bfloat16 on CPUs
        # with native bf16 (AVX512_BF16, AMX) unless told otherwise: scores
        # then move by ~1e-2 from ONNX Runtime's. The model runs in the
        # precision it was exported in (INT8 QDQ layers stay integer).
        config = {'PERFORMANCE_HINT': 'LATENCY',
                  'INFERENCE_PRECISION_HINT': 'f32'}
        if num_threads:
            config['INFERENCE_NUM_THREADS'] = int(num_threads)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(onnx_file), 'CPU',
                                           config)
        self.request = self.compiled.create_infer_request()
        self._outputs = [o.get_any_name() for o in self.compiled.outputs]

    def get_inputs(self):
        return self._inputs

    def get_modelmeta(self):
        return SimpleNamespace(custom_metadata_map=dict(self._meta))

    def run(self, output_names, feeds: Dict[str, np.ndarray]):
        res = self.request.infer(feeds)
        by_name = {k.get_any_name(): v for k, v in res.items()}
        return [by_name[n] for n in (output_names or self._outputs)]


def build_backend(onnx_file: str,
                  backend: str = 'onnxruntime',
                  num_threads: Optional[int] = None):
    """An :class:`~mmretina.deploy.runtime.OrtBackend` running
    ``onnx_file`` with ``backend`` (one of :data:`BACKENDS`) on
    ``num_threads`` intra-op threads (None: the runtime's default)."""
    from mmretina.deploy.runtime import OrtBackend
    if backend not in BACKENDS:
        raise ValueError(f'backend {backend!r}: choose one of {BACKENDS}')
    check_exported_model(onnx_file)
    if backend == 'openvino':
        return OrtBackend(onnx_file,
                          session=OpenVINOSession(onnx_file, num_threads))
    return OrtBackend(onnx_file, num_threads=num_threads)


@MODELS.register_module()
class ExportedDetector(BaseModel):
    """An exported RetinaNet as an mmengine model for the test / val loops.

    Args:
        model_file (str): ONNX file written by ``export_onnx`` (fp32) or
            :func:`mmretina.deploy.quantize.quantize_model` (INT8 QDQ).
        backend (str): ``'onnxruntime'`` or ``'openvino'``.
        num_threads (int, optional): runtime threads.

    ``test_step`` takes the dataloader's batch: ``inputs`` a list of
    3 x h_i x w_i uint8 BGR tensors (after the config's test pipeline:
    resized, not padded) and ``data_samples`` with ``scale_factor``
    (w, h) in their metainfo; it returns the data samples with
    ``pred_instances`` (``bboxes`` M x 4 in original image pixels,
    ``scores`` M, ``labels`` M; ``bboxes`` M x 5 (cx, cy, w, h, angle)
    for an oriented export).
    """

    def __init__(self, model_file: str, backend: str = 'onnxruntime',
                 num_threads: Optional[int] = None) -> None:
        super().__init__()
        self.model_file = model_file
        self.runtime = build_backend(model_file, backend, num_threads)

    def predict_batch(self, inputs: Sequence[torch.Tensor],
                      data_samples: Sequence) -> List:
        step = self.runtime.static_batch or len(inputs)
        for i in range(0, len(inputs), step):
            imgs = [t.permute(1, 2, 0).cpu().numpy()
                    for t in inputs[i:i + step]]
            samples = data_samples[i:i + step]
            scales = [tuple(s.metainfo.get('scale_factor', (1.0, 1.0)))
                      for s in samples]
            for sample, inst in zip(
                    samples, self.runtime.run_packed(
                        *self.runtime.pack(imgs, scales))):
                sample.pred_instances = inst
        return list(data_samples)

    def test_step(self, data) -> List:
        return self.predict_batch(data['inputs'], data['data_samples'])

    val_step = test_step

    def forward(self, inputs, data_samples=None, mode: str = 'predict'):
        if mode != 'predict':
            raise RuntimeError(f'{self.model_file} is an exported model: '
                               f'mode={mode!r} (training) is not possible')
        return self.predict_batch(inputs, data_samples)


# hooks that copy or swap the model's parameters (an exported model has
# none; EMAHook deep-copies the model, which holds a runtime session)
_PARAM_HOOKS = ('EMAHook', 'mmdet.EMAHook', 'mmengine.EMAHook')


def exported_model_cfg(model_file: str, backend: str = 'onnxruntime',
                       num_threads: Optional[int] = None) -> dict:
    """``cfg.model`` that makes a Runner evaluate ``model_file``."""
    import mmretina.deploy.backends  # noqa: F401  (registers the model)
    return dict(type='mmretina.ExportedDetector', model_file=model_file,
                backend=backend, num_threads=num_threads)


def use_exported_model(cfg, model_file: str, backend: str = 'onnxruntime',
                       num_threads: Optional[int] = None):
    """Turn a test config into one that scores ``model_file`` with the
    same datasets, loop and evaluator: the model replaced by
    :class:`ExportedDetector`, no checkpoint to load, and the hooks that
    act on parameters (``EMAHook``) removed. Returns ``cfg`` (modified)."""
    check_exported_model(model_file)
    cfg.model = exported_model_cfg(model_file, backend, num_threads)
    cfg.load_from = None
    cfg.resume = False
    hooks = cfg.get('custom_hooks') or []
    cfg.custom_hooks = [h for h in hooks if h.get('type') not in _PARAM_HOOKS]
    return cfg
