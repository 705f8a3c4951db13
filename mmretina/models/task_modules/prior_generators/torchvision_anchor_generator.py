"""torchvision's RetinaNet anchors, for models converted from torchvision
(:mod:`mmretina.models.converters.torchvision`).

torchvision's ``AnchorGenerator`` (``torchvision/models/detection/
anchor_utils.py``) differs from mmdet's in three ways that change boxes:

* sizes are integers per level, ``int(s * 2 ** (k / 3))`` for
  s = 32, 64, ..., 512: (32, 40, 50), (64, 80, 101), (128, 161, 203), ...
  where mmdet's octave scales give 40.3, 50.8, 101.6, ...;
* the base anchors ``[-w, -h, w, h] / 2`` are rounded to integers (half to
  even, ``torch.round``);
* a level's stride is ``input_size // feature_size`` of the batched (padded)
  input, not the nominal stride: on an 800 px input P6 and P7 are 13 and 7
  cells, hence strides 61 and 114 instead of 64 and 128.

The order of the anchors of a cell is the same in both libraries: ratio
major, ``a = ratio_index * num_sizes + size_index`` (mmdet's
``scale_major=True``), and within a level anchor ``(y * W + x) * A + a``.
So a torchvision head's output channels are used as they are.
"""
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from mmretina.registry import TASK_UTILS
from .anchor_generator import AnchorGenerator, DeviceType

__all__ = ['TorchvisionAnchorGenerator', 'torchvision_anchor_sizes']


def torchvision_anchor_sizes(
        base_sizes: Sequence[int] = (32, 64, 128, 256, 512),
        scales_per_octave: int = 3) -> List[List[int]]:
    """torchvision's default RetinaNet sizes (``_default_anchorgen``):
    ``int(x * 2 ** (k / scales_per_octave))`` per level, truncated."""
    return [[int(x * 2**(k / scales_per_octave))
             for k in range(scales_per_octave)] for x in base_sizes]


def _as_int(size):
    """A feature map side as an int; a ``torch.SymInt`` (traced size) is
    kept symbolic."""
    return size if isinstance(size, torch.SymInt) else int(size)


