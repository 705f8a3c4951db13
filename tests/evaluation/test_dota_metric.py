"""mmretina.DOTAMetric: mmrotate's DOTAMetric, which also reads an
axis-aligned detector's (x1, y1, x2, y2) as rotated boxes of angle 0 (the
oriented demo's comparison of a rotated and an axis-aligned model)."""
import copy
import math

import pytest
import torch

from mmretina.utils.mmrotate import require_mmrotate

try:
    require_mmrotate()
except ImportError as e:
    pytest.skip(str(e), allow_module_level=True)

from mmengine.registry import DefaultScope  # noqa: E402
from mmrotate.evaluation.metrics import DOTAMetric as MMRotateDOTAMetric  # noqa
from mmrotate.registry import METRICS as MMROTATE_METRICS  # noqa: E402

from mmretina.evaluation.dota import DOTAMetric  # noqa: E402

META = dict(classes=('small-vehicle', 'ship'))


@pytest.fixture(autouse=True)
def forked_ap_pool(monkeypatch):
    """mmrotate's eval_rbbox_map computes TP / FP in a pool of 4 *spawned*
    processes, each importing torch and mmcv again (~20 s per metric here);
    forked workers run the same functions on the same inputs in a second."""
    import multiprocessing

    from mmrotate.evaluation.functional import mean_ap
    monkeypatch.setattr(mean_ap, 'get_context',
                        lambda method: multiprocessing.get_context('fork'))


def sample(pred_boxes, scores, labels, gt_rboxes, gt_labels):
    return dict(
        img_id='img',
        gt_instances=dict(bboxes=torch.tensor(gt_rboxes, dtype=torch.float32),
                          labels=torch.tensor(gt_labels)),
        ignored_instances=dict(bboxes=torch.zeros(0, 5),
                               labels=torch.zeros(0, dtype=torch.long)),
        pred_instances=dict(
            bboxes=torch.tensor(pred_boxes, dtype=torch.float32),
            scores=torch.tensor(scores), labels=torch.tensor(labels)))


def evaluate(metric, samples):
    metric.dataset_meta = META
    metric.process({}, copy.deepcopy(samples))
    return metric.compute_metrics(metric.results)


def test_built_from_mmrotate_scope_by_its_prefixed_name():
    with DefaultScope.overwrite_default_scope('mmrotate'):
        metric = MMROTATE_METRICS.build(dict(type='mmretina.DOTAMetric',
                                             iou_thrs=[0.5]))
    assert type(metric) is DOTAMetric


def test_rotated_predictions_score_as_mmrotate():
    gen = torch.Generator().manual_seed(0)
    gts = torch.cat([torch.rand(12, 2, generator=gen) * 200,
                     torch.tensor([[24., 8.]]).repeat(12, 1),
                     (torch.rand(12, 1, generator=gen) - 0.5) * math.pi], 1)
    preds = gts + torch.randn(12, 5, generator=gen) * torch.tensor(
        [2., 2., 2., 1., 0.2])
    labels = torch.arange(12) % 2
    s = [sample(preds.tolist(), torch.rand(12, generator=gen).tolist(),
                labels.tolist(), gts.tolist(), labels.tolist())]
    ours = evaluate(DOTAMetric(), s)
    theirs = evaluate(MMRotateDOTAMetric(), s)
    assert ours == theirs
    assert 0 < ours['AP50'] < 1


def test_axis_aligned_prediction_is_its_rotated_box_of_angle_0():
    # a car 30 x 10 px along x, one at 45 degrees: the enclosing box of the
    # first is the car itself (IoU 1); of the second, a square of side
    # 40 / sqrt(2), has rotated IoU 300 / 800 = 0.375 with it: a miss
    side = (30 + 10) / math.sqrt(2)
    gts = [[50., 50., 30., 10., 0.], [150., 50., 30., 10., math.pi / 4]]
    hboxes = [[35., 45., 65., 55.],
              [150 - side / 2, 50 - side / 2, 150 + side / 2, 50 + side / 2]]
    s = [sample(hboxes, [0.9, 0.8], [0, 0], gts, [0, 0])]
    ours = evaluate(DOTAMetric(), s)
    rboxes = [[50., 50., 30., 10., 0.], [150., 50., side, side, 0.]]
    theirs = evaluate(MMRotateDOTAMetric(),
                      [sample(rboxes, [0.9, 0.8], [0, 0], gts, [0, 0])])
    assert ours == theirs
    # one of the two cars found, by the 11-point VOC07 AP of DOTAMetric:
    # recall 0.5 at precision 1 -> 6 of 11 points
    assert ours['AP50'] == pytest.approx(6 / 11, abs=1e-3)


def test_mmrotate_reads_four_coordinates_wrongly():
    """Why the metric exists: mmrotate's own reads (x1, y1, x2, y2, score)
    as (cx, cy, w, h, angle) and scores the exact box as a miss."""
    gts = [[50., 50., 30., 10., 0.]]
    s = [sample([[35., 45., 65., 55.]], [0.9], [0], gts, [0])]
    assert evaluate(DOTAMetric(), s)['AP50'] == pytest.approx(1.0)
    assert evaluate(MMRotateDOTAMetric(), s)['AP50'] == 0
