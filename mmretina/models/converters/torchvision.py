"""torchvision RetinaNet state dicts <-> mmretina (mmdet) checkpoints.

torchvision's ``retinanet_resnet50_fpn`` (v1) and ``retinanet_resnet50_fpn_v2``
(v2), and DeepForest's released models (tree, bird, livestock, ...: the v1
layout with a FrozenBatchNorm2d backbone), map onto mmdet's ``RetinaNet`` with
mmretina's head as follows:

==========================  ==============================================
torchvision                 mmdet / mmretina
==========================  ==============================================
ResNet-50, FrozenBN / BN    ``ResNet(depth=50, style='pytorch')``, BN with
                            the same eps (FrozenBatchNorm2d: 1e-5, but 0.0
                            in torchvision's COCO_V1 release, which
                            ``retinanet_resnet50_fpn(weights='COCO_V1')``
                            sets with ``overwrite_eps``); frozen: BN
                            ``requires_grad=False`` and ``norm_eval``
FPN on C3-C5, LastLevelP6P7 ``FPN(start_level=1, relu_before_extra_convs=
                            True)``; P6 from P5 in v1 (``add_extra_convs=
                            'on_output'``), from C5 in v2 (``'on_input'``)
head, 4 conv(+GN)+ReLU      ``mmretina.RetinaHead(stacked_convs=4)``, v2:
                            ``norm_cfg=GN(32)``
AnchorGenerator             ``mmretina.TorchvisionAnchorGenerator`` (integer
                            sizes, rounded base anchors, strides = input //
                            feature size); same anchor order, so the head's
                            output channels keep their order
BoxCoder (1, 1, 1, 1),      ``DeltaXYWHBBoxCoder`` (stds 1, ``wh_ratio_clip``
clamp log(1000 / 16)        16 / 1000)
GeneralizedRCNNTransform    ``mmretina.TorchvisionResize`` + mmdet's
                            ``DetDataPreprocessor`` (ImageNet mean / std x
                            255, RGB, pad to 32 with 0 after normalising)
score_thresh, topk, NMS,    ``test_cfg``: ``score_thr``, ``nms_pre``,
detections_per_img          ``nms.iou_threshold``, ``max_per_img``;
                            ``min_bbox_size=-1`` (torchvision keeps every
                            box); ``nms.split_thr=1001``: torchvision's
                            ``batched_nms`` runs per class above 1000 boxes
                            on the CPU, as mmcv's above ``split_thr``
==========================  ==============================================

torchvision's COCO models classify 91 indices (COCO category ids, with index
0 and ten unused ids); by default their classifier rows are reduced to
mmdet's 80 contiguous classes (``coco_labels='coco80'``). Candidates of the
dropped indices then no longer compete for torchvision's per-level top-k and
``detections_per_img``, so detections equal torchvision's only with
``coco_labels='coco91'``, which keeps the 91 outputs.
"""
import functools
import json
import os
import os.path as osp
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmretina.engine.checkpoint import load_checkpoint_file
from .coco_labels import COCO80_IDS, coco91_class_names

__all__ = [
    'TORCHVISION_DEFAULTS', 'load_weights_file', 'read_hub_config',
    'detect_arch', 'torchvision_model_config', 'torchvision_config',
    'torchvision_to_mmretina', 'mmretina_to_torchvision',
    'convert_torchvision_file', 'convert_mmretina_file', 'KeyMismatchError'
]

# torchvision RetinaNet's defaults (``RetinaNet.__init__``).
TORCHVISION_DEFAULTS = dict(
    min_size=800,
    max_size=1333,
    score_thresh=0.05,
    nms_thresh=0.5,
    detections_per_img=300,
    topk_candidates=1000)

# torchvision's ImageNet normalisation of 0-1 RGB, in mmdet's 0-255 units.
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]
# torchvision's anchor sizes per level: int(x * 2 ** (k / 3)).
ANCHOR_SIZES = [[int(x * 2**(k / 3)) for k in range(3)]
                for x in (32, 64, 128, 256, 512)]
ASPECT_RATIOS = [0.5, 1.0, 2.0]