@TASK_UTILS.register_module()
class TorchvisionAnchorGenerator(AnchorGenerator):
    """Anchors equal to torchvision's ``AnchorGenerator`` (see the module
    docstring), with mmretina's ``AnchorGenerator`` interface.

    Args:
        sizes (list[list[int]]): anchor sizes (sqrt of the area, pixels) per
            level; torchvision's RetinaNet default is
            :func:`torchvision_anchor_sizes`.
        aspect_ratios (list[float]): height / width ratios, shared by all
            levels (torchvision's default 0.5, 1, 2).
        strides (list[int]): nominal strides per level. Only the first is
            used to compute anchors: it gives the batched input size,
            ``featmap_sizes[0] * strides[0]``, which is exact when inputs are
            padded to a multiple of it (torchvision pads to 32; keep the
            data preprocessor's ``pad_size_divisor`` a multiple of
            ``strides[0]``). The others are what code that reads
            ``strides`` (anchor analysis) sees; the ONNX export calls
            :meth:`level_strides`, as :meth:`grid_priors` does.
    """

    def __init__(self,
                 sizes: Sequence[Sequence[int]],
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
                 strides: Sequence[int] = (8, 16, 32, 64, 128)) -> None:
        if len(sizes) != len(strides):
            raise ValueError(
                'TorchvisionAnchorGenerator: need one list of sizes per '
                f'stride, got {len(sizes)} sizes for strides {strides}')
        self.sizes = [[int(s) for s in level] for level in sizes]
        if len({len(level) for level in self.sizes}) != 1:
            raise ValueError('TorchvisionAnchorGenerator: every level needs '
                             f'the same number of sizes, got {sizes}')
        super().__init__(
            strides=list(strides),
            ratios=list(aspect_ratios),
            scales=[1.0],
            scale_major=True)

    def gen_base_anchors(self) -> List[Tensor]:
        """torchvision's ``generate_anchors`` per level: (R * S, 4) boxes
        ``round([-w, -h, w, h] / 2)`` centred at 0, ratio major."""
        anchors = []
        for level_sizes in self.sizes:
            scales = torch.as_tensor(
                level_sizes, dtype=torch.float32, device=self.ratios.device)
            h_ratios = torch.sqrt(self.ratios.float())
            w_ratios = 1 / h_ratios
            ws = (w_ratios[:, None] * scales[None, :]).view(-1)
            hs = (h_ratios[:, None] * scales[None, :]).view(-1)
            anchors.append((torch.stack([-ws, -hs, ws, hs], dim=1) /
                            2).round())
        return anchors

    def level_strides(self, featmap_sizes: Sequence[Tuple[int, int]]
                      ) -> List[Tuple[int, int]]:
        """(stride_w, stride_h) per level, as torchvision computes them:
        the input size integer-divided by the level's feature size.

        Args:
            featmap_sizes (list[tuple[int, int]]): (H_l, W_l) per level.

        Returns:
            list[tuple[int, int]]: (stride_w, stride_h) per level.
        """
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(
                f'TorchvisionAnchorGenerator: {self.num_levels} levels '
                f'configured, got {len(featmap_sizes)} feature map sizes')
        first_w, first_h = self.strides[0]
        # ints, or torch.SymInt while exporting with dynamic shapes (int()
        # would fix them to the example's size)
        sizes = [(_as_int(h), _as_int(w)) for h, w in featmap_sizes]
        img_h = sizes[0][0] * int(first_h)
        img_w = sizes[0][1] * int(first_w)
        return [(img_w // w, img_h // h) for h, w in sizes]

    def grid_priors(self,
                    featmap_sizes: Sequence[Tuple[int, int]],
                    dtype: torch.dtype = torch.float32,
                    device: DeviceType = 'cuda') -> List[Tensor]:
        """Anchors of every level, torchvision's values and order.

        Args:
            featmap_sizes (list[tuple[int, int]]): (H_l, W_l) per level.

        Returns:
            list[Tensor]: (H_l * W_l * A, 4) per level, in the pixels of the
            padded input, index (y * W_l + x) * A + a.
        """
        strides = self.level_strides(featmap_sizes)
        return [
            self._level_priors(size, lvl, strides[lvl], dtype, device)
            for lvl, size in enumerate(featmap_sizes)
        ]

    def single_level_grid_priors(self,
                                 featmap_size: Tuple[int, int],
                                 level_idx: int,
                                 dtype: torch.dtype = torch.float32,
                                 device: DeviceType = 'cuda') -> Tensor:
        raise NotImplementedError(
            'TorchvisionAnchorGenerator: the stride of a level depends on '
            'the size of the first level (torchvision divides the input '
            'size by the feature size); call grid_priors with all levels')

    def sparse_priors(self, prior_idxs: Tensor, featmap_size: Tuple[int,
                                                                    int],
                      level_idx: int, dtype: torch.dtype = torch.float32,
                      device: DeviceType = 'cuda') -> Tensor:
        raise NotImplementedError(
            'TorchvisionAnchorGenerator: the stride of a level depends on '
            'the size of the first level; call grid_priors with all levels')

    def _level_priors(self, featmap_size: Tuple[int, int], level_idx: int,
                      stride: Tuple[int, int], dtype: torch.dtype,
                      device: DeviceType) -> Tensor:
        base_anchors = self.base_anchors[level_idx].to(device).to(dtype)
        feat_h, feat_w = featmap_size
        stride_w, stride_h = stride
        shift_x = torch.arange(0, feat_w, device=device).to(dtype) * stride_w
        shift_y = torch.arange(0, feat_h, device=device).to(dtype) * stride_h
        shift_yy, shift_xx = torch.meshgrid(shift_y, shift_x, indexing='ij')
        shift_xx, shift_yy = shift_xx.reshape(-1), shift_yy.reshape(-1)
        shifts = torch.stack([shift_xx, shift_yy, shift_xx, shift_yy], dim=-1)
        return (base_anchors[None, :, :] + shifts[:, None, :]).view(-1, 4)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(sizes={self.sizes}, '
                f'aspect_ratios={self.ratios.tolist()}, '
                f'strides={[s[0] for s in self.strides]})')
