"""``mmretina.RBboxOverlaps2D``: mmrotate's rotated-box overlaps calculator
under the same name, batched over leading dimensions (mmrotate's takes 2-D
inputs only). Its arithmetic is mmrotate's
(:func:`mmretina.structures.rotated.rotated_iou`)."""
from mmdet.structures.bbox import get_box_tensor
from torch import Tensor

from mmretina.registry import TASK_UTILS
from mmretina.structures.rotated import rotated_iou

__all__ = ['RBboxOverlaps2D']


@TASK_UTILS.register_module()
class RBboxOverlaps2D:
    """IoU / IoF of rotated boxes.

    Call with ``bboxes1`` (..., N, 5) and ``bboxes2`` (..., M, 5)
    (tensors or ``RotatedBoxes``); returns (..., N, M), or (..., N) with
    ``is_aligned``.
    """

    def __call__(self, bboxes1, bboxes2, mode: str = 'iou',
                 is_aligned: bool = False) -> Tensor:
        if mode not in ('iou', 'iof'):
            raise ValueError(f"mmretina.RBboxOverlaps2D: mode must be 'iou' "
                             f"or 'iof', got {mode!r}")
        return rotated_iou(get_box_tensor(bboxes1), get_box_tensor(bboxes2),
                           aligned=is_aligned, mode=mode)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'
