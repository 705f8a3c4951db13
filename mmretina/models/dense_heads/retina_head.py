"""RetinaNet's dense head (Lin et al., "Focal Loss for Dense Object
Detection", sec. 4 and fig. 3).

Two subnets of ``stacked_convs`` 3x3 convs + ReLU run on every pyramid level:
the classification subnet ends in a conv with A*K sigmoid outputs, the box
subnet in one with A*4 deltas. State-dict keys, constructor arguments and
results are those of mmdet's ``RetinaHead``. The module holds the layers and
the anchors; the jobs around it are small functions in their own modules:

* targets of the whole batch from one assignment
  (:func:`mmretina.models.dense_heads.targets.batch_targets`);
* the focal loss as one fused, chunked call over all levels, without a
  one-hot tensor (:meth:`mmretina.models.losses.FocalLoss.forward_maps`);
  the box loss runs on positives only;
* prediction selects the candidates of each image and level, then decodes
  only those (:mod:`mmretina.models.dense_heads.postprocess`);
* training monitors (ground truths without a positive anchor over the first
  steps, NaN / inf head outputs) in
  :mod:`mmretina.models.dense_heads.monitor`.

Anchors are cached by feature sizes, device and dtype, least recently used
out first once the cache exceeds its byte budget.

The same head is mmrotate's rotated RetinaNet with
``mmretina.FakeRotatedAnchorGenerator``, mmrotate's ``DeltaXYWHTRBBoxCoder``
and ``mmretina.MaxIoUAssigner(iou_calculator=dict(type='RBboxOverlaps2D'))``:
boxes are then (cx, cy, w, h, angle) and D = 5 wherever 4 is written below
(tests: ``tests/models/rotated/``).
"""
from collections import OrderedDict
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from mmcv.cnn import ConvModule
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.structures.bbox import BaseBoxes, get_box_tensor
from mmdet.utils import (ConfigType, InstanceList, OptConfigType,
                         OptInstanceList, OptMultiConfig)
from torch import Tensor, nn

from mmretina.models.losses.focal_loss import cls_maps_to_rows
from mmretina.registry import MODELS, TASK_UTILS
from .monitor import UnmatchedGtMonitor, check_finite_head_outputs
from .postprocess import predict_detections
from .targets import (BatchTargets, batch_targets, check_gt_finite,
                      positive_stats)

# Anchors kept for the input sizes seen most recently. 64 MiB holds those
# of about 8 COCO-sized (800 x 1333, 9 anchors per cell) inputs.
PRIOR_CACHE_BYTES = 64 << 20

Priors = Tuple[List[Tensor], Tensor]


