"""ONNX export of a RetinaNet: preprocessing, backbone, neck, head, anchor
generation, box decoding and, for axis-aligned boxes, class-aware NMS in one
graph. Oriented (rotated-box) models are exported the same way up to NMS,
which runs after the graph (ONNX has no rotated NMS operator).

Graph inputs (dynamic batch and image size):

* ``image``: N x 3 x H x W float32, raw pixels in the order the data
  preprocessor receives them (BGR from mmcv's loaders), already resized by
  the test pipeline and padded at the right and bottom to a multiple of the
  preprocessor's ``pad_size_divisor`` with :func:`pad_pixel_value` (the raw
  value that normalises to the preprocessor's ``pad_value``).
* ``img_info``: N x 4 float32, per image ``(img_h, img_w, scale_w,
  scale_h)``: the resized (unpadded) size that boxes are clipped to and
  mmdet's ``scale_factor`` that boxes are divided by (``rescale=True``).

Graph outputs of an axis-aligned model (``mmretina_format`` retinanet-v1):
``dets`` N x D x 4 boxes (x1, y1, x2, y2) in original image pixels,
``scores`` N x D, ``labels`` N x D (int64), ``num_dets`` N (int64): the
first ``num_dets[i]`` rows of image i are its detections, by descending
score (D = ``max_per_img``; the rest are zeros).

Graph outputs of an oriented model (``DeltaXYWHTRBBoxCoder``,
``mmretina_format`` retinanet-rbox-v1): the same four names, but ``dets``
N x D x 5 are the NMS *candidates* ``(cx, cy, w, h, angle)`` in original
image pixels and radians, D = ``nms_pre`` x levels; the first
``num_dets[i]`` rows of image i are its candidates in mmdet's order (level
by level, each level by descending score), the rest zeros. The runtime
(:class:`~mmretina.deploy.runtime.OrtBackend`) applies mmcv's
``batched_nms`` with the config's ``nms`` (``type='nms_rotated'``) and keeps
``max_per_img``, as ``BaseDenseHead._bbox_post_process`` does.

Semantics are those of ``RetinaHead.predict_by_feat`` (mmdet's): per image
and level the ``nms_pre`` (anchor, class) pairs of highest sigmoid score
above ``score_thr``; anchors from the prior generator computed in the graph
from each feature map's size (an oriented generator's anchors converted
with mmrotate's ``hbox2rbox`` and regularised to its ``angle_version``);
``DeltaXYWHBBoxCoder`` decoding clipped to ``img_shape``, or the head's
``DeltaXYWHTRBBoxCoder.decode`` itself (mmrotate's arithmetic: angle
version, ``edge_swap``, ``proj_xy``, ``norm_factor``, ``wh_ratio_clip``)
with centres clamped to ``img_shape``; rescale (for rotated boxes
``RotatedBoxes.rescale_``); boxes not wider and higher than
``min_bbox_size`` dropped; class-aware NMS (ONNX ``NonMaxSuppression`` runs
per class, which is what mmcv's ``batched_nms`` computes with its coordinate
offsets); the ``max_per_img`` best over all classes. Differences:
``nms_pre <= 0`` (keep all) is not exportable (the top-k size is static);
ties between equal scores may be broken in another order.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = [
    'RetinaNetONNX', 'export_onnx', 'nonmax_suppression', 'pad_pixel_value',
    'onnx_metadata', 'FORMAT_HBOX', 'FORMAT_RBOX'
]

# ``mmretina_format`` of an export: axis-aligned boxes with NMS in the graph,
# or oriented boxes whose NMS the runtime applies (a reader that knows only
# the first refuses the second rather than returning unsuppressed boxes)
FORMAT_HBOX = 'retinanet-v1'
FORMAT_RBOX = 'retinanet-rbox-v1'


# ----------------------------------------------------------------------
# NonMaxSuppression as a torch custom op with an ONNX translation
# ----------------------------------------------------------------------
@torch.library.custom_op('mmretina::nonmax_suppression', mutates_args=())
def nonmax_suppression(boxes: Tensor, scores: Tensor, max_output: int,
                       iou_threshold: float,
                       score_threshold: float) -> Tensor:
    """ONNX ``NonMaxSuppression`` (center_point_box=0) in PyTorch.

    Args:
        boxes (Tensor): N x K x 4 (x1, y1, x2, y2).
        scores (Tensor): N x C x K.
        max_output (int): boxes kept per image and class.
        iou_threshold (float): suppress boxes with IoU > this.
        score_threshold (float): only boxes with score > this.

    Returns:
        Tensor: S x 3 int64 (image, class, box index), by image, class,
        descending score.
    """
    from mmcv.ops import nms
    rows = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            s = scores[b, c]
            idx = (s > score_threshold).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            _, keep = nms(boxes[b, idx].contiguous(), s[idx].contiguous(),
                          iou_threshold)
            keep = idx[keep[:max_output]]
            rows.append(
                torch.stack([
                    torch.full_like(keep, b),
                    torch.full_like(keep, c), keep
                ], 1))
    if not rows:
        return torch.zeros((0, 3), dtype=torch.int64, device=boxes.device)
    return torch.cat(rows).to(torch.int64)


@nonmax_suppression.register_fake
def _nonmax_suppression_fake(boxes, scores, max_output, iou_threshold,
                             score_threshold):
    num = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((num, 3), dtype=torch.int64)


def _nms_translation(opset: int):
    """onnxscript translation of ``mmretina::nonmax_suppression``."""
    import onnxscript
    op = getattr(onnxscript, f'opset{opset}', onnxscript.opset18)

    def nms_onnx(boxes, scores, max_output: int, iou_threshold: float,
                 score_threshold: float):
        return op.NonMaxSuppression(
            boxes, scores, op.Constant(value_ints=[max_output]),
            op.Constant(value_floats=[iou_threshold]),
            op.Constant(value_floats=[score_threshold]),
            center_point_box=0)

    return nms_onnx


# ----------------------------------------------------------------------
# the traceable detector
# ----------------------------------------------------------------------
def _cfg_get(cfg, key, default=None):
    return cfg.get(key, default) if cfg is not None else default


def pad_pixel_value(data_preprocessor) -> Tuple[float, float, float]:
    """The raw input value, per channel of the *input* order, that the data
    preprocessor's normalisation maps to its ``pad_value``: padding the raw
    image with it equals mmdet's padding after normalisation."""
    pad = float(getattr(data_preprocessor, 'pad_value', 0))
    if getattr(data_preprocessor, '_enable_normalize', False):
        mean = data_preprocessor.mean.flatten().tolist()
        std = data_preprocessor.std.flatten().tolist()
    else:
        mean, std = [0.0] * 3, [1.0] * 3
    vals = [pad * s + m for m, s in zip(mean, std)]
    if getattr(data_preprocessor, '_channel_conversion', False):
        vals = vals[::-1]
    return tuple(vals)


