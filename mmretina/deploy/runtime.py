"""Run a model exported by ``tools/deployment/export_onnx.py`` with
onnxruntime: the backend of ``tools/infer.py --backend onnxruntime``.

The host side does what the graph does not: the config's test pipeline up
to the resize (stored in the model's metadata, run with mmcv's transforms)
and the padding to the preprocessor's ``pad_size_divisor``; normalisation,
the network, decoding and NMS are in the graph. For an oriented model
(``mmretina_format`` retinanet-rbox-v1) the graph ends with the NMS
candidates and the host applies mmcv's ``batched_nms`` with the config's
``nms_rotated`` (no ONNX operator computes rotated IoU).
"""
import json
from typing import List, Optional, Sequence

import numpy as np
from mmengine.structures import InstanceData

from mmretina.utils.extras import require
from .export import FORMAT_HBOX, FORMAT_RBOX

__all__ = ['OrtBackend', 'nms_after_graph']

# transforms of the annotations only (mmrotate's ConvertBoxType turns the
# loaded ground truth into rotated boxes)
_SKIP = ('LoadAnnotations', 'PackDetInputs', 'ConvertBoxType')


def nms_after_graph(candidates: InstanceData, nms_cfg: dict,
                    max_per_img: int) -> InstanceData:
    """The end of ``BaseDenseHead._bbox_post_process`` (mmdet's) on one
    image's candidates from an oriented graph: mmcv's ``batched_nms`` with
    ``nms_cfg`` (``dict(type='nms_rotated', iou_threshold=...)``, class by
    class unless ``class_agnostic``), scores as NMS returns them, the
    ``max_per_img`` best.

    Args:
        candidates (InstanceData): ``bboxes`` (K, 5) (cx, cy, w, h, angle)
            in original image pixels, ``scores`` (K,), ``labels`` (K,), in
            mmdet's candidate order.
        nms_cfg (dict): the config's ``test_cfg.nms``.
        max_per_img (int): detections kept.

    Returns:
        InstanceData: (M,) rows by descending score, M <= ``max_per_img``.
    """
    from mmcv.ops import batched_nms
    if len(candidates) == 0:
        return candidates
    dets, keep = batched_nms(candidates.bboxes, candidates.scores,
                             candidates.labels, nms_cfg)
    out = candidates[keep]
    out.scores = dets[:, -1]
    return out[:max_per_img]


