"""DOTA's mAP for axis-aligned detectors too: ``mmretina.DOTAMetric``.

mmrotate's ``DOTAMetric`` (VOC AP at rotated IoU, ``eval_rbbox_map``) reads
predictions as rotated boxes ``(cx, cy, w, h, angle)``; an axis-aligned
detector's ``(x1, y1, x2, y2)`` would be read as garbage. To compare an
axis-aligned model with a rotated one on the same labels and the same
metric (the oriented demo, ``configs/rotated/``), ``mmretina.DOTAMetric``
takes either: a prediction with four coordinates is the rotated box of
angle 0 that covers the same pixels (mmrotate's ``hbox2rbox``), and
everything else, rotated predictions included, is mmrotate's metric
unchanged (its arguments and results, tested equal).

Needs the ``rotated`` extra. ``type='mmretina.DOTAMetric'`` in a config
imports this module on first use (the registry's location).
"""
from typing import Sequence

from mmdet.structures.bbox import get_box_tensor

from mmretina.registry import METRICS
from mmretina.utils.mmrotate import require_mmrotate

require_mmrotate('mmretina.DOTAMetric')
from mmrotate.evaluation.metrics import DOTAMetric as _DOTAMetric  # noqa
from mmrotate.structures.bbox import hbox2rbox  # noqa: E402

__all__ = ['DOTAMetric']

@METRICS.register_module()
class DOTAMetric(_DOTAMetric):
    """mmrotate's ``DOTAMetric`` (same arguments), which also scores
    axis-aligned predictions: ``pred_instances.bboxes`` of shape (N, 4),
    ``(x1, y1, x2, y2)`` in pixels of the original image, become
    ``(cx, cy, w, h, 0)``. Ground truth is read as mmrotate reads it
    (rotated boxes from the dataset's pipeline)."""

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample['pred_instances']
            boxes = get_box_tensor(pred['bboxes'])
            if boxes.size(-1) == 4:
                pred['bboxes'] = hbox2rbox(boxes)
        super().process(data_batch, data_samples)
