"""Anchor generator of RetinaNet (paper sec. 4, "Anchors").

Anchors of level l have areas (4 * stride_l)^2 * {2^0, 2^(1/3), 2^(2/3)}
(``octave_base_scale=4``, ``scales_per_octave=3``) and aspect ratios
{1:2, 1:1, 2:1}; A = 9 per location. The values and their order are those of
mmdet's ``AnchorGenerator``: within a level the index of an anchor is
``(y * W + x) * A + a``, and within a cell the base anchors are ratio-major
when ``scale_major`` (ws = base * w_ratio[i] * scale[j], flattened over i, j).
"""
import warnings
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.nn.modules.utils import _pair

from mmretina.registry import TASK_UTILS

DeviceType = Union[str, torch.device]


def valid_sizes(strides: Sequence[Tuple[int, int]],
                featmap_sizes: Sequence[Tuple[int, int]],
                pad_shape: Tuple[int, ...]) -> List[Tuple[int, int]]:
    """Per level, the (h, w) feature cells that lie on the padded image:
    ``min(ceil(pad / stride), feat)`` (mmdet's rule).

    Args:
        strides (list[tuple[int, int]]): (w, h) stride per level.
        featmap_sizes (list[tuple[int, int]]): (H_l, W_l) per level.
        pad_shape (tuple): padded image shape (h, w, ...).
    """
    h, w = pad_shape[:2]
    return [(min(int(np.ceil(h / stride_h)), feat_h),
             min(int(np.ceil(w / stride_w)), feat_w))
            for (feat_h, feat_w), (stride_w, stride_h) in zip(
                featmap_sizes, strides)]


class GridLevel(NamedTuple):
    """One level of a regular anchor grid (:meth:`AnchorGenerator
    .grid_layout`).

    Attributes:
        start (int): index of the level's first anchor in the concatenation
            of all levels.
        height, width (int): H and W, feature cells.
        stride_w, stride_h (float): cell size in pixels.
        base_anchors (Tensor): (A, 4) anchors of cell (0, 0).
    """
    start: int
    height: int
    width: int
    stride_w: float
    stride_h: float
    base_anchors: Tensor


def _grid_valid_flags(featmap_size: Tuple[int, int], valid_hw: Tensor,
                      num_base_anchors: int) -> Tensor:
    """Valid flags of one level for B images.

    Args:
        featmap_size (tuple[int, int]): (H, W).
        valid_hw (Tensor): (B, 2) valid cell rows and columns per image.
        num_base_anchors (int): A.

    Returns:
        Tensor: (B, H * W * A) bool, anchor order (y * W + x) * A + a.
    """
    feat_h, feat_w = featmap_size
    device = valid_hw.device
    rows = torch.arange(feat_h, device=device)[None, :, None] < \
        valid_hw[:, 0, None, None]
    cols = torch.arange(feat_w, device=device)[None, None, :] < \
        valid_hw[:, 1, None, None]
    mask = (rows & cols)[..., None].expand(-1, -1, -1, num_base_anchors)
    return mask.reshape(valid_hw.size(0), -1)