class PriorCache:
    """Anchors per input size: ``(levels, all)``, (N_l, 4) per level and
    (N, 4). The least recently used entries are dropped once the cached
    tensors exceed ``max_bytes``; the newest entry always stays.
    """

    def __init__(self, max_bytes: int = PRIOR_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: 'OrderedDict[tuple, Tuple[Priors, int]]' = \
            OrderedDict()

    @property
    def nbytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple) -> bool:
        return key in self._entries

    def get(self, key: tuple, make: Callable[[], Priors]) -> Priors:
        """The entry of ``key``, made with ``make()`` on a miss."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key][0]
        value = make()
        size = sum(t.numel() * t.element_size() for t in [*value[0], value[1]])
        self._entries[key] = (value, size)
        while len(self._entries) > 1 and self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()


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
        self._prior_cache = PriorCache()
        # the box type of the generator's priors, if any (set with them)
        self._prior_box_type = None
        # warns once if the anchors miss many objects in the first steps
        self._unmatched_monitor = UnmatchedGtMonitor('mmretina.RetinaHead')
        self._init_layers()

    def _init_layers(self) -> None:
        """The two subnets and their output convs (mmdet's layer names)."""
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
    # mmdet's AnchorHead surface that subclasses and tools read
    # ------------------------------------------------------------------

    @property
    def num_anchors(self) -> int:
        """A, anchors per location (mmdet's deprecated alias of
        ``num_base_priors``)."""
        return self.num_base_priors

    @property
    def anchor_generator(self):
        """The prior generator (mmdet 2.x name of ``prior_generator``)."""
        return self.prior_generator

    # ------------------------------------------------------------------
    # anchors
    # ------------------------------------------------------------------
    def _priors(self, featmap_sizes: Sequence[Tuple[int, int]],
                dtype: torch.dtype,
                device: torch.device) -> Tuple[List[Tensor], Tensor]:
        """Anchors per level and concatenated, cached.

        Returns:
            tuple[list[Tensor], Tensor]: (N_l, D) per level and (N, D),
            D = 4, or 5 for rotated anchors.
        """
        key = (tuple(tuple(int(s) for s in size) for size in featmap_sizes),
               dtype, str(device))

        def make():
            levels = self.prior_generator.grid_priors(
                featmap_sizes, dtype=dtype, device=device)
            if isinstance(levels[0], BaseBoxes):
                # mmdet's HorizontalBoxes, mmrotate's RotatedBoxes: the
                # coder gets this type back (batch_targets' box_type)
                self._prior_box_type = type(levels[0])
            levels = [get_box_tensor(p) for p in levels]
            return levels, torch.cat(levels)

        return self._prior_cache.get(key, make)

    def get_anchors(self, featmap_sizes: List[tuple],
                    batch_img_metas: List[dict],
                    device: torch.device = 'cuda'
                    ) -> Tuple[List[List[Tensor]], List[List[Tensor]]]:
        """mmdet's per-image anchor lists (kept for callers that use them).

        Returns:
            tuple: ``anchor_list[i][l]`` (N_l, 4) and
            ``valid_flag_list[i][l]`` (N_l,) bool.
        """
        levels, _ = self._priors(featmap_sizes, torch.float32, device)
        anchor_list = [levels for _ in batch_img_metas]
        valid_flag_list = [
            self.prior_generator.valid_flags(featmap_sizes, m['pad_shape'],
                                             device) for m in batch_img_metas
        ]
        return anchor_list, valid_flag_list

    def _batch_valid_flags(self, featmap_sizes: List[tuple],
                           batch_img_metas: List[dict],
                           device: torch.device) -> Tensor:
        """(B, N) valid flags: mmretina's generator does the batch at once;
        any other (mmdet's, from a config that swaps only the head) image
        by image."""
        gen = self.prior_generator
        pad_shapes = [m['pad_shape'] for m in batch_img_metas]
        if hasattr(gen, 'batch_valid_flags'):
            return gen.batch_valid_flags(featmap_sizes, pad_shapes, device)
        return torch.stack([
            torch.cat(gen.valid_flags(featmap_sizes, shape, device))
            for shape in pad_shapes
        ])

    # ------------------------------------------------------------------
    # targets
    # ------------------------------------------------------------------
    def get_targets(self,
                    anchors: Tensor,
                    valid: Tensor,
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: OptInstanceList = None,
                    featmap_sizes: Optional[List[tuple]] = None
                    ) -> BatchTargets:
        """Targets of every anchor of every image
        (:func:`~mmretina.models.dense_heads.targets.batch_targets` with this
        head's assigner, coder and ``train_cfg``).

        Args:
            anchors (Tensor): (N, 4) anchors of all levels.
            valid (Tensor): (B, N) valid flags.
            batch_gt_instances (list[InstanceData]): ``bboxes`` (G_i, 4) and
                ``labels`` (G_i,) per image.
            batch_img_metas (list[dict]): ``img_shape`` per image.
            batch_gt_instances_ignore (list[InstanceData], optional):
                ``bboxes`` to ignore per image.
            featmap_sizes (list[tuple], optional): (H_l, W_l) per level;
                with them (and mmretina's generator) the assignment computes
                IoUs only near each ground truth.

        Returns:
            BatchTargets
        """
        layout = None
        if featmap_sizes is not None and hasattr(self.prior_generator,
                                                 'grid_layout'):
            layout = self.prior_generator.grid_layout(featmap_sizes)
        return batch_targets(
            self.assigner,
            self.bbox_coder,
            self.num_classes,
            anchors,
            valid,
            batch_gt_instances,
            batch_img_metas,
            batch_gt_instances_ignore,
            allowed_border=self.train_cfg.get('allowed_border', 0),
            pos_weight=self.train_cfg.get('pos_weight', -1),
            reg_decoded_bbox=self.reg_decoded_bbox,
            prior_layout=layout,
            box_type=self._prior_box_type)

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
            batch_gt_instances_ignore (list[InstanceData], optional):
                ``bboxes`` to ignore per image.

        Returns:
            dict[str, Tensor]: ``loss_cls`` and ``loss_bbox``, scalars (mmdet
            returns one term per level; their sums are these values), and
            the logged diagnostics ``pos_per_img`` (positive anchors per
            image) and ``gt_with_pos`` (share of ground truths with at least
            one positive anchor), which mmengine does not optimise (no
            'loss' in the key).
        """
        if len(cls_scores) != self.prior_generator.num_levels:
            raise ValueError(
                f'mmretina.RetinaHead: {self.prior_generator.num_levels} '
                f'anchor levels configured, got {len(cls_scores)} feature '
                'levels')
        check_gt_finite(batch_gt_instances, batch_img_metas)
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        device = cls_scores[0].device
        _, anchors = self._priors(featmap_sizes, torch.float32, device)
        valid = self._batch_valid_flags(featmap_sizes, batch_img_metas,
                                        device)
        targets = self.get_targets(anchors, valid, batch_gt_instances,
                                   batch_img_metas, batch_gt_instances_ignore,
                                   featmap_sizes)
        loss_cls = self._loss_cls(cls_scores, targets)

        num_imgs = cls_scores[0].size(0)
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
            avg_factor=targets.avg_factor)
        check_finite_head_outputs('mmretina.RetinaHead', cls_scores,
                                  bbox_preds, loss_cls, loss_bbox)
        pos_per_img, matched, total = positive_stats(targets)
        self._unmatched_monitor.update(matched, total)
        # Logged beside the losses; no 'loss' in the keys, so mmengine does
        # not optimise them.
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox,
                    pos_per_img=pos_per_img,
                    gt_with_pos=matched / total.clamp(min=1))

    def _loss_cls(self, cls_scores: List[Tensor],
                  targets: BatchTargets) -> Tensor:
        """Classification loss, normalised by the number of positives.

        A loss module with ``forward_maps`` (mmretina's :class:`FocalLoss`:
        the fused sum) takes the maps as they are; any other sigmoid loss
        (mmdet's ``FocalLoss``, ...) gets mmdet's (B * N_l) x K rows level
        by level.

        Args:
            cls_scores (list[Tensor]): B x (A*K) x H_l x W_l per level.
            targets (BatchTargets): ``labels`` and ``label_weights``, B x N.

        Returns:
            Tensor: the loss, a scalar for the usual 'mean' reduction.
        """
        forward_maps = getattr(self.loss_cls, 'forward_maps', None)
        if forward_maps is not None:
            return forward_maps(cls_scores, targets.labels,
                                targets.label_weights, self.num_base_priors,
                                avg_factor=targets.avg_factor)
        rows, labels, weights = cls_maps_to_rows(
            cls_scores, targets.labels, targets.label_weights,
            self.num_base_priors)
        return self.loss_cls(rows, labels, weights,
                             avg_factor=targets.avg_factor)

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
        """Detections of every image
        (:func:`~mmretina.models.dense_heads.postprocess.predict_detections`).

        Per image and level, the ``nms_pre`` (anchor, class) pairs of highest
        score above ``score_thr`` are kept (all of them for ``nms_pre`` <= 0),
        decoded and clipped to ``img_shape``, rescaled, filtered by
        ``min_bbox_size`` and reduced by class-aware NMS to ``max_per_img``
        (mmdet's semantics).

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
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        # Decoding and NMS in fp32 also for fp16 / bf16 maps (autocast): a
        # bf16 coordinate near 400 px is only exact to 2 px, and mmcv's NMS
        # takes fp32 only.
        levels, _ = self._priors(featmap_sizes, torch.float32,
                                 cls_scores[0].device)
        return predict_detections(cls_scores, bbox_preds, levels,
                                  self.num_base_priors, self.bbox_coder,
                                  batch_img_metas, cfg, rescale, with_nms)
