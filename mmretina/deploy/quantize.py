"""Static INT8 quantization of an mmretina ONNX export with
``onnxruntime.quantization`` (QDQ), calibrated on the user's images, with
the accuracy checked on a held-out split and the layers that cost accuracy
kept in float.

What is quantized: the convolutions (weights per output channel,
activations per tensor), grouped by the module their weights belong to
(``backbone.layer2``, ``neck.fpn_convs``, ``bbox_head.retina_cls``, ...).
What stays float: everything else in the graph, i.e. normalisation of the
input, GroupNorm (exported as ``InstanceNormalization``), the sigmoid, the
anchors, box decoding, top-k and NMS; and any conv group that
:func:`quantize_model` measures to cost more than ``max_drop`` mAP50.

Calibration images go through the test pipeline stored in the model
(the config's), exactly as at inference (``OrtBackend.preprocess``).
"""
import contextlib
import io
import json
import os
import os.path as osp
import tempfile
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from mmretina.geo.formats import IMAGE_EXTS
from .backends import build_backend, check_exported_model
from .export import FORMAT_RBOX

__all__ = [
    'IMAGE_EXTS', 'calibration_images', 'conv_groups', 'quantize_static_qdq',
    'evaluate_map50', 'quantize_model', 'QuantizeReport'
]

METHODS = ('minmax', 'entropy', 'percentile')


# ----------------------------------------------------------------- data
def _coco_image_dir(ann_file: str, images: List[dict],
                    extra_dirs: Sequence[str] = ()) -> str:
    """The folder the COCO ``file_name`` s are relative to: the json's
    folder, its ``images/`` or ``../images/``, or one of ``extra_dirs``
    (e.g. the config's ``data_root`` + ``data_prefix.img``)."""
    base = osp.dirname(osp.abspath(ann_file))
    candidates = [base, osp.join(base, 'images'),
                  osp.join(osp.dirname(base), 'images'), *extra_dirs]
    first = images[0]['file_name']
    for d in candidates:
        if osp.isfile(osp.join(d, first)):
            return d
    raise FileNotFoundError(
        f'{ann_file}: cannot find its image {first!r} in any of '
        f'{candidates}; put the images next to the json or in images/')


def read_coco_images(ann_file: str,
                     extra_dirs: Sequence[str] = ()) -> List[str]:
    """Paths of the images listed in a COCO json, in its order."""
    with open(ann_file) as f:
        try:
            images = json.load(f).get('images', [])
        except (json.JSONDecodeError, AttributeError) as e:
            raise ValueError(f'{ann_file} is not a COCO json ({e})') from e
    if not images:
        raise ValueError(f'{ann_file} lists no images ("images" is empty)')
    root = _coco_image_dir(ann_file, images, extra_dirs)
    return [osp.join(root, im['file_name']) for im in images]


def calibration_images(calib_data: str, num: int = 32,
                       extra_dirs: Sequence[str] = ()) -> List[str]:
    """Up to ``num`` image paths from a folder (sorted, evenly spread) or a
    COCO json (its images, evenly spread). Raises naming ``calib_data``
    when it holds no image."""
    if osp.isdir(calib_data):
        paths = sorted(
            osp.join(calib_data, n) for n in os.listdir(calib_data)
            if n.lower().endswith(IMAGE_EXTS))
        if not paths:
            raise ValueError(
                f'--calib-data {calib_data}: the folder holds no image '
                f'({", ".join(IMAGE_EXTS)}); give a folder of training '
                'images or the training COCO json')
    elif osp.isfile(calib_data):
        paths = read_coco_images(calib_data, extra_dirs)
    else:
        raise FileNotFoundError(f'--calib-data {calib_data}: no such file '
                                'or folder')
    if num and len(paths) > num:
        idx = np.linspace(0, len(paths) - 1, num).round().astype(int)
        paths = [paths[i] for i in idx]
    return paths


class _Reader:
    """``CalibrationDataReader``: the graph's inputs for each image."""

    def __init__(self, backend, paths: Sequence[str]) -> None:
        import mmcv
        self.feeds = []
        for p in paths:
            img = mmcv.imread(p)
            if img is None:
                raise ValueError(f'calibration image {p} cannot be read')
            image, info = backend.preprocess([img])
            self.feeds.append(dict(image=image, img_info=info))
        self.rewind()

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.feeds)


# ----------------------------------------------------------------- groups
def conv_groups(model) -> 'OrderedDict[str, List[str]]':
    """Conv node names of an export grouped by the module of their weight:
    ``backbone.conv1``, ``backbone.layer1`` .. ``layer4``,
    ``neck.lateral_convs``, ``neck.fpn_convs``, ``bbox_head.cls_convs``,
    ``bbox_head.reg_convs``, ``bbox_head.retina_cls``,
    ``bbox_head.retina_reg`` (the head's convs are shared by the levels:
    one group holds a node per level)."""
    groups = OrderedDict()
    for node in model.graph.node:
        if node.op_type != 'Conv' or len(node.input) < 2:
            continue
        parts = node.input[1].split('.')
        if parts and parts[0] == 'detector':
            parts = parts[1:]
        key = '.'.join(parts[:2]) if len(parts) > 2 else node.input[1]
        groups.setdefault(key, []).append(node.name)
    return groups


