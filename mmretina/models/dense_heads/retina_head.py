"""RetinaNet's dense head (Lin et al., "Focal Loss for Dense Object
Detection", sec. 4 and fig. 3).

Two subnets of ``stacked_convs`` 3x3 convs + ReLU run on every pyramid level:
the classification subnet ends in a conv with A*K sigmoid outputs, the box
subnet in one with A*4 deltas. State-dict keys, constructor arguments and
results are those of mmdet's ``RetinaHead``; what differs is how the work is
done:

* anchors and valid flags are cached by feature sizes, device and dtype;
* targets of the whole batch come from one assignment
  (:meth:`MaxIoUAssigner.assign_batch`), not an image loop;
* the focal loss is one fused, chunked call over all levels, without a
  one-hot tensor, and the box loss runs on positives only;
* prediction selects candidates of all images and levels at once and decodes
  only those.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmcv.ops import batched_nms, nms
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.structures.bbox import get_box_tensor, get_box_wh, scale_boxes
from mmdet.utils import (ConfigType, InstanceList, OptConfigType,
                         OptInstanceList, OptMultiConfig)
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor

from mmretina.models.losses.focal_loss import FocalLoss, focal_loss_sum
from mmretina.models.task_modules.assigners.max_iou_assigner import (
    MaxIoUAssigner, pad_boxes)
from mmretina.models.task_modules.prior_generators.anchor_generator import \
    valid_sizes
from mmretina.registry import MODELS, TASK_UTILS


class BatchTargets:
    """Training targets of a batch, anchors concatenated over levels.

    Attributes:
        labels (Tensor): (B, N) int64; class of positives, K elsewhere.
        label_weights (Tensor): (B, N) float; 0 for ignored / outside.
        pos_inds (Tensor): (P, 2) int64 (image, anchor) of positives.
        bbox_targets (Tensor): (P, D) regression targets of positives.
        avg_factor (Tensor): scalar, sum over images of max(#pos, 1).
    """

    def __init__(self, labels: Tensor, label_weights: Tensor,
                 pos_inds: Tensor, bbox_targets: Tensor,
                 avg_factor: Tensor) -> None:
        self.labels = labels
        self.label_weights = label_weights
        self.pos_inds = pos_inds
        self.bbox_targets = bbox_targets
        self.avg_factor = avg_factor


@MODELS.register_module()
class RetinaHead(BaseDenseHead):
    """RetinaNet head with mmdet's ``RetinaHead`` interface.

    Args:
        num_classes (int): K, classes without background.
        in_channels (int): channels of the input features.
        stacked_convs (int): convs per subnet (paper: 4).
        feat_channels (int): channels of the subnet convs (paper: 256).
        conv_cfg (dict, optional): conv config of the subnets.
        norm_cfg (dict, optional): norm config of the subnets.
        anchor_generator (dict): prior generator config.
        bbox_coder (dict): box coder config.
        reg_decoded_bbox (bool): regress decoded boxes (for IoU losses).
        loss_cls (dict): classification loss; sigmoid losses only.
        loss_bbox (dict): box loss.
        train_cfg (dict, optional): ``assigner``, ``sampler`` (pseudo only),
            ``allowed_border``, ``pos_weight``.
        test_cfg (dict, optional): ``nms_pre``, ``min_bbox_size``,
            ``score_thr``, ``nms``, ``max_per_img``.
        init_cfg (dict | list[dict], optional): Normal(0, 0.01) for every
            conv, classification bias from the prior pi = 0.01 (sec. 4.1).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 stacked_convs: int = 4,
                 feat_channels: int = 256,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 anchor_generator: ConfigType = dict(
                     type='mmretina.AnchorGenerator',
                     octave_base_scale=4,
                     scales_per_octave=3,
                     ratios=[0.5, 1.0, 2.0],
                     strides=[8, 16, 32, 64, 128]),
                 bbox_coder: ConfigType = dict(
                     type='DeltaXYWHBBoxCoder',
                     clip_border=True,
                     target_means=(.0, .0, .0, .0),
                     target_stds=(1.0, 1.0, 1.0, 1.0)),
                 reg_decoded_bbox: bool = False,
                 loss_cls: ConfigType = dict(
                     type='mmretina.FocalLoss',
                     use_sigmoid=True,
                     gamma=2.0,
                     alpha=0.25,
                     loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='L1Loss', loss_weight=1.0),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = dict(
                     type='Normal',
                     layer='Conv2d',
                     std=0.01,
                     override=dict(
                         type='Normal',
                         name='retina_cls',
                         std=0.01,
                         bias_prob=0.01))) -> None:
        super().__init__(init_cfg=init_cfg)
        if stacked_convs < 0:
            raise ValueError('mmretina.RetinaHead: stacked_convs must be '
                             f'non-negative, got {stacked_convs}')
        if not loss_cls.get('use_sigmoid', False):
            raise ValueError(
                'mmretina.RetinaHead: RetinaNet classifies with sigmoids; '
                'loss_cls needs use_sigmoid=True')
        if num_classes <= 0:
            raise ValueError(
                f'mmretina.RetinaHead: num_classes={num_classes} is too small')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.stacked_convs = stacked_convs
        self.feat_channels = feat_channels
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.use_sigmoid_cls = True
        self.cls_out_channels = num_classes
        self.reg_decoded_bbox = reg_decoded_bbox
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.prior_generator = TASK_UTILS.build(anchor_generator)
        self.num_base_priors = self.prior_generator.num_base_priors[0]
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if train_cfg:
            self.assigner = TASK_UTILS.build(train_cfg['assigner'])
            sampler = train_cfg.get('sampler', None)
            if sampler is not None and 'PseudoSampler' not in sampler['type']:
                raise ValueError(
                    'mmretina.RetinaHead trains on all anchors (no sampling, '
                    f'paper sec. 4); got sampler {sampler["type"]}. Use '
                    "dict(type='PseudoSampler') or leave it out.")
        self._prior_cache: Dict[tuple, Tuple[List[Tensor], Tensor]] = {}
        self._init_layers()

    def _init_layers(self) -> None:
        """The two subnets and their output convs (mmdet's layer names)."""
        self.relu = nn.ReLU(inplace=True)
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        in_channels = self.in_channels
        for _ in range(self.stacked_convs):
            for convs in (self.cls_convs, self.reg_convs):
                convs.append(
                    ConvModule(
                        in_channels,
                        self.feat_channels,
                        3,
                        stride=1,
                        padding=1,
                        conv_cfg=self.conv_cfg,
                        norm_cfg=self.norm_cfg))
            in_channels = self.feat_channels
        self.retina_cls = nn.Conv2d(
            in_channels,
            self.num_base_priors * self.cls_out_channels,
            3,
            padding=1)
        self.retina_reg = nn.Conv2d(
            in_channels,
            self.num_base_priors * self.bbox_coder.encode_size,
            3,
            padding=1)

    # ------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------
    def forward_single(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """One level.

        Args:
            x (Tensor): B x C x H x W features.

        Returns:
            tuple[Tensor, Tensor]: cls_score B x (A*K) x H x W and bbox_pred
            B x (A*4) x H x W.
        """
        cls_feat = x
        reg_feat = x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        return self.retina_cls(cls_feat), self.retina_reg(reg_feat)

    def forward(self, x: Sequence[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """All levels.

        Args:
            x (tuple[Tensor]): B x C x H_l x W_l per level.

        Returns:
            tuple[list[Tensor], list[Tensor]]: cls_scores B x (A*K) x H_l x
            W_l and bbox_preds B x (A*4) x H_l x W_l per level.
        """
        outs = [self.forward_single(feat) for feat in x]
        return [o[0] for o in outs], [o[1] for o in outs]

    # ------------------------------------------------------------------
    # anchors
    # ------------------------------------------------------------------
    def _priors(self, featmap_sizes: Sequence[Tuple[int, int]],
                dtype: torch.dtype,
                device: torch.device) -> Tuple[List[Tensor], Tensor]:
        """Anchors per level and concatenated, cached.

        Returns:
            tuple[list[Tensor], Tensor]: (N_l, 4) per level and (N, 4).
        """
        key = (tuple(tuple(int(s) for s in size) for size in featmap_sizes),
               dtype, str(device))
        if key not in self._prior_cache:
            if len(self._prior_cache) > 32:  # many input sizes: stay bounded
                self._prior_cache.clear()
            levels = self.prior_generator.grid_priors(
                featmap_sizes, dtype=dtype, device=device)
            levels = [get_box_tensor(p) for p in levels]
            self._prior_cache[key] = (levels, torch.cat(levels))
        return self._prior_cache[key]

    def get_anchors(self, featmap_sizes: List[tuple],
                    batch_img_metas: List[dict],
                    device: torch.device = 'cuda'
                    ) -> Tuple[List[List[Tensor]], List[List[Tensor]]]:
        """mmdet's per-image anchor lists (kept for callers that use them).

        Returns:
            tuple: anchor_list[i][l] (N_l, 4) and valid_flag_list[i][l]
            (N_l,) bool.
        """
        levels, _ = self._priors(featmap_sizes, torch.float32, device)
        anchor_list = [levels for _ in batch_img_metas]
        valid_flag_list = [
            self.prior_generator.valid_flags(featmap_sizes, m['pad_shape'],
                                             device) for m in batch_img_metas
        ]
        return anchor_list, valid_flag_list

    def _valid_mask(self, featmap_sizes: Sequence[Tuple[int, int]],
                    batch_img_metas: Sequence[dict],
                    device: torch.device) -> Tensor:
        """(B, N) valid flags of every image: the anchor's cell lies on the
        padded image (mmdet's ``valid_flags``), vectorised."""
        gen = self.prior_generator
        # (B, L, 2) numbers of valid cell rows and columns per level.
        valid_hw = torch.tensor(
            [valid_sizes(gen.strides, featmap_sizes, m['pad_shape'])
             for m in batch_img_metas],
            device=device)
        masks = []
        for level, (feat_h, feat_w) in enumerate(featmap_sizes):
            rows = torch.arange(feat_h, device=device)[None, :, None] < \
                valid_hw[:, level, 0, None, None]
            cols = torch.arange(feat_w, device=device)[None, None, :] < \
                valid_hw[:, level, 1, None, None]
            mask = (rows & cols)[..., None].expand(
                -1, -1, -1, gen.num_base_priors[level])
            masks.append(mask.reshape(len(batch_img_metas), -1))
        return torch.cat(masks, dim=1)

    # ------------------------------------------------------------------
    # targets
    # ------------------------------------------------------------------
    def get_targets(self,
                    anchors: Tensor,
                    valid: Tensor,
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: OptInstanceList = None
                    ) -> BatchTargets:
        """Targets of every anchor of every image.

        Args:
            anchors (Tensor): (N, 4) anchors of all levels.
            valid (Tensor): (B, N) valid flags.
            batch_gt_instances (list[InstanceData]): ``bboxes`` (G_i, 4) and
                ``labels`` (G_i,) per image.
            batch_img_metas (list[dict]): ``img_shape`` per image.
            batch_gt_instances_ignore (list[InstanceData], optional):
                ``bboxes`` to ignore per image.

        Returns:
            BatchTargets
        """
        device = anchors.device
        inside = valid
        border = self.train_cfg.get('allowed_border', 0)
        if border >= 0:
            img_hw = anchors.new_tensor(
                [m['img_shape'][:2] for m in batch_img_metas])  # B, 2
            inside = inside & (anchors[None, :, 0] >= -border) & \
                (anchors[None, :, 1] >= -border) & \
                (anchors[None, :, 2] < img_hw[:, 1:2] + border) & \
                (anchors[None, :, 3] < img_hw[:, 0:1] + border)
        if not bool(inside.any(dim=1).all()):
            raise ValueError(
                'There is no valid anchor inside the image boundary. Please '
                'check the image size and anchor sizes, or set '
                '``allowed_border`` to -1 to skip the condition.')
        gt_boxes, gt_valid = pad_boxes(
            [get_box_tensor(g.bboxes).to(anchors) for g in batch_gt_instances])
        gt_labels = torch.full(gt_valid.shape, self.num_classes,
                               dtype=torch.long, device=device)
        for i, g in enumerate(batch_gt_instances):
            gt_labels[i, :len(g.labels)] = g.labels
        if isinstance(self.assigner, MaxIoUAssigner):
            excluded = ~inside
            if batch_gt_instances_ignore is not None and any(
                    g is not None for g in batch_gt_instances_ignore):
                ignore, ignore_valid = pad_boxes([
                    anchors.new_zeros((0, 4)) if g is None else
                    get_box_tensor(g.bboxes).to(anchors)
                    for g in batch_gt_instances_ignore
                ])
                ignored = self.assigner.ignored_priors(anchors[None], ignore,
                                                       ignore_valid)
                if ignored is not None:
                    excluded = excluded | ignored
            gt_inds, _ = self.assigner.assign_batch(anchors, gt_boxes,
                                                    gt_valid, excluded)
            gt_inds = gt_inds.masked_fill(~inside, -1)
        else:
            gt_inds = self._assign_per_image(anchors, inside,
                                             batch_gt_instances,
                                             batch_gt_instances_ignore)
        pos = gt_inds > 0
        pos_inds = pos.nonzero()
        pos_img, pos_anchor = pos_inds.unbind(1)
        pos_gt = gt_inds[pos_img, pos_anchor] - 1
        labels = torch.full_like(gt_inds, self.num_classes)
        labels[pos_img, pos_anchor] = gt_labels[pos_img, pos_gt]
        label_weights = (gt_inds >= 0).float()
        pos_weight = self.train_cfg.get('pos_weight', -1)
        if pos_weight > 0:
            label_weights[pos] = pos_weight
        pos_gt_boxes = gt_boxes[pos_img, pos_gt]
        if self.reg_decoded_bbox:
            bbox_targets = pos_gt_boxes
        else:
            bbox_targets = self.bbox_coder.encode(anchors[pos_anchor],
                                                  pos_gt_boxes)
        avg_factor = pos.sum(dim=1).clamp(min=1).sum()
        return BatchTargets(labels, label_weights, pos_inds, bbox_targets,
                            avg_factor)

    def _assign_per_image(self, anchors: Tensor, inside: Tensor,
                          batch_gt_instances: InstanceList,
                          batch_gt_instances_ignore: OptInstanceList
                          ) -> Tensor:
        """Assignment with any mmdet assigner, one image at a time.

        Returns:
            Tensor: (B, N) gt_inds, -1 outside the image.
        """
        gt_inds = torch.full(inside.shape, -1, dtype=torch.long,
                             device=anchors.device)
        for i, gt in enumerate(batch_gt_instances):
            ignore = (None if batch_gt_instances_ignore is None else
                      batch_gt_instances_ignore[i])
            result = self.assigner.assign(
                InstanceData(priors=anchors[inside[i]]), gt, ignore)
            gt_inds[i, inside[i]] = result.gt_inds
        return gt_inds

    # ------------------------------------------------------------------
    # loss
    # ------------------------------------------------------------------
    def loss_by_feat(
            self,
            cls_scores: List[Tensor],
            bbox_preds: List[Tensor],
            batch_gt_instances: InstanceList,
            batch_img_metas: List[dict],
            batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Focal loss and box loss of a batch.

        Args:
            cls_scores (list[Tensor]): B x (A*K) x H_l x W_l per level.
            bbox_preds (list[Tensor]): B x (A*4) x H_l x W_l per level.
            batch_gt_instances (list[InstanceData]): ``bboxes`` (G_i, 4),
                ``labels`` (G_i,) per image.
            batch_img_metas (list[dict]): ``img_shape``, ``pad_shape``.
            batch_gt_instances_ignore (list[InstanceData], optional).

        Returns:
            dict[str, Tensor]: ``loss_cls`` and ``loss_bbox``, scalars. mmdet
            returns one term per level; their sums are these values.
        """
        if len(cls_scores) != self.prior_generator.num_levels:
            raise ValueError(
                f'mmretina.RetinaHead: {self.prior_generator.num_levels} '
                f'anchor levels configured, got {len(cls_scores)} feature '
                'levels')
        _check_gt(batch_gt_instances, batch_img_metas)
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        device = cls_scores[0].device
        levels, anchors = self._priors(featmap_sizes, torch.float32, device)
        valid = self._valid_mask(featmap_sizes, batch_img_metas, device)
        targets = self.get_targets(anchors, valid, batch_gt_instances,
                                   batch_img_metas, batch_gt_instances_ignore)

        num_imgs = cls_scores[0].size(0)
        avg_factor = targets.avg_factor
        if isinstance(self.loss_cls, FocalLoss) and not \
                self.loss_cls.activated and self.loss_cls.reduction == 'mean':
            total = focal_loss_sum(cls_scores, targets.labels,
                                   targets.label_weights,
                                   self.num_base_priors, self.loss_cls.gamma,
                                   self.loss_cls.alpha)
            eps = torch.finfo(torch.float32).eps
            loss_cls = self.loss_cls.loss_weight * total / (avg_factor + eps)
        else:
            # Any other sigmoid loss: rows (B * N_l, K) level by level.
            k = self.cls_out_channels
            level_sizes = [len(a) for a in levels]
            cls_rows = torch.cat([
                s.permute(0, 2, 3, 1).reshape(-1, k) for s in cls_scores
            ])
            labels = torch.cat([
                t.reshape(-1)
                for t in targets.labels.split(level_sizes, dim=1)
            ])
            weights = torch.cat([
                t.reshape(-1)
                for t in targets.label_weights.split(level_sizes, dim=1)
            ])
            loss_cls = self.loss_cls(
                cls_rows, labels, weights, avg_factor=avg_factor)

        dim = self.bbox_coder.encode_size
        box_rows = torch.cat([
            p.permute(0, 2, 3, 1).reshape(num_imgs, -1, dim)
            for p in bbox_preds
        ], dim=1)  # B, N, 4
        pos_img, pos_anchor = targets.pos_inds.unbind(1)
        # fp32 from here (bf16 deltas would also promote against the fp32
        # anchors; explicit is safer): a bf16 coordinate near 400 px is
        # only exact to 2 px.
        pos_pred = box_rows[pos_img, pos_anchor].float()
        if self.reg_decoded_bbox:
            pos_pred = get_box_tensor(
                self.bbox_coder.decode(anchors[pos_anchor], pos_pred))
        loss_bbox = self.loss_bbox(
            pos_pred,
            targets.bbox_targets,
            torch.ones_like(targets.bbox_targets),
            avg_factor=avg_factor)
        # One host sync per step. The sums of the maps catch what the losses
        # hide (an inf delta at a background anchor, a -inf logit, which the
        # focal loss maps to 0) in one reduction pass each, where isfinite
        # would take three.
        # fp32 sums: an fp16 map of 10M logits sums past fp16's range.
        sums = [
            m.detach().sum(dtype=torch.float32)
            for m in list(cls_scores) + list(bbox_preds)
        ]
        finite = torch.isfinite(torch.stack(sums + [loss_cls.detach(),
                                                    loss_bbox.detach()]))
        if not bool(finite.all()):
            _raise_non_finite(cls_scores, bbox_preds, loss_cls, loss_bbox)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)

    # ------------------------------------------------------------------
    # prediction
    # ------------------------------------------------------------------
    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        score_factors: Optional[List[Tensor]] = None,
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: OptConfigType = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Detections of every image.

        Per image and level, the ``nms_pre`` (anchor, class) pairs of highest
        score above ``score_thr`` are kept, decoded and clipped to
        ``img_shape``, rescaled, filtered by ``min_bbox_size`` and reduced by
        class-aware NMS to ``max_per_img`` (mmdet's semantics).

        Args:
            cls_scores (list[Tensor]): B x (A*K) x H_l x W_l per level.
            bbox_preds (list[Tensor]): B x (A*4) x H_l x W_l per level.
            score_factors: unused by RetinaNet; must be None.
            batch_img_metas (list[dict]): ``img_shape``, ``scale_factor``.
            cfg (dict, optional): overrides ``test_cfg``.
            rescale (bool): map boxes back to the original image.
            with_nms (bool): apply NMS.

        Returns:
            list[InstanceData]: ``bboxes`` (M, 4), ``scores`` (M,),
            ``labels`` (M,) per image.
        """
        if score_factors is not None:
            raise ValueError('mmretina.RetinaHead has no score factors')
        cfg = self.test_cfg if cfg is None else cfg
        num_imgs = cls_scores[0].size(0)
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        levels, _ = self._priors(featmap_sizes, cls_scores[0].dtype,
                                 cls_scores[0].device)
        cand = select_topk_candidates(
            [s.detach() for s in cls_scores], self.num_base_priors,
            cfg.get('score_thr', 0), cfg.get('nms_pre', -1))
        results = []
        for i in range(num_imgs):
            sel = cand['img'] == i
            level, anchor = cand['level'][sel], cand['anchor'][sel]
            priors = torch.cat([
                levels[lvl][anchor[level == lvl]]
                for lvl in range(len(levels))
            ])
            deltas = torch.cat([
                _gather_deltas(bbox_preds[lvl].detach(), i,
                               anchor[level == lvl], self.num_base_priors,
                               self.bbox_coder.encode_size)
                for lvl in range(len(levels))
            ])
            bboxes = self.bbox_coder.decode(
                priors, deltas, max_shape=batch_img_metas[i]['img_shape'])
            result = InstanceData()
            result.bboxes = bboxes
            result.scores = cand['score'][sel]
            result.labels = cand['label'][sel]
            results.append(
                self._post_process(result, cfg, rescale, with_nms,
                                   batch_img_metas[i]))
        return results

    def _post_process(self, results: InstanceData, cfg: ConfigDict,
                      rescale: bool, with_nms: bool,
                      img_meta: dict) -> InstanceData:
        """Rescale, drop small boxes, class-aware NMS, keep max_per_img."""
        if rescale:
            if img_meta.get('scale_factor') is None:
                raise ValueError('rescale=True needs img_meta["scale_factor"]')
            scale_factor = [1 / s for s in img_meta['scale_factor']]
            results.bboxes = scale_boxes(results.bboxes, scale_factor)
        if cfg.get('min_bbox_size', -1) >= 0:
            w, h = get_box_wh(results.bboxes)
            keep = (w > cfg['min_bbox_size']) & (h > cfg['min_bbox_size'])
            if not keep.all():
                results = results[keep]
        if with_nms and results.bboxes.numel() > 0:
            det_scores, keep = class_aware_nms(
                get_box_tensor(results.bboxes), results.scores,
                results.labels, cfg['nms'], cfg['max_per_img'])
            results = results[keep]
            results.scores = det_scores
            results = results[:cfg['max_per_img']]
        return results


def class_aware_nms(bboxes: Tensor, scores: Tensor, labels: Tensor,
                    nms_cfg: dict, max_per_img: int) -> Tuple[Tensor, Tensor]:
    """mmcv's ``batched_nms``, stopping early once ``max_per_img`` boxes
    are kept.

    Greedy NMS decides each box from the higher-scored boxes alone, so the
    boxes kept among the top-m candidates are the first boxes the full run
    keeps. NMS runs on the top 4 * ``max_per_img`` candidates, then on 4x
    more while fewer than ``max_per_img`` survive. The class offsets use the
    largest coordinate of all candidates, as ``batched_nms`` does, so the
    IoUs and hence the results are mmcv's.

    Args:
        bboxes (Tensor): (M, 4) boxes.
        scores (Tensor): (M,) scores.
        labels (Tensor): (M,) class indices.
        nms_cfg (dict): mmcv NMS config (``type``, ``iou_threshold``, ...).
        max_per_img (int): boxes wanted; <= 0 means all.

    Returns:
        tuple[Tensor, Tensor]: scores after NMS and indices into the inputs
        of the kept boxes, by descending score.
    """
    cfg = dict(nms_cfg)
    nms_type = cfg.pop('type', 'nms')
    class_agnostic = cfg.pop('class_agnostic', False)
    split_thr = cfg.pop('split_thr', 10000)
    if (nms_type != 'nms' or max_per_img <= 0
            or len(bboxes) <= 4 * max_per_img or len(bboxes) >= split_thr):
        dets, keep = batched_nms(bboxes, scores, labels, nms_cfg,
                                 class_agnostic)
        return dets[:, -1], keep
    if class_agnostic:
        boxes_for_nms = bboxes
    else:
        max_coordinate = bboxes.max()
        offsets = labels.to(bboxes) * (
            max_coordinate + torch.tensor(1).to(bboxes))
        boxes_for_nms = bboxes + offsets[:, None]
    order = scores.argsort(descending=True, stable=True)
    num = 4 * max_per_img
    while True:
        top = order[:num]
        dets, keep = nms(boxes_for_nms[top], scores[top], **cfg)
        if len(keep) >= max_per_img or num >= len(order):
            return dets[:, -1], top[keep]
        num *= 4


def select_topk_candidates(cls_scores: Sequence[Tensor], num_anchors: int,
                           score_thr: float, nms_pre: int) -> Dict[str, Tensor]:
    """(anchor, class) pairs kept before NMS, for all images and levels.

    Per image and level: sigmoid score > ``score_thr``, the ``nms_pre`` best
    (all if <= 0), in descending score; ties are broken by mmdet's flat index
    ((y * W + x) * A + a) * K + k, lowest first.

    Args:
        cls_scores (list[Tensor]): B x (A*K) x H_l x W_l logits per level.
        num_anchors (int): A.
        score_thr (float): score threshold.
        nms_pre (int): candidates per image and level.

    Returns:
        dict[str, Tensor]: ``img``, ``level``, ``anchor`` (index within the
        level), ``label``, ``score``; each (M,), ordered by image, level,
        then descending score.
    """
    # Compare logits with a slightly loose threshold first (no sigmoid over
    # the whole map), then apply the exact test to the few survivors.
    if 0 < score_thr < 1:
        logit_thr = math.log(score_thr / (1 - score_thr)) - 1e-3
    else:
        logit_thr = -math.inf
    groups = []
    for level, logits in enumerate(cls_scores):
        num_imgs, channels, height, width = logits.shape
        num_classes = channels // num_anchors
        hw = height * width
        flat_logits = logits.reshape(-1)
        idx = (flat_logits > logit_thr).nonzero().squeeze(1)
        score = flat_logits[idx].float().sigmoid()
        keep = score > score_thr
        idx, score = idx[keep], score[keep]
        # NCHW position -> image, channel, cell; mmdet's per-image index is
        # ((y * W + x) * A + a) * K + k.
        img = idx // (channels * hw)
        chan = idx % (channels * hw) // hw
        cell = idx % hw
        anchor = cell * num_anchors + chan // num_classes
        label = chan % num_classes
        flat = anchor * num_classes + label
        bounds = torch.searchsorted(
            img, torch.arange(num_imgs + 1, device=img.device)).tolist()
        for i in range(num_imgs):
            sel = slice(bounds[i], bounds[i + 1])
            order = _top_scores(score[sel], flat[sel], nms_pre)
            groups.append((i, level, anchor[sel][order], label[sel][order],
                           score[sel][order].to(logits.dtype)))
    groups.sort(key=lambda g: (g[0], g[1]))
    return dict(
        img=torch.cat([torch.full_like(g[2], g[0]) for g in groups]),
        level=torch.cat([torch.full_like(g[2], g[1]) for g in groups]),
        anchor=torch.cat([g[2] for g in groups]),
        label=torch.cat([g[3] for g in groups]),
        score=torch.cat([g[4] for g in groups]))


def _top_scores(score: Tensor, flat: Tensor, k: int) -> Tensor:
    """Indices of the k best scores, by descending score then ascending
    ``flat`` index; all of them when k <= 0.

    A full sort (what mmdet does) is paid only for the k that survive.
    """
    idx = torch.arange(score.numel(), device=score.device)
    if 0 < k < score.numel():
        kth = score.topk(k, sorted=False).values.min()
        above = idx[score > kth]
        tied = idx[score == kth]
        tied = tied[flat[tied].argsort()][:k - above.numel()]
        idx = torch.cat([above, tied])
    idx = idx[flat[idx].argsort()]
    return idx[score[idx].argsort(descending=True, stable=True)]


def _gather_deltas(bbox_pred: Tensor, img: int, anchor: Tensor,
                   num_anchors: int, dim: int) -> Tensor:
    """Deltas of the given anchors of one image and level.

    Args:
        bbox_pred (Tensor): B x (A*D) x H x W.
        anchor (Tensor): (M,) indices (y * W + x) * A + a.

    Returns:
        Tensor: (M, D).
    """
    width = bbox_pred.size(-1)
    a = anchor % num_anchors
    cell = anchor // num_anchors
    y, x = cell // width, cell % width
    chans = a[:, None] * dim + torch.arange(dim, device=anchor.device)
    return bbox_pred[img][chans, y[:, None], x[:, None]]


def _check_gt(batch_gt_instances: InstanceList,
              batch_img_metas: List[dict]) -> None:
    """Reject ground truths that would silently poison the loss."""
    for i, gt in enumerate(batch_gt_instances):
        boxes = get_box_tensor(gt.bboxes)
        if boxes.numel() and not bool(torch.isfinite(boxes).all()):
            bad = (~torch.isfinite(boxes)).any(dim=1).nonzero().flatten()
            name = batch_img_metas[i].get('img_path', f'image {i}')
            raise ValueError(
                f'mmretina.RetinaHead: ground-truth boxes of {name} contain '
                f'NaN or inf (box indices {bad.tolist()[:10]}): '
                f'{boxes[bad[:3]].tolist()}. Check the annotations and the '
                'data pipeline.')


def _raise_non_finite(cls_scores: List[Tensor], bbox_preds: List[Tensor],
                      loss_cls: Tensor, loss_bbox: Tensor) -> None:
    """Explain a NaN / inf loss by the head output that caused it.

    The iteration and the checkpoint to resume from are added by
    ``tools/train.py`` (``non_finite_message``), which knows them.
    """
    for name, maps in (('classification scores', cls_scores),
                       ('box deltas', bbox_preds)):
        for level, m in enumerate(maps):
            bad = ~torch.isfinite(m)
            if bad.any():
                raise FloatingPointError(
                    f'mmretina.RetinaHead: the {name} of level '
                    f'{level} hold {int(bad.sum())} NaN/inf values, so the '
                    'loss is not finite. The network diverged: lower the '
                    'learning rate, enable gradient clipping '
                    '(optim_wrapper.clip_grad) or check the input '
                    'normalisation.')
    raise FloatingPointError(
        f'mmretina.RetinaHead: loss is not finite (loss_cls='
        f'{loss_cls.item()}, loss_bbox={loss_bbox.item()}) although the head '
        'outputs are finite; check the ground-truth boxes and the box coder '
        'settings.')