@TASK_UTILS.register_module()
class AnchorGenerator:
    """Standard multi-level anchor generator.

    Args:
        strides (list[int] | list[tuple[int, int]]): stride of each level,
            (w, h) when a pair.
        ratios (list[float]): height / width ratios.
        scales (list[float], optional): anchor scales; exclusive with
            ``octave_base_scale`` + ``scales_per_octave``.
        base_sizes (list[int], optional): base size per level; defaults to
            the (smaller) stride.
        scale_major (bool): order base anchors ratio-major (True) or
            scale-major (False) within a cell, as mmdet names it.
        octave_base_scale (float, optional): base scale of the octave.
        scales_per_octave (int, optional): scales per octave; scales are
            ``octave_base_scale * 2 ** (i / scales_per_octave)``.
        centers (list[tuple[float, float]], optional): centre of the base
            anchor in each level's cell.
        center_offset (float): centre offset in units of the base size.
        use_box_type (bool): wrap priors in mmdet's ``HorizontalBoxes``.
    """

    def __init__(self,
                 strides: Union[List[int], List[Tuple[int, int]]],
                 ratios: List[float],
                 scales: Optional[List[float]] = None,
                 base_sizes: Optional[List[int]] = None,
                 scale_major: bool = True,
                 octave_base_scale: Optional[float] = None,
                 scales_per_octave: Optional[int] = None,
                 centers: Optional[List[Tuple[float, float]]] = None,
                 center_offset: float = 0.,
                 use_box_type: bool = False) -> None:
        if center_offset != 0 and centers is not None:
            raise ValueError('AnchorGenerator: centers cannot be set when '
                             f'center_offset != 0, got {centers}')
        if not 0 <= center_offset <= 1:
            raise ValueError('AnchorGenerator: center_offset must be in '
                             f'[0, 1], got {center_offset}')
        if centers is not None and len(centers) != len(strides):
            raise ValueError('AnchorGenerator: need one center per stride, '
                             f'got {strides} and {centers}')
        self.strides = [_pair(stride) for stride in strides]
        self.base_sizes = ([min(s) for s in self.strides]
                           if base_sizes is None else list(base_sizes))
        if len(self.base_sizes) != len(self.strides):
            raise ValueError('AnchorGenerator: need one base size per '
                             f'stride, got {self.strides} and '
                             f'{self.base_sizes}')
        use_octave = (octave_base_scale is not None
                      and scales_per_octave is not None)
        if use_octave == (scales is not None):
            raise ValueError(
                'AnchorGenerator: set either scales or octave_base_scale '
                'with scales_per_octave, not both and not neither')
        if use_octave:
            scales = np.array([
                2**(i / scales_per_octave) for i in range(scales_per_octave)
            ]) * octave_base_scale
        self.scales = torch.Tensor(scales)
        self.octave_base_scale = octave_base_scale
        self.scales_per_octave = scales_per_octave
        self.ratios = torch.Tensor(ratios)
        self.scale_major = scale_major
        self.centers = centers
        self.center_offset = center_offset
        self.use_box_type = use_box_type
        self.base_anchors = self.gen_base_anchors()

    @property
    def num_base_priors(self) -> List[int]:
        """list[int]: anchors per location, per level."""
        return [anchors.size(0) for anchors in self.base_anchors]

    @property
    def num_base_anchors(self) -> List[int]:
        """Alias of :attr:`num_base_priors` (mmdet 2.x name)."""
        return self.num_base_priors

    @property
    def num_levels(self) -> int:
        """int: number of pyramid levels."""
        return len(self.strides)

    def gen_base_anchors(self) -> List[Tensor]:
        """Base anchors of every level: list of (A, 4) tensors."""
        return [
            self.gen_single_level_base_anchors(
                base_size,
                self.scales,
                self.ratios,
                center=None if self.centers is None else self.centers[i])
            for i, base_size in enumerate(self.base_sizes)
        ]

    def gen_single_level_base_anchors(
            self,
            base_size: Union[int, float],
            scales: Tensor,
            ratios: Tensor,
            center: Optional[Tuple[float, float]] = None) -> Tensor:
        """Anchors of one cell centred at ``center``.

        Args:
            base_size (int | float): base side length.
            scales (Tensor): (S,) scales.
            ratios (Tensor): (R,) height / width ratios.
            center (tuple[float, float], optional): (x, y) centre.

        Returns:
            Tensor: (R * S, 4) boxes (x1, y1, x2, y2).
        """
        if center is None:
            x_center = self.center_offset * base_size
            y_center = self.center_offset * base_size
        else:
            x_center, y_center = center
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        if self.scale_major:
            ws = (base_size * w_ratios[:, None] * scales[None, :]).view(-1)
            hs = (base_size * h_ratios[:, None] * scales[None, :]).view(-1)
        else:
            ws = (base_size * scales[:, None] * w_ratios[None, :]).view(-1)
            hs = (base_size * scales[:, None] * h_ratios[None, :]).view(-1)
        return torch.stack([
            x_center - 0.5 * ws, y_center - 0.5 * hs, x_center + 0.5 * ws,
            y_center + 0.5 * hs
        ], dim=-1)

    def grid_priors(self,
                    featmap_sizes: Sequence[Tuple[int, int]],
                    dtype: torch.dtype = torch.float32,
                    device: DeviceType = 'cuda') -> List[Tensor]:
        """Anchors of every level.

        Args:
            featmap_sizes (list[tuple[int, int]]): (H_l, W_l) per level.
            dtype (torch.dtype): dtype of the anchors.
            device (str | torch.device): device of the anchors.

        Returns:
            list[Tensor]: (H_l * W_l * A, 4) per level.
        """
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(
                f'AnchorGenerator: {self.num_levels} levels configured, got '
                f'{len(featmap_sizes)} feature map sizes')
        return [
            self.single_level_grid_priors(
                featmap_sizes[i], level_idx=i, dtype=dtype, device=device)
            for i in range(self.num_levels)
        ]

    def single_level_grid_priors(self,
                                 featmap_size: Tuple[int, int],
                                 level_idx: int,
                                 dtype: torch.dtype = torch.float32,
                                 device: DeviceType = 'cuda') -> Tensor:
        """Anchors of one level.

        Args:
            featmap_size (tuple[int, int]): (H, W).
            level_idx (int): level index.

        Returns:
            Tensor: (H * W * A, 4), index (y * W + x) * A + a.
        """
        base_anchors = self.base_anchors[level_idx].to(device).to(dtype)
        feat_h, feat_w = featmap_size
        stride_w, stride_h = self.strides[level_idx]
        shift_x = torch.arange(0, feat_w, device=device).to(dtype) * stride_w
        shift_y = torch.arange(0, feat_h, device=device).to(dtype) * stride_h
        shift_yy, shift_xx = torch.meshgrid(shift_y, shift_x, indexing='ij')
        shift_xx, shift_yy = shift_xx.reshape(-1), shift_yy.reshape(-1)
        shifts = torch.stack([shift_xx, shift_yy, shift_xx, shift_yy], dim=-1)
        anchors = (base_anchors[None, :, :] + shifts[:, None, :]).view(-1, 4)
        if self.use_box_type:
            from mmdet.structures.bbox import HorizontalBoxes
            return HorizontalBoxes(anchors)
        return anchors

    def level_strides(self, featmap_sizes: Sequence[Tuple[int, int]]
                      ) -> List[Tuple[int, int]]:
        """(stride_w, stride_h) per level for these feature map sizes: the
        configured strides (``TorchvisionAnchorGenerator`` derives them
        from the input size instead). The one place the grid methods
        (:meth:`grid_layout`, :meth:`valid_flags`,
        :meth:`batch_valid_flags`) take strides from.

        Raises:
            ValueError: not one size per configured level.
        """
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(
                f'{type(self).__name__}: {self.num_levels} levels '
                f'configured, got {len(featmap_sizes)} feature map sizes')
        return self.strides

    def grid_layout(self, featmap_sizes: Sequence[Tuple[int, int]]
                    ) -> List['GridLevel']:
        """The regular grid behind :meth:`grid_priors`: per level, anchor
        ``(y * W + x) * A + a`` is ``base_anchors[a] + (x * stride_w,
        y * stride_h) * 2``. ``mmretina.MaxIoUAssigner`` uses it to compute
        IoUs only near each ground truth.

        Returns:
            list[GridLevel]: one per level, in the order of
            :meth:`grid_priors` concatenated.
        """
        strides = self.level_strides(featmap_sizes)
        levels, start = [], 0
        for i, (feat_h, feat_w) in enumerate(featmap_sizes):
            base = self.base_anchors[i]
            levels.append(
                GridLevel(start, int(feat_h), int(feat_w),
                          float(strides[i][0]), float(strides[i][1]), base))
            start += int(feat_h) * int(feat_w) * base.size(0)
        return levels

    def sparse_priors(self,
                      prior_idxs: Tensor,
                      featmap_size: Tuple[int, int],
                      level_idx: int,
                      dtype: torch.dtype = torch.float32,
                      device: DeviceType = 'cuda') -> Tensor:
        """Anchors at flat indices ``prior_idxs`` of one level.

        Args:
            prior_idxs (Tensor): (N,) indices into the level's anchors.
            featmap_size (tuple[int, int]): (H, W).
            level_idx (int): level index.

        Returns:
            Tensor: (N, 4).
        """
        height, width = featmap_size
        num_base = self.num_base_priors[level_idx]
        base_anchor_id = prior_idxs % num_base
        x = (prior_idxs // num_base) % width * self.strides[level_idx][0]
        y = (prior_idxs // width // num_base) % height * \
            self.strides[level_idx][1]
        return torch.stack([x, y, x, y], 1).to(dtype).to(device) + \
            self.base_anchors[level_idx][base_anchor_id, :].to(device)

    def grid_anchors(self,
                     featmap_sizes: Sequence[Tuple[int, int]],
                     device: DeviceType = 'cuda') -> List[Tensor]:
        """Deprecated alias of :meth:`grid_priors` (mmdet 2.x)."""
        warnings.warn('``grid_anchors`` would be deprecated soon. '
                      'Please use ``grid_priors`` ')
        return self.grid_priors(featmap_sizes, device=device)

    def valid_flags(self,
                    featmap_sizes: Sequence[Tuple[int, int]],
                    pad_shape: Tuple[int, ...],
                    device: DeviceType = 'cuda') -> List[Tensor]:
        """Whether each anchor's cell lies on the padded image.

        Args:
            featmap_sizes (list[tuple[int, int]]): (H_l, W_l) per level.
            pad_shape (tuple): padded image shape (h, w, ...).

        Returns:
            list[Tensor]: (H_l * W_l * A,) bool per level.
        """
        strides = self.level_strides(featmap_sizes)
        return [
            self.single_level_valid_flags(
                featmap_sizes[i], valid, self.num_base_priors[i], device)
            for i, valid in enumerate(
                valid_sizes(strides, featmap_sizes, pad_shape))
        ]

    def single_level_valid_flags(self,
                                 featmap_size: Tuple[int, int],
                                 valid_size: Tuple[int, int],
                                 num_base_anchors: int,
                                 device: DeviceType = 'cuda') -> Tensor:
        """Valid flags of one level.

        Args:
            featmap_size (tuple[int, int]): (H, W).
            valid_size (tuple[int, int]): (h, w) valid cells, h <= H, w <= W.
            num_base_anchors (int): A.

        Returns:
            Tensor: (H * W * A,) bool.
        """
        feat_h, feat_w = featmap_size
        valid_h, valid_w = valid_size
        if valid_h > feat_h or valid_w > feat_w:
            raise ValueError(f'valid size {valid_size} exceeds the feature '
                             f'map size {featmap_size}')
        return _grid_valid_flags(
            featmap_size, torch.tensor([valid_size], device=device),
            num_base_anchors)[0]

    def batch_valid_flags(self, featmap_sizes: Sequence[Tuple[int, int]],
                          pad_shapes: Sequence[Tuple[int, ...]],
                          device: DeviceType = 'cuda') -> Tensor:
        """:meth:`valid_flags` of B images at once, levels concatenated.

        Args:
            featmap_sizes (list[tuple[int, int]]): (H_l, W_l) per level.
            pad_shapes (list[tuple]): padded shape (h, w, ...) per image.

        Returns:
            Tensor: (B, N) bool, N = sum over levels of H_l * W_l * A_l, in
            the order of :meth:`grid_priors` concatenated.
        """
        strides = self.level_strides(featmap_sizes)
        # (B, L, 2) numbers of valid cell rows and columns per level.
        valid_hw = torch.tensor(
            [valid_sizes(strides, featmap_sizes, s) for s in pad_shapes],
            device=device)
        return torch.cat([
            _grid_valid_flags(size, valid_hw[:, level],
                              self.num_base_priors[level])
            for level, size in enumerate(featmap_sizes)
        ], dim=1)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(strides={self.strides}, '
                f'ratios={self.ratios.tolist()}, '
                f'scales={self.scales.tolist()}, '
                f'base_sizes={self.base_sizes}, '
                f'scale_major={self.scale_major}, '
                f'octave_base_scale={self.octave_base_scale}, '
                f'scales_per_octave={self.scales_per_octave}, '
                f'centers={self.centers}, '
                f'center_offset={self.center_offset})')