def _tuples(obj):
    """Lists back to tuples, recursively (dict values included)."""
    if isinstance(obj, dict):
        return {k: _tuples(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return tuple(_tuples(v) for v in obj)
    return obj


class OrtBackend:
    """An exported RetinaNet in an onnxruntime session.

    Args:
        onnx_file (str): model from :func:`mmretina.deploy.export.export_onnx`.
        providers (list[str], optional): onnxruntime execution providers
            (default: CPU).
        num_threads (int, optional): intra-op threads (default: ORT's).

    Call it with a list of H x W x 3 uint8 BGR images; it returns one
    ``InstanceData`` per image, as ``PytorchBackend``: ``bboxes`` (M, 4)
    float32 (x1, y1, x2, y2), or (M, 5) float32 (cx, cy, w, h, angle in
    radians, the coder's ``angle_version``) for an oriented model,
    ``scores`` (M,) float32 by descending score, ``labels`` (M,) int64;
    CPU torch tensors in the original image's pixels.

    Attributes: ``classes``, ``palette``, ``nms_iou`` (the NMS IoU
    threshold), ``box_dim`` (4 or 5), ``angle_version`` (None for an
    axis-aligned model), ``nms_cfg`` (the NMS applied after an oriented
    graph; None when NMS is in the graph), ``metadata``, ``model_cfg``.
    """

    def __init__(self,
                 onnx_file: str,
                 providers: Optional[Sequence[str]] = None,
                 num_threads: Optional[int] = None,
                 session=None) -> None:
        from mmcv.transforms import Compose
        if session is None:
            ort = require(f'{onnx_file}: --backend onnxruntime',
                          'onnxruntime', extra='deploy')
            opts = ort.SessionOptions()
            if num_threads:
                opts.intra_op_num_threads = int(num_threads)
                opts.inter_op_num_threads = 1
            session = ort.InferenceSession(
                onnx_file,
                sess_options=opts,
                providers=list(providers or ['CPUExecutionProvider']))
        # ``session``: anything with onnxruntime's ``run(None, feeds)``,
        # ``get_inputs()`` and ``get_modelmeta()`` (mmretina.deploy's
        # OpenVINO session is one)
        self.session = session
        meta = self.session.get_modelmeta().custom_metadata_map
        fmt = meta.get('mmretina_format')
        if fmt not in (FORMAT_HBOX, FORMAT_RBOX):
            raise ValueError(
                f'{onnx_file} was not written by mmretina\'s export_onnx '
                '(no mmretina_format metadata); export it with '
                'tools/deployment/export_onnx.py')
        # JSON has no tuples; mmcv's transforms want e.g. scale=(w, h)
        pipeline = _tuples(json.loads(meta['test_pipeline']))
        pipeline = [dict(t) for t in pipeline
                    if t['type'].split('.')[-1] not in _SKIP]
        pipeline[0] = dict(type='mmdet.LoadImageFromNDArray')
        self.pipeline = Compose(pipeline)
        self.pad_size_divisor = int(meta['pad_size_divisor'])
        self.pad_value = np.array(json.loads(meta['pad_value']), np.float32)
        self.classes = tuple(json.loads(meta['classes']))
        palette = json.loads(meta.get('palette', 'null'))
        self.palette = [tuple(p) for p in palette] if palette else None
        self.nms_iou = float(meta['nms_iou'])
        self.box_dim = 5 if fmt == FORMAT_RBOX else 4
        self.angle_version = meta.get('angle_version') or None
        self.nms_cfg = json.loads(meta['nms']) if fmt == FORMAT_RBOX \
            else None
        self.max_per_img = int(meta.get('max_per_img', 100))
        # a static graph (exported without --dynamic): fixed N, H, W
        shape = self.session.get_inputs()[0].shape
        self.static_batch = shape[0] if isinstance(shape[0], int) else None
        self.static_hw = (tuple(shape[2:4]) if all(
            isinstance(v, int) for v in shape[2:4]) else None)
        self.metadata = dict(meta)
        # the config keys the commands read (mmretina.cli.options): the
        # test pipeline and, from exports that carry them, gsd, tile,
        # bands, scale
        self.model_cfg = dict(json.loads(meta.get('raster', '{}')),
                              test_pipeline=pipeline)

    def preprocess(self, imgs: List[np.ndarray]):
        """The batch the graph takes: ``image`` N x 3 x H x W and
        ``img_info`` N x 4 (img_h, img_w, scale_w, scale_h)."""
        results = [self.pipeline(dict(img=img, img_id=0)) for img in imgs]
        return self.pack([r['img'] for r in results],
                         [r.get('scale_factor', (1.0, 1.0)) for r in results])

    def pack(self, resized: List[np.ndarray],
             scale_factors: Sequence[Sequence[float]]):
        """Pad images already through the test pipeline into the graph's
        inputs.

        Args:
            resized (list[ndarray]): h_i x w_i x 3 BGR images, resized.
            scale_factors (list): (scale_w, scale_h) of each resize
                (mmdet's ``scale_factor``).

        Returns:
            tuple: ``image`` N x 3 x H x W float32, ``img_info`` N x 4.
        """
        shapes = [r.shape[:2] for r in resized]
        div = self.pad_size_divisor
        pad_h = max(int(np.ceil(h / div)) * div for h, _ in shapes)
        pad_w = max(int(np.ceil(w / div)) * div for _, w in shapes)
        if self.static_hw is not None:
            if pad_h > self.static_hw[0] or pad_w > self.static_hw[1]:
                raise ValueError(
                    f'image of {shapes} px (after the test pipeline) does '
                    f'not fit the static graph input {self.static_hw}; '
                    'export with --dynamic or a larger --shape')
            pad_h, pad_w = self.static_hw
        batch = np.empty((len(resized), 3, pad_h, pad_w), np.float32)
        batch[:] = self.pad_value[None, :, None, None]
        info = np.zeros((len(resized), 4), np.float32)
        for i, img in enumerate(resized):
            h, w = shapes[i]
            batch[i, :, :h, :w] = img.transpose(2, 0, 1)
            sw, sh = scale_factors[i]
            info[i] = (h, w, sw, sh)
        return batch, info

    def run_packed(self, image: np.ndarray,
                   info: np.ndarray) -> List[InstanceData]:
        """Run the graph on :meth:`pack`'s output; one ``InstanceData`` per
        image (boxes in original image pixels; an oriented model's
        candidates through :func:`nms_after_graph`)."""
        import torch
        dets, scores, labels, num = self.session.run(
            None, dict(image=image, img_info=info))
        out = []
        for i in range(image.shape[0]):
            n = int(num[i])
            inst = InstanceData()
            inst.bboxes = torch.from_numpy(np.array(dets[i, :n]))
            inst.scores = torch.from_numpy(np.array(scores[i, :n]))
            inst.labels = torch.from_numpy(
                np.asarray(labels[i, :n]).astype(np.int64))
            if self.nms_cfg is not None:
                inst = nms_after_graph(inst, self.nms_cfg, self.max_per_img)
            out.append(inst)
        return out

    def __call__(self, imgs: List[np.ndarray]) -> List[InstanceData]:
        step = self.static_batch
        if step is not None and len(imgs) > step:
            return [
                r for i in range(0, len(imgs), step)
                for r in self(imgs[i:i + step])
            ]
        return self.run_packed(*self.preprocess(imgs))