# (torchvision key, mmdet key) templates: {i} a block index, {p} weight or
# bias, {rest} the remainder of a ResNet key (same names in both).
_KEY_TEMPLATES = [
    ('backbone.body.{rest}', 'backbone.{rest}'),
    ('backbone.fpn.inner_blocks.{i}.0.{p}',
     'neck.lateral_convs.{i}.conv.{p}'),
    # P6 / P7 before the other FPN convs: neck.fpn_convs.3 / .4 are theirs
    ('backbone.fpn.extra_blocks.p6.{p}', 'neck.fpn_convs.3.conv.{p}'),
    ('backbone.fpn.extra_blocks.p7.{p}', 'neck.fpn_convs.4.conv.{p}'),
    ('backbone.fpn.layer_blocks.{i}.0.{p}', 'neck.fpn_convs.{i}.conv.{p}'),
    ('head.classification_head.conv.{i}.0.{p}',
     'bbox_head.cls_convs.{i}.conv.{p}'),
    ('head.classification_head.conv.{i}.1.{p}',
     'bbox_head.cls_convs.{i}.gn.{p}'),
    ('head.classification_head.cls_logits.{p}', 'bbox_head.retina_cls.{p}'),
    ('head.regression_head.conv.{i}.0.{p}',
     'bbox_head.reg_convs.{i}.conv.{p}'),
    ('head.regression_head.conv.{i}.1.{p}', 'bbox_head.reg_convs.{i}.gn.{p}'),
    ('head.regression_head.bbox_reg.{p}', 'bbox_head.retina_reg.{p}'),
]
_FIELDS = {
    'i': r'(?P<i>\d+)',
    'p': r'(?P<p>weight|bias)',
    'rest': r'(?P<rest>.+)'
}


def _compile(template: str) -> 're.Pattern':
    pattern = re.escape(template)
    for name, group in _FIELDS.items():
        pattern = pattern.replace(re.escape('{' + name + '}'), group)
    return re.compile(pattern + '$')


_TV_TO_MM = [(_compile(tv), mm) for tv, mm in _KEY_TEMPLATES]
_MM_TO_TV = [(_compile(mm), tv) for tv, mm in _KEY_TEMPLATES]


def _rename(key: str, rules) -> Optional[str]:
    for pattern, template in rules:
        m = pattern.match(key)
        if m:
            return template.format(**m.groupdict())
    return None


def _group(key: str) -> str:
    """backbone / fpn / head / other, for error messages."""
    if key.startswith(('backbone.fpn.', 'neck.')):
        return 'fpn'
    if key.startswith(('backbone.', )):
        return 'backbone'
    if key.startswith(('head.', 'bbox_head.')):
        return 'head'
    return 'other'


class KeyMismatchError(ValueError):
    """A state dict that is not the expected architecture's."""


def _mismatch_message(source: str, what: str, missing: Sequence[str],
                      unexpected: Sequence[str],
                      wrong_shape: Sequence[str]) -> str:
    lines = [f'{source}: not a {what} state dict.']
    for title, keys in (('missing', missing), ('unexpected', unexpected),
                        ('of another shape', wrong_shape)):
        if not keys:
            continue
        lines.append(f'  {len(keys)} keys {title}:')
        groups: Dict[str, List[str]] = {}
        for k in keys:
            groups.setdefault(_group(k), []).append(k)
        for g in ('backbone', 'fpn', 'head', 'other'):
            if g in groups:
                ks = groups[g]
                shown = ', '.join(ks[:4]) + (
                    f', ... ({len(ks) - 4} more)' if len(ks) > 4 else '')
                lines.append(f'    {g} ({len(ks)}): {shown}')
    return '\n'.join(lines)