# ----------------------------------------------------------------- quantize
def quantize_static_qdq(onnx_in: str, onnx_out: str, reader,
                        method: str = 'minmax',
                        exclude_nodes: Sequence[str] = (),
                        per_channel: bool = True,
                        reduce_range: bool = False,
                        activation_type: str = 'uint8',
                        weight_type: str = 'int8') -> str:
    """One ``quantize_static`` call: QDQ, convolutions only (``Conv``
    nodes not in ``exclude_nodes``), calibrated with ``reader``."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    cal = dict(minmax=CalibrationMethod.MinMax,
               entropy=CalibrationMethod.Entropy,
               percentile=CalibrationMethod.Percentile)[method]
    types = dict(uint8=QuantType.QUInt8, int8=QuantType.QInt8)
    reader.rewind()
    extra = dict(
        # entropy / percentile histograms per batch, not of all images'
        # activations held at once
        CalibMovingAverage=False,
        CalibPercentile=99.999,
        ActivationSymmetric=False,
        WeightSymmetric=True)
    cwd = os.getcwd()
    src, dst = osp.abspath(onnx_in), osp.abspath(onnx_out)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # ORT writes its augmented calibration model here
        try:
            quantize_static(
                src, dst, reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=['Conv'],
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=types[activation_type],
                weight_type=types[weight_type],
                nodes_to_exclude=list(exclude_nodes),
                calibrate_method=cal,
                extra_options=extra)
        finally:
            os.chdir(cwd)
    _copy_metadata(onnx_in, onnx_out)
    return onnx_out


def _copy_metadata(src: str, dst: str) -> None:
    """The export's metadata (pipeline, classes, ...) onto the quantized
    model (quantize_static drops it), plus ``mmretina_precision``."""
    import onnx
    a = onnx.load(src, load_external_data=False)
    b = onnx.load(dst)
    have = {p.key for p in b.metadata_props}
    for p in a.metadata_props:
        if p.key not in have:
            b.metadata_props.add(key=p.key, value=p.value)
    b.metadata_props.add(key='mmretina_precision', value='int8-qdq')
    onnx.save(b, dst)


# ----------------------------------------------------------------- accuracy
def evaluate_map50(backend, ann_file: str,
                   extra_dirs: Sequence[str] = (),
                   images: Optional[Dict[str, np.ndarray]] = None
                   ) -> Tuple[float, float]:
    """(mAP50, mAP) of ``backend`` (an ``OrtBackend``) on a COCO json,
    with mmdet's ``CocoMetric`` (pycocotools, maxDets 100): the figures
    ``tools/test.py`` prints for the same annotations.

    ``images``: decoded images by path (a cache shared between the fp32
    and INT8 runs)."""
    import mmcv
    from mmdet.evaluation import CocoMetric
    from mmengine.logging import MMLogger
    with open(ann_file) as f:
        infos = json.load(f)['images']
    root = _coco_image_dir(ann_file, infos, extra_dirs)
    metric = CocoMetric(ann_file=ann_file, metric='bbox')
    metric.dataset_meta = dict(classes=backend.classes)
    images = {} if images is None else images
    for info in infos:
        path = osp.join(root, info['file_name'])
        if path not in images:
            images[path] = mmcv.imread(path)
        img = images[path]
        inst = backend([img])[0]
        metric.process({}, [dict(
            img_id=info['id'], ori_shape=img.shape[:2],
            pred_instances=dict(bboxes=inst.bboxes, scores=inst.scores,
                                labels=inst.labels))])
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # CocoMetric's summary table
    try:
        # pycocotools prints its own table to stdout
        with contextlib.redirect_stdout(io.StringIO()):
            res = metric.evaluate(len(infos))
    finally:
        logger.setLevel(level)
    # CocoMetric returns no figures when no image has a detection
    return (float(res.get('coco/bbox_mAP_50', 0.0)),
            float(res.get('coco/bbox_mAP', 0.0)))


class QuantizeReport(dict):
    """What :func:`quantize_model` did: ``fp32_map50``, ``int8_map50``,
    ``drop``, ``excluded`` (group -> why), ``sensitivity`` (group ->
    mAP50 with that group left in float), ``written`` (bool)."""

    def lines(self) -> List[str]:
        out = []
        for g, m in self.get('sensitivity', {}).items():
            out.append(f'  sensitivity: {g:28s} kept float -> mAP50 {m:.3f}')
        for g, why in self.get('excluded', {}).items():
            out.append(f'  kept in float: {g} ({why})')
        if self.get('fp32_map50') is not None:
            out.append(
                f'mAP50 on {self["val_ann"]}: fp32 {self["fp32_map50"]:.3f}'
                f', INT8 {self["int8_map50"]:.3f} (drop '
                f'{self["drop"]:+.3f}, allowed {self["max_drop"]:.3f})')
        return out


def quantize_model(onnx_in: str, onnx_out: str, calib_data: str,
                   method: str = 'minmax', num_calib: int = 32,
                   val_ann: Optional[str] = None, max_drop: float = 0.02,
                   exclude: Sequence[str] = (),
                   reduce_range: bool = False,
                   activation_type: str = 'uint8',
                   weight_type: str = 'int8',
                   extra_dirs: Sequence[str] = (),
                   threads: Optional[int] = None,
                   log=print) -> QuantizeReport:
    """Quantize a static mmretina export to INT8 (QDQ), calibrated on
    ``num_calib`` images of ``calib_data`` (folder or COCO json).

    With ``val_ann`` (a held-out COCO json): measure fp32 and INT8 mAP50;
    while the drop exceeds ``max_drop``, measure each quantized conv
    group's sensitivity (mAP50 with that group alone left in float) and
    keep the most sensitive in float (greedy); if no combination meets
    ``max_drop``, nothing is written (``report['written']`` False) and the
    report says why. Groups named in ``exclude`` (see :func:`conv_groups`)
    stay float from the start. Without ``val_ann`` the model is written
    unchecked. Raises ``ValueError`` for dynamic-shape, oriented-box
    (``retinanet-rbox-v1``: not supported) or foreign models.
    """
    if method not in METHODS:
        raise ValueError(f'--method {method}: choose one of {METHODS}')
    proto = check_exported_model(onnx_in, static=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta['mmretina_format'] == FORMAT_RBOX:
        # the accuracy check is COCO mAP50 of axis-aligned boxes; an INT8
        # model nobody can score is not written
        raise ValueError(
            f'{onnx_in} is an oriented-box export ({FORMAT_RBOX}): INT8 '
            'quantization is not supported for rotated boxes (its accuracy '
            'check, COCO mAP50, scores axis-aligned boxes only); deploy the '
            'fp32 export')
    groups = conv_groups(proto)
    unknown = [g for g in exclude if g not in groups]
    if unknown:
        raise ValueError(f'--exclude {unknown}: not conv groups of '
                         f'{onnx_in}; its groups are {list(groups)}')
    fp32 = build_backend(onnx_in, 'onnxruntime', threads)
    paths = calibration_images(calib_data, num_calib, extra_dirs)
    log(f'calibration: {len(paths)} images of {calib_data}, {method}')
    reader = _Reader(fp32, paths)
    report = QuantizeReport(
        method=method, num_calib=len(paths), val_ann=val_ann,
        max_drop=max_drop, excluded={g: 'asked (--exclude)'
                                     for g in exclude},
        sensitivity={}, fp32_map50=None, int8_map50=None, drop=None,
        written=False)
    cache: Dict[str, np.ndarray] = {}
    out_dir = osp.dirname(osp.abspath(onnx_out))
    os.makedirs(out_dir, exist_ok=True)

    def build(excluded: Sequence[str], path: str) -> float:
        nodes = [n for g in excluded for n in groups[g]]
        start = time.time()
        quantize_static_qdq(onnx_in, path, reader, method, nodes,
                            reduce_range=reduce_range,
                            activation_type=activation_type,
                            weight_type=weight_type)
        if val_ann is None:
            return float('nan')
        m = evaluate_map50(build_backend(path, 'onnxruntime', threads),
                           val_ann, extra_dirs, cache)[0]
        log(f'  INT8 with {list(excluded) or "no group"} in float: mAP50 '
            f'{m:.3f} ({time.time() - start:.0f} s)')
        return m

    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        cand = osp.join(tmp, 'candidate.onnx')
        excluded = list(exclude)
        if val_ann is not None:
            report['fp32_map50'] = evaluate_map50(fp32, val_ann, extra_dirs,
                                                  cache)[0]
            log(f'fp32 mAP50 on {val_ann}: {report["fp32_map50"]:.3f}')
        m = build(excluded, cand)
        while val_ann is not None and report['fp32_map50'] - m > max_drop:
            rest = [g for g in groups if g not in excluded]
            if not rest:
                break
            log(f'drop {report["fp32_map50"] - m:.3f} > {max_drop}: '
                'sensitivity of each quantized group')
            trial = {}
            for g in rest:
                trial[g] = build(excluded + [g],
                                 osp.join(tmp, 'trial.onnx'))
            report['sensitivity'].update(trial)
            best = max(trial, key=trial.get)
            if trial[best] <= m:
                break  # no single group helps: stop, refuse below
            report['excluded'][best] = (
                f'mAP50 {m:.3f} quantized, {trial[best]:.3f} in float')
            excluded.append(best)
            m = build(excluded, cand)
        report['int8_map50'] = None if val_ann is None else m
        if val_ann is not None:
            report['drop'] = report['fp32_map50'] - m
            if report['drop'] > max_drop:
                return report
        os.replace(cand, onnx_out)
        report['written'] = True
    return report
