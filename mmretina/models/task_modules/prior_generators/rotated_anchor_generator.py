"""Horizontal anchors as rotated boxes, for rotated RetinaNet (mmrotate's
``FakeRotatedAnchorGenerator``: same name, arguments and values).

Each anchor of :class:`~.anchor_generator.AnchorGenerator` becomes
``(cx, cy, w, h, 0)`` (mmrotate's ``hbox2rbox``), regularised to
``angle_version`` where one is given (le90 turns the tall anchors into
``(cx, cy, h, w, -pi/2)``: the same rectangle). The grid is the horizontal
one, so :meth:`grid_layout` (the windows of the batched assignment) holds:
an anchor covers the same pixels in both forms.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from mmretina.registry import TASK_UTILS
from mmretina.structures.rotated import ANGLE_VERSIONS
from mmretina.utils.mmrotate import require_mmrotate
from .anchor_generator import AnchorGenerator, DeviceType

__all__ = ['FakeRotatedAnchorGenerator']


@TASK_UTILS.register_module()
class FakeRotatedAnchorGenerator(AnchorGenerator):
    """Anchor generator of rotated RetinaNet.

    Args:
        angle_version (str, optional): 'le90', 'oc' or 'le135'; None keeps
            every angle 0 (anchors of mmrotate 0.x models).
        **kwargs: :class:`~.anchor_generator.AnchorGenerator`'s arguments.

    ``grid_priors`` returns mmrotate's ``RotatedBoxes`` of shape
    (H_l * W_l * A, 5) per level, as mmrotate's generator does.
    """

    box_dim = 5

    def __init__(self, angle_version: Optional[str] = None, **kwargs) -> None:
        if angle_version is not None and angle_version not in ANGLE_VERSIONS:
            raise ValueError(
                'mmretina.FakeRotatedAnchorGenerator: angle_version must be '
                f'one of {ANGLE_VERSIONS} or None, got {angle_version!r}')
        require_mmrotate('mmretina.FakeRotatedAnchorGenerator', models=False)
        kwargs.pop('use_box_type', None)  # always mmrotate's RotatedBoxes
        super().__init__(**kwargs)
        self.angle_version = angle_version

    def single_level_grid_priors(self,
                                 featmap_size: Tuple[int, int],
                                 level_idx: int,
                                 dtype: torch.dtype = torch.float32,
                                 device: DeviceType = 'cuda'):
        """Anchors of one level as ``RotatedBoxes`` (H * W * A, 5), index
        ``(y * W + x) * A + a``."""
        from mmrotate.structures.bbox import RotatedBoxes, hbox2rbox
        anchors = hbox2rbox(super().single_level_grid_priors(
            featmap_size, level_idx, dtype=dtype, device=device))
        anchors = RotatedBoxes(anchors, clone=False)
        if self.angle_version:
            anchors = RotatedBoxes(
                anchors.regularize_boxes(self.angle_version), clone=False)
        return anchors

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + \
            f', angle_version={self.angle_version!r})'