# ----------------------------------------------------------------------
# reading files
# ----------------------------------------------------------------------
def load_weights_file(path: str) -> Dict[str, Tensor]:
    """A state dict from ``.pth`` / ``.pt`` / ``.ckpt`` (``torch.load`` with
    ``weights_only=True``: tensors and plain containers only) or
    ``.safetensors``. Unwraps ``{'state_dict': ...}`` (Lightning, mmengine)
    and ``{'model': ...}``, and strips a ``model.`` / ``module.`` prefix
    common to all keys (DeepForest's Lightning checkpoints, DDP).

    Raises:
        FileNotFoundError, ValueError: naming ``path`` and what to do.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: no such file')
    if path.endswith('.safetensors'):
        from mmretina.utils.extras import require
        _, st_torch = require(f'{path}: reading .safetensors', 'safetensors',
                              'safetensors.torch', extra='convert')
        load_file = st_torch.load_file
        try:
            obj = load_file(path, device='cpu')
        except Exception as e:  # SafetensorError has no public class
            raise ValueError(
                f'{path}: not a readable .safetensors file ({e}); the '
                'download may be incomplete: download it again') from e
    else:
        obj = _torch_load_weights(path)
    return _unwrap_state_dict(obj, path)


def _torch_load_weights(path: str):
    try:
        return torch.load(path, map_location='cpu', weights_only=True,
                          mmap=_is_zip(path))
    except pickle.UnpicklingError as e:
        raise ValueError(
            f'{path}: refused: the file holds Python objects other than '
            'tensors and plain containers, and unpickling them could run '
            'code (torch.load weights_only=True failed: '
            f'{str(e).splitlines()[0]}). If you trust the file, re-save '
            'its weights alone: torch.save(torch.load(path, '
            'weights_only=False)["state_dict"], "weights.pth").') from e
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(
            f'{path}: not a readable torch file ({str(e).splitlines()[0]}); '
            'it may be truncated: download or copy it again') from e


def _is_zip(path: str) -> bool:
    # mmap needs torch's zip format; legacy (pre-1.6) files are read whole.
    return zipfile.is_zipfile(path)


def _unwrap_state_dict(obj, path: str) -> Dict[str, Tensor]:
    if isinstance(obj, dict):
        for key in ('state_dict', 'model'):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, Tensor)
            for k, v in obj.items()):
        raise ValueError(
            f'{path}: holds no state dict (a dict of tensors, possibly '
            "under 'state_dict' or 'model'); found "
            f'{type(obj).__name__}')
    for prefix in ('model.', 'module.'):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return OrderedDict(obj)


def read_hub_config(weights_path: str) -> Optional[dict]:
    """DeepForest's Hugging Face ``config.json`` beside ``weights_path``
    (``num_classes``, ``label_dict``, ``score_thresh``, ``nms_thresh``, and
    the RetinaNet keyword arguments it was built with), or None."""
    path = osp.join(osp.dirname(osp.abspath(weights_path)), 'config.json')
    if not osp.isfile(path):
        return None
    if osp.getsize(path) > 1 << 20:
        raise ValueError(f'{path}: larger than 1 MiB, not a model config')
    try:
        with open(path) as f:
            cfg = json.load(f)
    except ValueError as e:
        raise ValueError(f'{path}: not valid JSON ({e})') from e
    if not isinstance(cfg, dict):
        raise ValueError(f'{path}: expected a JSON object')
    return cfg


# ----------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------
def _legacy_keys(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Keys of torchvision < 0.13 files (e.g. the COCO_V1 download): FPN
    convs without ``.0`` and head ``conv.{2i}`` (Conv, ReLU pairs)."""
    out = OrderedDict()
    for k, v in sd.items():
        m = re.match(r'backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.'
                     r'(weight|bias)$', k)
        if m:
            k = f'backbone.fpn.{m[1]}_blocks.{m[2]}.0.{m[3]}'
        m = re.match(r'head\.(classification|regression)_head\.conv\.'
                     r'(\d+)\.(weight|bias)$', k)
        if m:
            k = (f'head.{m[1]}_head.conv.{int(m[2]) // 2}.0.{m[3]}')
        out[k] = v
    return out


def detect_arch(sd: Dict[str, Tensor]) -> str:
    """'v2' when the head has GroupNorm or P6 reads C5 (2048 channels),
    else 'v1'."""
    p6 = sd.get('backbone.fpn.extra_blocks.p6.weight')
    if 'head.classification_head.conv.0.1.weight' in sd or (
            p6 is not None and p6.dim() == 4 and p6.shape[1] == 2048):
        return 'v2'
    return 'v1'