class RetinaNetONNX(nn.Module):
    """An mmdet ``RetinaNet`` (mmretina's or mmdet's ``RetinaHead``) as one
    traceable module: raw padded images in, detections out (see the module
    docstring for inputs and outputs). A head whose coder is 5 wide
    (mmrotate's ``DeltaXYWHTRBBoxCoder``, oriented boxes; ``test_cfg.nms``
    of type ``nms_rotated``) gives its NMS candidates instead
    (``rotated`` True, ``box_dim`` 5).

    Anchors: the generator's base anchors shifted by each level's stride;
    a generator with a ``level_strides(featmap_sizes)`` method
    (``TorchvisionAnchorGenerator``: padded input size // feature size, so
    P6 / P7 strides of 57 / 96 on 288 px, not 64 / 128) has its strides
    computed in the graph from the feature map sizes, as in PyTorch.

    Args:
        detector (nn.Module): the detector (``extract_feat``,
            ``bbox_head``, ``data_preprocessor``), in eval mode.
        test_cfg (dict, optional): overrides ``bbox_head.test_cfg``.
    """

    def __init__(self, detector: nn.Module, test_cfg: Optional[dict] = None):
        super().__init__()
        self.detector = detector
        head = detector.bbox_head
        cfg = test_cfg if test_cfg is not None else head.test_cfg
        if not getattr(head, 'use_sigmoid_cls', True):
            raise ValueError(
                'the ONNX export needs a sigmoid classifier '
                '(bbox_head.loss_cls.use_sigmoid=True); this head has a '
                'softmax one')
        coder = head.bbox_coder
        # oriented models: a 5-wide coder (mmrotate's encode_size)
        self.rotated = int(getattr(coder, 'encode_size', 4)) == 5
        self.box_dim = 5 if self.rotated else 4
        nms_cfg = dict(_cfg_get(cfg, 'nms', None) or {})
        if self.rotated:
            _check_rotated(coder, nms_cfg)
        else:
            if type(coder).__name__ != 'DeltaXYWHBBoxCoder':
                raise ValueError('the ONNX export decodes boxes of '
                                 'DeltaXYWHBBoxCoder (axis-aligned) or '
                                 'DeltaXYWHTRBBoxCoder (oriented); '
                                 'bbox_head.bbox_coder is '
                                 f'{type(coder).__name__}')
            if getattr(coder, 'add_ctr_clamp', False):
                raise ValueError(
                    'bbox_head.bbox_coder.add_ctr_clamp=True cannot be '
                    'exported: the graph decodes boxes without the centre '
                    'clamp')
            if nms_cfg.get('type', 'nms') != 'nms' or nms_cfg.get(
                    'class_agnostic', False):
                raise ValueError('only class-aware hard NMS (type="nms") is '
                                 f'exportable, test_cfg.nms is {nms_cfg}')
        self.coder = coder
        # the NMS the runtime applies after an oriented graph
        self.nms_cfg = nms_cfg
        self.nms_pre = int(_cfg_get(cfg, 'nms_pre', -1))
        if self.nms_pre <= 0:
            raise ValueError(
                f'test_cfg.nms_pre={self.nms_pre}: the exported graph needs '
                'a fixed number of candidates per level (nms_pre > 0)')
        self.score_thr = float(_cfg_get(cfg, 'score_thr', 0.0))
        self.iou_thr = float(nms_cfg.get('iou_threshold', 0.5))
        self.max_per_img = int(_cfg_get(cfg, 'max_per_img', 100))
        self.min_bbox_size = float(_cfg_get(cfg, 'min_bbox_size', -1))
        self.num_classes = int(head.cls_out_channels)
        self.num_anchors = int(head.num_base_priors)
        self.num_levels = len(head.prior_generator.strides)
        self.clip_border = bool(getattr(coder, 'clip_border', True))
        # DeltaXYWHBBoxCoder.decode's default wh_ratio_clip (16 / 1000)
        self.max_ratio = float(
            abs(math.log(getattr(coder, 'wh_ratio_clip', 16 / 1000))))
        self.register_buffer(
            'means', torch.tensor(coder.means, dtype=torch.float32),
            persistent=False)
        self.register_buffer(
            'stds', torch.tensor(coder.stds, dtype=torch.float32),
            persistent=False)
        pre = detector.data_preprocessor
        self.bgr_to_rgb = bool(getattr(pre, '_channel_conversion', False))
        self.normalize = bool(getattr(pre, '_enable_normalize', False))
        if self.normalize:
            self.register_buffer(
                'pix_mean', pre.mean.detach().float().view(1, -1, 1, 1),
                persistent=False)
            self.register_buffer(
                'pix_std', pre.std.detach().float().view(1, -1, 1, 1),
                persistent=False)
        # base anchors per level, (A, 4), and the strides
        gen = head.prior_generator
        for lvl in range(self.num_levels):
            self.register_buffer(
                f'base_anchors_{lvl}',
                gen.base_anchors[lvl].detach().float().clone(),
                persistent=False)
        self.strides = [tuple(float(s) for s in st) for st in gen.strides]
        # generators whose strides depend on the input (torchvision's rule,
        # TorchvisionAnchorGenerator: padded size // feature size) say so
        # with a ``level_strides(featmap_sizes)`` method; the graph then
        # computes them from the feature map sizes as the model does
        level_strides = getattr(gen, 'level_strides', None)
        self.level_strides = level_strides if callable(level_strides) \
            else None
        # FakeRotatedAnchorGenerator (mmrotate's or mmretina's): the
        # axis-aligned anchors as (cx, cy, w, h, 0), regularised to this
        self.anchor_angle_version = getattr(gen, 'angle_version', None) \
            if self.rotated else None

    def _level_strides(self, featmap_sizes: List[Tuple[int, int]]
                       ) -> List[Tuple[float, float]]:
        """(stride_w, stride_h) per level for feature maps of
        ``featmap_sizes`` ((H_l, W_l) each): the generator's
        ``level_strides`` where it has one, else its fixed strides."""
        if self.level_strides is None:
            return self.strides
        return list(self.level_strides(featmap_sizes))

    def _anchors(self, lvl: int, height, width, device,
                 stride: Tuple[float, float]) -> Tensor:
        """(H * W * A, 4) anchors of level ``lvl``, index (y*W + x)*A + a,
        as ``AnchorGenerator.single_level_grid_priors``, with
        ``stride`` = (stride_w, stride_h) in input pixels."""
        base = getattr(self, f'base_anchors_{lvl}')
        stride_w, stride_h = stride
        shift_x = torch.arange(0, width, device=device).float() * stride_w
        shift_y = torch.arange(0, height, device=device).float() * stride_h
        yy, xx = torch.meshgrid(shift_y, shift_x, indexing='ij')
        xx, yy = xx.reshape(-1), yy.reshape(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=-1)
        return (base[None, :, :] + shifts[:, None, :]).reshape(-1, 4)

    def _decode(self, anchors: Tensor, deltas: Tensor,
                img_info: Tensor) -> Tensor:
        """mmdet's ``delta2bbox``; anchors and deltas N x K x 4."""
        d = deltas * self.stds + self.means
        dxy, dwh = d[..., :2], d[..., 2:]
        pxy = (anchors[..., :2] + anchors[..., 2:]) * 0.5
        pwh = anchors[..., 2:] - anchors[..., :2]
        dxy_wh = pwh * dxy
        dwh = dwh.clamp(min=-self.max_ratio, max=self.max_ratio)
        gxy = pxy + dxy_wh
        gwh = pwh * dwh.exp()
        boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
        if self.clip_border:
            hw = img_info[:, :2]
            whwh = torch.cat([hw[:, 1:2], hw[:, 0:1]] * 2, dim=1)[:, None, :]
            boxes = torch.minimum(boxes.clamp(min=0), whwh)
        return boxes

    def _decode_rotated(self, anchors: Tensor, deltas: Tensor,
                        img_info: Tensor) -> Tensor:
        """The head's ``DeltaXYWHTRBBoxCoder.decode`` on N x K x 4
        axis-aligned anchors and N x K x 5 deltas; N x K x 5 boxes
        (cx, cy, w, h, angle) in input pixels.

        mmdet's head passes ``max_shape=img_shape``, which clamps the
        centres to [0, W - 1] x [0, H - 1]; the edge swap that follows in
        ``delta2bbox`` does not read them, so clamping after the decode,
        per image from ``img_info``, is the same arithmetic."""
        from mmrotate.structures.bbox import hbox2rbox
        from mmretina.structures.rotated import regularize_rboxes
        rois = hbox2rbox(anchors)
        if self.anchor_angle_version:
            rois = regularize_rboxes(rois, self.anchor_angle_version)
        boxes = self.coder.decode(rois, deltas, max_shape=None)
        boxes = boxes.tensor if hasattr(boxes, 'tensor') else boxes
        hi = (img_info[:, [1, 0]] - 1)[:, None, :]
        ctr = torch.minimum(boxes[..., :2].clamp(min=0), hi)
        return torch.cat([ctr, boxes[..., 2:]], dim=-1)

    @staticmethod
    def _rescale_rotated(boxes: Tensor, img_info: Tensor) -> Tensor:
        """mmrotate's ``RotatedBoxes.rescale_`` with the factors
        ``1 / scale_factor`` of each image (N x K x 5 boxes): centres
        scaled, width and height stretched along their direction, the angle
        recomputed with atan2."""
        scale = 1.0 / img_info[:, None, 2:4]
        sx, sy = scale[..., 0], scale[..., 1]
        ctrs = boxes[..., :2] * scale
        w, h, t = boxes[..., 2], boxes[..., 3], boxes[..., 4]
        cos_t, sin_t = torch.cos(t), torch.sin(t)
        w = w * torch.sqrt((sx * cos_t)**2 + (sy * sin_t)**2)
        h = h * torch.sqrt((sx * sin_t)**2 + (sy * cos_t)**2)
        t = torch.atan2(sx * sin_t, sy * cos_t)
        return torch.cat([ctrs, torch.stack([w, h, t], dim=-1)], dim=-1)

    def forward(self, image: Tensor,
                img_info: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        x = image
        if self.bgr_to_rgb:
            x = x[:, [2, 1, 0]]
        if self.normalize:
            x = (x - self.pix_mean) / self.pix_std
        feats = self.detector.extract_feat(x)
        cls_scores, bbox_preds = self.detector.bbox_head(feats)
        num = image.shape[0]
        C, k, dim = self.num_classes, self.nms_pre, self.box_dim
        all_boxes, all_scores, all_labels = [], [], []
        strides = self._level_strides(
            [(cls.shape[-2], cls.shape[-1]) for cls in cls_scores])
        for lvl, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
            height, width = cls.shape[-2], cls.shape[-1]
            anchors = self._anchors(lvl, height, width, cls.device,
                                    strides[lvl])
            # flat index ((y * W + x) * A + a) * C + c, as mmdet's
            scores = cls.permute(0, 2, 3, 1).reshape(num, -1).float()
            scores = scores.sigmoid()
            deltas = reg.permute(0, 2, 3, 1).reshape(num, -1, dim).float()
            total = scores.shape[1]
            # pad with -1 so that top-k has a static size on any image
            scores = torch.cat([scores, scores.new_full((num, k), -1.0)], 1)
            top, idx = scores.topk(k, dim=1)
            valid = idx < total
            anchor_idx = torch.where(valid, idx // C, torch.zeros_like(idx))
            labels = idx % C
            sel_anchors = anchors[anchor_idx]
            sel_deltas = torch.gather(
                deltas, 1, anchor_idx[..., None].expand(-1, -1, dim))
            if self.rotated:
                boxes = self._decode_rotated(sel_anchors, sel_deltas,
                                             img_info)
            else:
                boxes = self._decode(sel_anchors, sel_deltas, img_info)
            all_boxes.append(boxes)
            all_scores.append(torch.where(valid, top, -torch.ones_like(top)))
            all_labels.append(labels)
        boxes = torch.cat(all_boxes, 1)  # N x K x dim
        scores = torch.cat(all_scores, 1)  # N x K
        labels = torch.cat(all_labels, 1)  # N x K
        # rescale to the original image (mmdet divides by scale_factor)
        if self.rotated:
            boxes = self._rescale_rotated(boxes, img_info)
            w, h = boxes[..., 2], boxes[..., 3]
        else:
            sf = img_info[:, 2:4]
            boxes = boxes / torch.cat([sf, sf], dim=1)[:, None, :]
            w = boxes[..., 2] - boxes[..., 0]
            h = boxes[..., 3] - boxes[..., 1]
        valid = scores > self.score_thr
        if self.min_bbox_size >= 0:
            valid = valid & (w > self.min_bbox_size) & (
                h > self.min_bbox_size)
        if self.rotated:
            return self._candidates(boxes, scores, labels, valid)
        scores = torch.where(valid, scores, -torch.ones_like(scores))
        cand = boxes.shape[1]
        cls_range = torch.arange(C, device=labels.device)
        per_class = torch.where(labels[:, None, :] == cls_range[None, :, None],
                                scores[:, None, :],
                                -torch.ones_like(scores)[:, None, :])
        selected = nonmax_suppression(boxes, per_class, self.max_per_img,
                                      self.iou_thr, self.score_thr)
        flat_sel = (selected[:, 0] * C + selected[:, 1]) * cand + \
            selected[:, 2]
        flat_scores = per_class.reshape(-1)
        kept = torch.full_like(flat_scores, -1.0).scatter(
            0, flat_sel, flat_scores[flat_sel]).reshape(num, C * cand)
        max_dets = min(self.max_per_img, C * self.nms_pre * self.num_levels)
        det_scores, order = kept.topk(max_dets, dim=1)
        det_labels = order // cand
        det_boxes = torch.gather(boxes, 1,
                                 (order % cand)[..., None].expand(-1, -1, 4))
        is_det = det_scores > -0.5
        return self._first_rows(det_boxes, det_scores, det_labels, is_det)

    @staticmethod
    def _first_rows(boxes: Tensor, scores: Tensor, labels: Tensor,
                    keep: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """The graph's outputs from N x D rows whose kept rows come first:
        the others zeroed, ``num_dets`` N the count of kept rows."""
        num_dets = keep.sum(1)
        scores = torch.where(keep, scores, torch.zeros_like(scores))
        boxes = torch.where(keep[..., None], boxes, torch.zeros_like(boxes))
        labels = torch.where(keep, labels, torch.zeros_like(labels))
        return boxes, scores, labels, num_dets

    def _candidates(self, boxes: Tensor, scores: Tensor, labels: Tensor,
                    valid: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """An oriented graph's outputs: the valid candidates of each image
        moved to the front, keeping mmdet's order (level by level, by
        descending score), which is the order mmcv's ``batched_nms``
        receives them in PyTorch (ties are then broken alike)."""
        cand = boxes.shape[1]
        pos = torch.arange(cand, device=scores.device)[None, :]
        # valid rows keep their position as key, the others go after
        key = torch.where(valid, pos, pos + cand)
        _, order = key.topk(cand, dim=1, largest=False)
        keep = torch.gather(valid, 1, order)
        return self._first_rows(
            torch.gather(boxes, 1, order[..., None].expand(-1, -1, 5)),
            torch.gather(scores, 1, order), torch.gather(labels, 1, order),
            keep)


def _check_rotated(coder, nms_cfg: dict) -> None:
    """Refuse oriented heads the graph cannot express: a coder that is not
    (a subclass of) mmrotate's ``DeltaXYWHTRBBoxCoder``, or an NMS other
    than mmcv's ``nms_rotated``."""
    names = [c.__name__ for c in type(coder).__mro__]
    if 'DeltaXYWHTRBBoxCoder' not in names:
        raise ValueError(
            'the ONNX export decodes oriented boxes of mmrotate\'s '
            'DeltaXYWHTRBBoxCoder; bbox_head.bbox_coder is '
            f'{type(coder).__name__}')
    if getattr(coder, 'angle_version', None) not in ('le90', 'oc', 'le135',
                                                     'r360'):
        raise ValueError('DeltaXYWHTRBBoxCoder.angle_version '
                         f'{getattr(coder, "angle_version", None)!r}: '
                         'choose le90, oc, le135 or r360')
    if nms_cfg.get('type', 'nms') != 'nms_rotated':
        raise ValueError(
            'an oriented model needs test_cfg.nms=dict(type="nms_rotated", '
            f'iou_threshold=...), it has {nms_cfg}')


def onnx_metadata(cfg, detector: nn.Module,
                  wrapper: RetinaNetONNX) -> Dict[str, str]:
    """What the onnxruntime runner needs besides the graph: the format
    (:data:`FORMAT_HBOX` or :data:`FORMAT_RBOX`), the test pipeline
    (resize), padding, classes, the config's raster keys (``gsd``,
    ``tile``, ``bands``, ``scale``) and, for an oriented model, ``nms``
    (the JSON ``test_cfg.nms`` the runtime applies) and ``angle_version``
    (the coder's)."""
    import json

    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.config import Config
    pipeline = get_test_pipeline_cfg(Config(cfg.to_dict()))
    pre = detector.data_preprocessor
    meta = getattr(detector, 'dataset_meta', None) or {}
    meta = dict(
        mmretina_format=FORMAT_RBOX if wrapper.rotated else FORMAT_HBOX,
        test_pipeline=json.dumps(
            [dict(t) for t in pipeline], default=str),
        pad_size_divisor=str(int(getattr(pre, 'pad_size_divisor', 1))),
        pad_value=json.dumps(list(pad_pixel_value(pre))),
        classes=json.dumps(list(meta.get('classes', ()))),
        palette=json.dumps(meta.get('palette', None), default=list),
        nms_iou=str(wrapper.iou_thr),
        score_thr=str(wrapper.score_thr),
        max_per_img=str(wrapper.max_per_img),
        nms_pre=str(wrapper.nms_pre),
        # how rasters are read for this model (mmretina.cli.options)
        raster=json.dumps({k: cfg.get(k) for k in ('gsd', 'tile', 'bands',
                                                    'scale')
                           if cfg.get(k) is not None}, default=list))
    if wrapper.rotated:
        # what the runtime needs to finish an oriented graph: the NMS after
        # it (mmcv's batched_nms config) and the boxes' angle convention
        meta.update(
            nms=json.dumps(wrapper.nms_cfg),
            angle_version=str(wrapper.coder.angle_version))
    return meta


def export_onnx(detector: nn.Module,
                out: str,
                cfg=None,
                dynamic: bool = True,
                opset: int = 18,
                example_size: Sequence[int] = (320, 320),
                test_cfg: Optional[dict] = None) -> str:
    """Export ``detector`` to ``out`` with torch's dynamo ONNX exporter and
    store :func:`onnx_metadata` in the model. Returns ``out``.

    Args:
        detector (nn.Module): an mmdet RetinaNet (``init_detector``).
        out (str): the .onnx file.
        cfg (Config, optional): the config (default ``detector.cfg``).
        dynamic (bool): dynamic batch size and image height / width;
            otherwise the graph takes 1 x 3 x ``example_size`` only.
        opset (int): ONNX opset (>= 18).
        example_size (tuple[int, int]): (H, W) of the tracing example
            (multiples of the largest stride).
    """
    import os
    import onnx
    from torch.export import Dim
    # the folder first: an export takes 20-35 s, a missing folder should
    # not cost them (nor end in a traceback after them)
    folder = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise OSError(f'cannot create the folder {folder} of --out {out}: '
                      f'{e.strerror}; choose another output path') from e
    if not os.access(folder, os.W_OK):
        raise PermissionError(f'the folder {folder} of --out {out} is not '
                              'writable; choose another output path')
    cfg = cfg if cfg is not None else detector.cfg
    detector = detector.eval()
    wrapper = RetinaNetONNX(detector, test_cfg).eval()
    h, w = example_size
    image = torch.rand(1, 3, h, w) * 255
    img_info = torch.tensor([[h, w, 1.0, 1.0]], dtype=torch.float32)
    dynamic_shapes = None
    if dynamic:
        # H and W are multiples of the padding divisor (32 for FPN P5);
        # expressing them as 32 * k lets the exporter prove that the
        # feature map sizes divide exactly.
        batch = Dim('batch', min=1, max=1024)
        hk = Dim('h32', min=1, max=512)
        wk = Dim('w32', min=1, max=512)
        dynamic_shapes = dict(
            image={0: batch, 2: 32 * hk, 3: 32 * wk}, img_info={0: batch})
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper, (image, img_info),
            dynamo=True,
            opset_version=opset,
            input_names=['image', 'img_info'],
            output_names=['dets', 'scores', 'labels', 'num_dets'],
            dynamic_shapes=dynamic_shapes,
            custom_translation_table={
                torch.ops.mmretina.nonmax_suppression.default:
                _nms_translation(opset)
            },
            external_data=False)
    model = program.model_proto
    for key, value in onnx_metadata(cfg, detector, wrapper).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, out)
    return out