def torchvision_model_config(arch: str,
                             num_classes: int,
                             frozen_bn: bool = True,
                             bn_eps: float = 1e-5,
                             score_thr: float = 0.05,
                             nms_thr: float = 0.5,
                             max_per_img: int = 300,
                             nms_pre: int = 1000) -> dict:
    """mmdet ``RetinaNet`` config of torchvision's model (module docstring).

    Args:
        arch (str): 'v1' (``retinanet_resnet50_fpn``, DeepForest) or 'v2'
            (``retinanet_resnet50_fpn_v2``).
        num_classes (int): K, classifier outputs per anchor.
        frozen_bn (bool): the backbone used FrozenBatchNorm2d (pretrained
            backbone): BN frozen for fine-tuning (``requires_grad=False``).
        bn_eps (float): the backbone norm's eps.
        score_thr, nms_thr, max_per_img, nms_pre: torchvision's
            ``score_thresh``, ``nms_thresh``, ``detections_per_img``,
            ``topk_candidates``.

    Returns:
        dict: the ``model`` config.
    """
    if arch not in ('v1', 'v2'):
        raise ValueError(f"arch must be 'v1' or 'v2', got {arch!r}")
    gn = dict(type='GN', num_groups=32, requires_grad=True)
    head = dict(
        type='mmretina.RetinaHead',
        num_classes=num_classes,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        norm_cfg=gn if arch == 'v2' else None,
        anchor_generator=dict(
            type='mmretina.TorchvisionAnchorGenerator',
            sizes=ANCHOR_SIZES,
            aspect_ratios=ASPECT_RATIOS,
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(
            type='mmretina.FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0))
    if arch == 'v2':
        # v2 trains its box branch with GIoU on decoded boxes
        head.update(reg_decoded_bbox=True,
                    loss_bbox=dict(type='GIoULoss', loss_weight=1.0))
    else:
        head.update(loss_bbox=dict(type='L1Loss', loss_weight=1.0))
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(
            type='DetDataPreprocessor',
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            bgr_to_rgb=True,
            pad_size_divisor=32),
        backbone=dict(
            type='ResNet',
            depth=50,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            # torchvision trains the last 3 stages of a pretrained backbone
            frozen_stages=1,
            norm_cfg=dict(type='BN', requires_grad=not frozen_bn,
                          eps=float(bn_eps)),
            norm_eval=True,
            style='pytorch',
            init_cfg=None),
        neck=dict(
            type='FPN',
            in_channels=[256, 512, 1024, 2048],
            out_channels=256,
            start_level=1,
            add_extra_convs='on_output' if arch == 'v1' else 'on_input',
            relu_before_extra_convs=True,
            num_outs=5),
        bbox_head=head,
        train_cfg=dict(
            # torchvision's Matcher(0.5, 0.4, allow_low_quality_matches)
            assigner=dict(
                type='mmretina.MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.4,
                min_pos_iou=0,
                ignore_iof_thr=-1),
            sampler=dict(type='PseudoSampler'),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        test_cfg=dict(
            nms_pre=int(nms_pre),
            min_bbox_size=-1,
            score_thr=float(score_thr),
            nms=dict(type='nms', iou_threshold=float(nms_thr),
                     split_thr=1001),
            max_per_img=int(max_per_img)))


def torchvision_test_pipeline(min_size: int = 800,
                              max_size: int = 1333) -> List[dict]:
    """The test pipeline of a converted model: torchvision's resize."""
    return [
        # mmdet's DetInferencer finds the loader by this name
        dict(type='LoadImageFromFile', _scope_='mmretina'),
        dict(type='mmretina.TorchvisionResize', min_size=int(min_size),
             max_size=int(max_size)),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(
            type='PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                       'scale_factor')),
    ]


def torchvision_config(model: dict, classes: Sequence[str],
                       min_size: int = 800, max_size: int = 1333,
                       load_from: Optional[str] = None) -> dict:
    """A whole config around ``model``: the test pipeline, a COCO-format
    test set to fill in (``data_root``, ``ann_file``), and mmretina's
    runtime, enough for ``tools/test.py``, ``tools/infer.py`` and
    ``init_detector``."""
    metainfo = dict(classes=tuple(classes))
    pipeline = torchvision_test_pipeline(min_size, max_size)
    data_root = 'data/'
    return dict(
        default_scope='mmdet',
        custom_imports=dict(imports=['mmretina'], allow_failed_imports=False),
        model=model,
        test_pipeline=pipeline,
        test_dataloader=dict(
            batch_size=1,
            num_workers=0,
            persistent_workers=False,
            drop_last=False,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(
                type='mmretina.CocoDataset',
                data_root=data_root,
                metainfo=metainfo,
                ann_file='annotations/test.json',
                data_prefix=dict(img='images/'),
                test_mode=True,
                pipeline=pipeline)),
        test_evaluator=dict(
            type='CocoMetric',
            ann_file=data_root + 'annotations/test.json',
            metric='bbox'),
        test_cfg=dict(type='TestLoop'),
        default_hooks=dict(
            timer=dict(type='IterTimerHook'),
            logger=dict(type='LoggerHook', interval=50),
            param_scheduler=dict(type='ParamSchedulerHook'),
            checkpoint=dict(type='CheckpointHook', interval=1),
            sampler_seed=dict(type='DistSamplerSeedHook'),
            visualization=dict(type='DetVisualizationHook')),
        env_cfg=dict(
            cudnn_benchmark=False,
            mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
            dist_cfg=dict(backend='gloo')),
        vis_backends=[dict(type='LocalVisBackend')],
        visualizer=dict(
            type='DetLocalVisualizer',
            vis_backends=[dict(type='LocalVisBackend')],
            name='visualizer'),
        log_processor=dict(type='LogProcessor', window_size=50,
                           by_epoch=True),
        log_level='INFO',
        load_from=load_from,
        resume=False)


# ----------------------------------------------------------------------
# conversion
# ----------------------------------------------------------------------
def _expected_mmdet_shapes(model_cfg: dict) -> Dict[str, torch.Size]:
    """Keys and shapes of the mmdet model ``model_cfg`` builds (built once
    per config: a ResNet-50 takes a second or two)."""
    return OrderedDict(_model_shapes(json.dumps(model_cfg, sort_keys=True)))


@functools.lru_cache(maxsize=8)
def _model_shapes(model_json: str) -> Tuple[Tuple[str, torch.Size], ...]:
    model_cfg = json.loads(model_json)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope

    # mmretina.* are registered: importing this module imported mmretina
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(model_cfg)
    return tuple((k, v.shape) for k, v in model.state_dict().items())


def _coco80_channels(num_anchors: int, per_anchor: int) -> Tensor:
    """Classifier output channels a * 91 + id of the 80 COCO ids, in mmdet's
    order a * 80 + j."""
    return torch.tensor([a * per_anchor + cid for a in range(num_anchors)
                         for cid in COCO80_IDS])


def torchvision_to_mmretina(
        state_dict: Dict[str, Tensor],
        arch: Optional[str] = None,
        num_classes: Optional[int] = None,
        class_names: Optional[Sequence[str]] = None,
        hub_config: Optional[dict] = None,
        bn_eps: Optional[float] = None,
        coco_labels: str = 'coco80',
        min_size: Optional[int] = None,
        max_size: Optional[int] = None,
        score_thr: Optional[float] = None,
        nms_thr: Optional[float] = None,
        max_per_img: Optional[int] = None,
        nms_pre: Optional[int] = None,
        source: str = 'state dict') -> Tuple[Dict[str, Tensor], dict]:
    """Convert a torchvision RetinaNet state dict (module docstring).

    Args:
        state_dict (dict[str, Tensor]): torchvision's keys
            (``backbone.body.*``, ``backbone.fpn.*``, ``head.*``), new
            (>= 0.13) or legacy layout.
        arch (str, optional): 'v1' or 'v2'; detected when None.
        num_classes (int, optional): expected K; an error if the classifier
            has another (91 -> 80 with ``coco_labels='coco80'`` is allowed).
        class_names (list[str], optional): K names; else from
            ``hub_config['label_dict']``, COCO's for 91 outputs, or
            ``class_0``, ...
        hub_config (dict, optional): DeepForest's ``config.json``:
            ``label_dict``, ``score_thresh``, ``nms_thresh``,
            ``detections_per_img``, ``topk_candidates``, ``min_size``,
            ``max_size``.
        bn_eps (float, optional): the backbone norm's eps. Default: 1e-5
            (nn.BatchNorm2d, FrozenBatchNorm2d), except 0.0 for a
            FrozenBN v1 model with 91 classes, which is torchvision's
            COCO_V1 release as ``retinanet_resnet50_fpn(weights='COCO_V1')``
            runs it.
        coco_labels (str): for 91 outputs: 'coco80' (mmdet's classes) or
            'coco91' (torchvision's indices, exact detections).
        min_size, max_size, score_thr, nms_thr, max_per_img, nms_pre:
            override torchvision's / the hub config's values.
        source (str): name of the input, for error messages.

    Returns:
        tuple[dict, dict]: the mmdet state dict and the full config (a dict
        for ``mmengine.Config``; ``meta`` info in ``config['mmretina_meta']``
        is not a config key: it is popped by :func:`convert_torchvision_file`
        into the checkpoint).

    Raises:
        KeyMismatchError: the keys or shapes are not torchvision's
            RetinaNet ResNet-50-FPN (missing / unexpected keys listed by
            backbone, fpn and head).
        ValueError: class count or names do not fit.
    """
    hub = dict(hub_config or {})
    sd = _legacy_keys(OrderedDict(state_dict))
    detected = detect_arch(sd)
    if arch is None:
        arch = detected
    elif arch != detected and 'backbone.fpn.extra_blocks.p6.weight' in sd:
        raise ValueError(
            f'{source}: --arch {arch} given, but the weights are the '
            f'{detected} layout (v2: GroupNorm head and P6 from C5). Pass '
            f'--arch {detected} or leave --arch out.')
    cls_bias = sd.get('head.classification_head.cls_logits.bias')
    reg_bias = sd.get('head.regression_head.bbox_reg.bias')
    if cls_bias is None or reg_bias is None or reg_bias.numel() % 4:
        _check_keys(sd, arch, 1, True, source)  # raises, listing keys
        raise KeyMismatchError(f'{source}: no RetinaNet classifier / box '
                               'regressor of torchvision\'s layout')
    num_anchors = reg_bias.numel() // 4
    if num_anchors != len(ANCHOR_SIZES[0]) * len(ASPECT_RATIOS):
        raise ValueError(
            f'{source}: {num_anchors} anchors per location; torchvision '
            'RetinaNet has 9 (3 sizes x 3 ratios). Custom anchor '
            'generators are not supported by this converter.')
    sd_classes = cls_bias.numel() // num_anchors
    if coco_labels not in ('coco80', 'coco91'):
        raise ValueError(f"coco_labels must be 'coco80' or 'coco91', got "
                         f'{coco_labels!r}')
    to_coco80 = sd_classes == 91 and coco_labels == 'coco80'
    out_classes = 80 if to_coco80 else sd_classes
    if hub.get('num_classes') is not None and int(
            hub['num_classes']) != sd_classes:
        raise ValueError(
            f'{source}: config.json says num_classes='
            f'{hub["num_classes"]}, the classifier has {sd_classes} classes '
            f'({cls_bias.numel()} outputs / {num_anchors} anchors)')
    if num_classes is not None and num_classes != out_classes:
        hint = (' (91 COCO indices become 80 classes; pass --num-classes 80 '
                'or --coco-labels coco91)' if sd_classes == 91 else '')
        raise ValueError(
            f'{source}: --num-classes {num_classes} does not match the '
            f'weights: the classifier has {sd_classes} classes '
            f'({cls_bias.numel()} outputs / {num_anchors} anchors){hint}. '
            f'Pass --num-classes {out_classes} (fine-tune with another '
            'class count by changing the config after conversion).')
    names = _class_names(class_names, hub, sd_classes, to_coco80, source)

    frozen_bn = not any(k.endswith('num_batches_tracked') for k in sd)
    if bn_eps is None:
        bn_eps = 0.0 if (frozen_bn and arch == 'v1'
                         and sd_classes == 91) else 1e-5
    model = torchvision_model_config(
        arch,
        out_classes,
        frozen_bn=frozen_bn,
        bn_eps=bn_eps,
        score_thr=_pick(score_thr, hub, 'score_thresh'),
        nms_thr=_pick(nms_thr, hub, 'nms_thresh'),
        max_per_img=_pick(max_per_img, hub, 'detections_per_img'),
        nms_pre=_pick(nms_pre, hub, 'topk_candidates'))
    expected = _check_keys(sd, arch, sd_classes, frozen_bn, source, model)

    out = OrderedDict()
    for k, v in sd.items():
        out[_rename(k, _TV_TO_MM)] = v
    if frozen_bn:  # mmdet's BatchNorm2d has the counter FrozenBN lacks
        for k in expected:
            if k.endswith('num_batches_tracked') and k not in out:
                out[k] = torch.tensor(0, dtype=torch.long)
    if to_coco80:
        keep = _coco80_channels(num_anchors, 91)
        out['bbox_head.retina_cls.weight'] = \
            out['bbox_head.retina_cls.weight'][keep].clone()
        out['bbox_head.retina_cls.bias'] = \
            out['bbox_head.retina_cls.bias'][keep].clone()
    out = OrderedDict((k, out[k]) for k in expected)  # mmdet's order

    sizes = dict(
        min_size=int(_pick(min_size, hub, 'min_size')),
        max_size=int(_pick(max_size, hub, 'max_size')))
    cfg = torchvision_config(model, names, **sizes)
    cfg['mmretina_meta'] = dict(
        torchvision=dict(
            arch=arch, frozen_bn=frozen_bn, bn_eps=float(bn_eps),
            num_classes=sd_classes,
            label_space='coco80' if to_coco80 else 'same'),
        dataset_meta=dict(classes=list(names)))
    return out, cfg


def _pick(value, hub: dict, key: str):
    if value is not None:
        return value
    if hub.get(key) is not None:
        return hub[key]
    return TORCHVISION_DEFAULTS[key]


def _class_names(class_names, hub: dict, sd_classes: int, to_coco80: bool,
                 source: str) -> List[str]:
    k = 80 if to_coco80 else sd_classes
    if class_names is not None:
        names = list(class_names)
    elif isinstance(hub.get('label_dict'), dict) and hub['label_dict']:
        by_index = sorted(hub['label_dict'].items(), key=lambda kv: kv[1])
        names = [name for name, _ in by_index]
        if [int(i) for _, i in by_index] != list(range(len(by_index))):
            raise ValueError(f'{source}: config.json label_dict indices '
                             f'must be 0..K-1, got {hub["label_dict"]}')
    elif sd_classes == 91:
        names91 = coco91_class_names()
        names = [names91[i] for i in COCO80_IDS] if to_coco80 else names91
    else:
        names = [f'class_{i}' for i in range(k)]
    if len(names) != k:
        raise ValueError(
            f'{source}: {len(names)} class names ({names}) for a classifier '
            f'of {k} classes; give exactly {k} names (--class-names)')
    return names


def _check_keys(sd: Dict[str, Tensor], arch: str, num_classes: int,
                frozen_bn: bool, source: str,
                model: Optional[dict] = None) -> Dict[str, torch.Size]:
    """Compare ``sd`` with torchvision's keys and shapes of ``arch``;
    returns the mmdet model's keys and shapes."""
    if model is None:
        model = torchvision_model_config(arch, num_classes, frozen_bn)
    else:
        model = dict(model, bbox_head=dict(model['bbox_head'],
                                           num_classes=num_classes))
    mm_shapes = _expected_mmdet_shapes(model)
    tv_shapes = OrderedDict()
    for k, shape in mm_shapes.items():
        if frozen_bn and k.endswith('num_batches_tracked'):
            continue
        tv_shapes[_rename(k, _MM_TO_TV)] = shape
    missing = [k for k in tv_shapes if k not in sd]
    unexpected = [k for k in sd if k not in tv_shapes]
    wrong = [
        f'{k} {tuple(sd[k].shape)} (expected {tuple(tv_shapes[k])})'
        for k in tv_shapes if k in sd and sd[k].shape != tv_shapes[k]
    ]
    if missing or unexpected or wrong:
        raise KeyMismatchError(
            _mismatch_message(
                source, f'torchvision RetinaNet ResNet-50-FPN {arch}',
                missing, unexpected, wrong) +
            '\n  Only retinanet_resnet50_fpn (v1, DeepForest) and '
            'retinanet_resnet50_fpn_v2 (v2) weights can be converted.')
    return mm_shapes


def mmretina_to_torchvision(state_dict: Dict[str, Tensor],
                            frozen_bn: bool = False,
                            source: str = 'state dict'
                            ) -> Dict[str, Tensor]:
    """An mmretina RetinaNet state dict in torchvision's keys, for
    ``retinanet_resnet50_fpn[_v2](num_classes=K).load_state_dict``.

    The model must have torchvision's layout: ResNet-50, FPN on C3-C5 with
    P6 / P7 (``start_level=1``), 256-channel head of 4 convs (v2: GN) and 9
    anchors per location. Its classes stay as they are (K outputs).

    Args:
        state_dict (dict[str, Tensor]): mmdet keys (``backbone.*``,
            ``neck.*``, ``bbox_head.*``).
        frozen_bn (bool): drop ``num_batches_tracked`` (torchvision's
            FrozenBatchNorm2d has none; it also ignores them on load).
        source (str): name of the input, for error messages.

    Returns:
        dict[str, Tensor]: torchvision's keys, in torchvision's order.
    """
    sd = OrderedDict(state_dict)
    cls_bias = sd.get('bbox_head.retina_cls.bias')
    reg_bias = sd.get('bbox_head.retina_reg.bias')
    p6 = sd.get('neck.fpn_convs.3.conv.weight')
    if cls_bias is None or reg_bias is None or p6 is None:
        arch, num_classes = 'v1', 1
    else:
        arch = 'v2' if ('bbox_head.cls_convs.0.gn.weight' in sd
                        or p6.shape[1] == 2048) else 'v1'
        num_classes = cls_bias.numel() // max(1, reg_bias.numel() // 4)
    model = torchvision_model_config(arch, num_classes, frozen_bn=False)
    expected = _expected_mmdet_shapes(model)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [
        f'{k} {tuple(sd[k].shape)} (expected {tuple(expected[k])})'
        for k in expected if k in sd and sd[k].shape != expected[k]
    ]
    if missing or unexpected or wrong:
        raise KeyMismatchError(
            _mismatch_message(source,
                              f'torchvision-expressible RetinaNet ({arch})',
                              missing, unexpected, wrong) +
            '\n  Only ResNet-50-FPN RetinaNets in torchvision\'s layout '
            '(as torchvision_to_mmretina writes them) can be converted.')
    out = OrderedDict()
    for k in expected:
        if frozen_bn and k.endswith('num_batches_tracked'):
            continue
        out[_rename(k, _MM_TO_TV)] = sd[k]
    return _torchvision_order(out)


def _torchvision_order(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """torchvision's state-dict order: backbone.body, then per FPN module
    inner_blocks, layer_blocks, extra_blocks; then the head."""
    def rank(k):
        for i, prefix in enumerate(
            ('backbone.body.', 'backbone.fpn.inner_blocks.',
             'backbone.fpn.layer_blocks.', 'backbone.fpn.extra_blocks.',
             'head.classification_head.', 'head.regression_head.')):
            if k.startswith(prefix):
                return i
        return 99
    keys = sorted(sd, key=rank)  # stable: order within a group kept
    return OrderedDict((k, sd[k]) for k in keys)


# ----------------------------------------------------------------------
# files
# ----------------------------------------------------------------------
def convert_torchvision_file(src: str, dst: str,
                             config_out: Optional[str] = None,
                             gsd: Optional[float] = None,
                             tile: Optional[int] = None,
                             **kwargs) -> Tuple[str, Optional[str]]:
    """Read a torchvision / DeepForest RetinaNet weights file (and the
    ``config.json`` beside it), write an mmengine checkpoint ``dst`` and,
    with ``config_out``, the config (``.py``). ``gsd`` (metres) and
    ``tile`` (px; default: the hub config's ``patch_size``) are the raster
    keys of the config (:mod:`mmretina.cli.options`): the ground sample
    distance of the model's training imagery (DeepForest's tree model:
    NEON's 0.1 m) and its window. ``kwargs`` go to
    :func:`torchvision_to_mmretina`. Returns (dst, config_out)."""
    from mmengine.config import Config
    sd = load_weights_file(src)
    hub = kwargs.pop('hub_config', None) or read_hub_config(src)
    state, cfg = torchvision_to_mmretina(
        sd, hub_config=hub, source=src, **kwargs)
    meta = cfg.pop('mmretina_meta')
    meta['converted_from'] = osp.basename(src)
    tile = tile or (hub or {}).get('patch_size')
    if gsd:
        cfg['gsd'] = float(gsd)
    if tile:
        cfg['tile'] = int(tile)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(meta=meta, state_dict=state), dst)
    if config_out:
        cfg['load_from'] = osp.abspath(dst)
        text = Config(cfg).pretty_text
        os.makedirs(osp.dirname(osp.abspath(config_out)), exist_ok=True)
        with open(config_out, 'w') as f:
            f.write(f'# torchvision RetinaNet {meta["torchvision"]["arch"]} '
                    f'converted from {osp.basename(src)} by mmretina\n'
                    '# (mmretina/models/converters/torchvision.py). Set the '
                    'test set in\n# test_dataloader / test_evaluator to run '
                    'tools/test.py.\n')
            f.write(text)
    return dst, config_out


def convert_mmretina_file(src: str, dst: str,
                          frozen_bn: Optional[bool] = None) -> str:
    """Read an mmretina checkpoint and write torchvision's state dict
    (``.pth``, or ``.safetensors`` by extension). ``frozen_bn`` defaults to
    what the checkpoint's conversion metadata records (else False)."""
    if not osp.isfile(src):
        raise FileNotFoundError(f'{src}: no such file')
    try:
        ckpt = load_checkpoint_file(src, map_location='cpu')
    except pickle.UnpicklingError as e:
        raise ValueError(
            f'{src}: refused: holds objects an mmengine checkpoint does not '
            f'({str(e).splitlines()[0]})') from e
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(
            f'{src}: not a readable checkpoint ({str(e).splitlines()[0]}); '
            'it may be truncated') from e
    if frozen_bn is None:
        meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
        tv = (meta or {}).get('torchvision') or {}
        frozen_bn = bool(tv.get('frozen_bn', False))
    sd = _unwrap_state_dict(ckpt, src)
    out = mmretina_to_torchvision(sd, frozen_bn=frozen_bn, source=src)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    if dst.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in out.items()}, dst)
    else:
        torch.save(out, dst)
    return dst
