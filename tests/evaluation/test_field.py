"""Hand-computed cases of the field evaluation (IoU 0.4, one-to-one,
averaged over images as DeepForest's ``evaluate_boxes``)."""
import csv
import json
import warnings

import cv2
import numpy as np
import pytest

from mmretina.evaluation.field import (class_recall, coco_map, draw_matches,
                                       field_summary, match_boxes, match_ious,
                                       match_image, precision_recall,
                                       write_matches_csv, write_summary)

CLASSES = ('tree', )


def img(name, gt, pred, scores=None, labels=None, gt_labels=None, site='',
        thr=0.3):
    gt = np.asarray(gt, float).reshape(-1, 4)
    pred = np.asarray(pred, float).reshape(-1, 4)
    scores = np.ones(len(pred)) if scores is None else scores
    labels = np.zeros(len(pred), int) if labels is None else labels
    gt_labels = np.zeros(len(gt), int) if gt_labels is None else gt_labels
    return match_image(name, gt, gt_labels, pred, scores, labels,
                       score_thr=thr, site=site, width=100, height=100)


def test_iou_exactly_at_threshold_is_no_match():
    # IoU of [0,0,10,10] and [0,0,10,4] is 40 / 100 = 0.4 exactly
    g, p, ious, mat = match_boxes([[0, 0, 10, 10]], [[0, 0, 10, 4]], 0.4)
    assert mat[0, 0] == pytest.approx(0.4)
    assert len(g) == 0
    # 41 / 100 > 0.4: a match
    g, p, ious, _ = match_boxes([[0, 0, 10, 10]], [[0, 0, 10, 4.1]], 0.4)
    assert g.tolist() == [0] and p.tolist() == [0]
    assert ious[0] == pytest.approx(0.41)


def test_read_only_boxes_match_without_warning():
    # GeoDataFrame.bounds.values is read-only; torch warns on such arrays
    gt = np.array([[0., 0., 10., 10.]])
    pred = np.array([[0., 0., 10., 9.]])
    gt.flags.writeable = pred.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        m = match_image('a', gt, np.zeros(1, int), pred, np.ones(1),
                        np.zeros(1, int))
    assert m.tp == 1


def test_tie_goes_to_the_higher_score_and_the_other_is_fp():
    gt = [[0, 0, 10, 10]]
    pred = [[0, 0, 10, 8], [0, 2, 10, 10]]  # both IoU 0.8
    m = img('a', gt, pred, scores=np.array([0.5, 0.9]))
    assert m.tp == 1 and m.pred_idx.tolist() == [1]
    pr = precision_recall([m])
    assert pr['precision'] == 0.5 and pr['recall'] == 1.0
    m = img('a', gt, pred, scores=np.array([0.9, 0.5]))
    assert m.pred_idx.tolist() == [0]


def test_weak_pairs_do_not_displace_a_match():
    # gt A, B; P1-A 0.5, P1-B 0.3, P2-A 0.3, P2-B 0: summing all IoUs
    # picks P1-B + P2-A (0.6 > 0.5) and finds nothing above 0.4
    ious = np.array([[0.5, 0.3], [0.3, 0.0]])
    g, p = match_ious(ious, 0.4)
    assert g.tolist() == [0] and p.tolist() == [0]
    # a tie in IoU goes to the higher score
    g, p = match_ious(np.array([[0.7, 0.7]]), 0.4, np.array([0.2, 0.6]))
    assert p.tolist() == [1]


def test_one_to_one_hungarian_beats_greedy():
    # P1 overlaps A (0.64) and B (0.5); P2 overlaps A only (0.6). Greedy by
    # IoU gives P1-A and leaves B; Hungarian gives P1-B, P2-A: 2 TP.
    gt = [[0, 0, 10, 10], [4, 0, 14, 10]]
    pred = [[2, 0, 12, 10], [0, 0, 10, 6]]
    m = img('a', gt, pred)
    assert m.tp == 2
    assert dict(zip(m.gt_idx.tolist(), m.pred_idx.tolist())) == {0: 1, 1: 0}


def test_averaged_over_images_as_deepforest():
    # image a: 2 gt, 1 pred matching -> P 1, R 0.5
    a = img('a', [[0, 0, 10, 10], [50, 50, 60, 60]], [[0, 0, 10, 10]])
    # image b: 1 gt, 2 preds, 1 match -> P 0.5, R 1
    b = img('b', [[0, 0, 10, 10]], [[0, 0, 10, 10], [80, 80, 90, 90]])
    # image c: 1 gt, no prediction -> R 0, left out of the precision mean
    c = img('c', [[0, 0, 10, 10]], [])
    # image d: no gt, 3 predictions -> left out of both means
    d = img('d', [], [[0, 0, 5, 5], [10, 10, 20, 20], [30, 30, 40, 40]])
    pr = precision_recall([a, b, c, d])
    assert pr['precision'] == pytest.approx((1 + 0.5) / 2)
    assert pr['recall'] == pytest.approx((0.5 + 1 + 0) / 3)
    assert (pr['tp'], pr['n_gt'], pr['n_pred']) == (2, 4, 6)


def test_score_threshold_and_empty_cases():
    # the 0.2 prediction is below score_thr: no prediction left
    m = img('a', [[0, 0, 10, 10]], [[0, 0, 10, 10]], scores=np.array([0.2]))
    assert m.n_pred == 0
    pr = precision_recall([m])
    assert pr['recall'] == 0.0 and pr['precision'] is None
    # no ground truth anywhere: recall undefined, precision 0
    pr = precision_recall([img('a', [], [[0, 0, 10, 10]])])
    assert pr['recall'] is None and pr['precision'] == 0.0
    # nothing at all
    pr = precision_recall([img('a', [], [])])
    assert pr['recall'] is None and pr['precision'] is None
    # mAP: no ground truth -> None; ground truth but no detection -> 0
    assert coco_map([img('a', [], [[0, 0, 1, 1]])], CLASSES)['mAP'] is None
    assert coco_map([img('a', [[0, 0, 9, 9]], [])], CLASSES)['mAP'] == 0.0


def test_class_recall_among_matched_pairs():
    classes = ('oak', 'pine')
    gt = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]]
    pred = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    m = img('a', gt, pred, labels=np.array([0, 1, 1]),
            gt_labels=np.array([0, 0, 1, 1]))
    cr = class_recall([m], classes)
    # oak: 2 matched gt, 1 predicted oak -> 0.5; 1 oak prediction, right
    assert cr['oak'] == dict(recall=0.5, precision=1.0, size=2, found=0.5)
    # pine: 1 matched gt (the 4th is missed) predicted pine; 2 pine
    # predictions, one on an oak
    assert cr['pine'] == dict(recall=1.0, precision=0.5, size=2, found=0.5)


def test_coco_map_perfect_and_half():
    gt = [[0, 0, 10, 10], [20, 20, 40, 40]]
    m = img('a', gt, gt, scores=np.array([0.9, 0.8]))
    r = coco_map([m], CLASSES)
    assert r['mAP'] == pytest.approx(1.0) and r['mAP50'] == pytest.approx(1)
    # one of two found, ranked first: AP50 = 0.5 (101-point interpolation
    # gives recall 0..0.5 precision 1, beyond 0)
    m = img('a', gt, [[0, 0, 10, 10]])
    r = coco_map([m], CLASSES)
    assert r['mAP50'] == pytest.approx(51 / 101)


def test_summary_matches_csv_and_png(tmp_path):
    a = img('r1.tif', [[0, 0, 10, 10], [50, 50, 60, 60]],
            [[0, 0, 10, 10], [80, 80, 90, 90]], site='OSBS')
    b = img('r2.tif', [[0, 0, 10, 10]], [[1, 1, 10, 10]], site='SJER')
    s = field_summary([a, b], CLASSES)
    assert set(s) >= {'overall', 'per_raster', 'per_site'}
    for k in ('precision', 'recall', 'mAP', 'mAP50'):
        assert k in s['overall']
    assert s['per_raster']['r1.tif']['precision'] == 0.5
    assert s['per_raster']['r1.tif']['recall'] == 0.5
    assert s['per_site']['SJER']['recall'] == 1.0
    assert s['overall']['recall'] == pytest.approx(0.75)
    write_summary(str(tmp_path / 'summary.json'), s)
    assert json.load(open(tmp_path / 'summary.json'))['overall'] == \
        json.loads(json.dumps(s['overall']))
    n = write_matches_csv(str(tmp_path / 'm.csv'), [a, b], CLASSES)
    rows = list(csv.DictReader(open(tmp_path / 'm.csv')))
    assert n == len(rows) == 4
    assert sorted(r['status'] for r in rows) == ['fp', 'miss', 'tp', 'tp']
    canvas = np.zeros((100, 100, 3), np.uint8)
    counts = draw_matches(str(tmp_path / 'r1.png'), canvas, a)
    assert counts == dict(tp=1, fp=1, miss=1)
    out = cv2.imread(str(tmp_path / 'r1.png'))
    # three colours at the box edges: tp green, fp red, miss yellow
    assert tuple(out[0, 5]) == (0, 200, 0)
    assert tuple(out[85, 80]) == (0, 0, 230)
    assert tuple(out[55, 50]) == (0, 215, 255)


# ------------------------------------------------------------ rotated boxes
# (cx, cy, w, h, angle) px and radians
Q = np.pi / 4


def rimg(name, gt, pred, scores=None, thr=0.3):
    gt = np.asarray(gt, float).reshape(-1, np.shape(gt)[-1] if len(gt)
                                       else 5)
    pred = np.asarray(pred, float).reshape(-1, 5)
    scores = np.ones(len(pred)) if scores is None else scores
    return match_image(name, gt, np.zeros(len(gt), int), pred, scores,
                       np.zeros(len(pred), int), score_thr=thr, width=100,
                       height=100)


def test_rotated_iou_by_hand():
    from mmretina.evaluation.field import box_ious
    # a 10 px square and the same square at 45 degrees: they share a
    # regular octagon of 200 (sqrt 2 - 1) px^2, IoU 1 / sqrt 2
    iou = box_ious([[50, 50, 10, 10, 0]], [[50, 50, 10, 10, Q]])
    assert iou[0, 0] == pytest.approx(1 / np.sqrt(2), abs=1e-5)
    # axis-aligned ground truth against a rotated prediction: the box is
    # the rotated box of angle 0
    iou = box_ious([[45, 45, 55, 55]], [[50, 50, 10, 10, Q]])
    assert iou[0, 0] == pytest.approx(1 / np.sqrt(2), abs=1e-5)
    assert box_ious(np.zeros((0, 4)), [[50, 50, 10, 10, Q]]).shape == (0, 1)


def test_rotated_matching_crossing_bars_are_no_match():
    # a 40 x 4 px bar at 45 degrees, found by a bar along it and by a bar
    # crossing it: the crossing bar shares only a 4 x 4 square (IoU 16 /
    # 304 = 0.053) though both have the same enclosing axis-aligned box
    gt = [[50, 50, 40, 4, Q]]
    m = rimg('a', gt, [[50, 50, 40, 4, -Q], [50.5, 50.5, 40, 4, Q]],
             scores=np.array([0.9, 0.5]))
    assert m.rotated and m.tp == 1 and m.pred_idx.tolist() == [1]
    assert m.ious[0] > 0.8
    assert rimg('a', gt, [[50, 50, 40, 4, -Q]]).tp == 0
    pr = precision_recall([m])
    assert pr['precision'] == 0.5 and pr['recall'] == 1.0
    # as axis-aligned boxes the crossing bar would match perfectly
    from mmretina.structures.rotated import rbox_to_hbox
    import torch
    hb = rbox_to_hbox(torch.tensor(gt, dtype=torch.float64)).numpy()
    assert match_boxes(hb, hb)[2][0] == pytest.approx(1.0)


def test_rotated_coco_map_matches_csv_and_png(tmp_path):
    gt = [[30, 30, 40, 4, Q], [70, 70, 20, 10, -0.3]]
    r = coco_map([rimg('a', gt, gt, scores=np.array([0.9, 0.8]))], CLASSES)
    assert r['mAP'] == pytest.approx(1.0) and r['mAP50'] == pytest.approx(1)
    # the crossing bar ranked first is a false positive at rotated IoU;
    # the second box is found: AP50 over recall 0.5..: 0.5 precision
    m = rimg('a', gt, [[30, 30, 40, 4, -Q], [70, 70, 20, 10, -0.3]],
             scores=np.array([0.9, 0.8]))
    r = coco_map([m], CLASSES)
    assert r['mAP50'] == pytest.approx(51 / 101 * 0.5)
    n = write_matches_csv(str(tmp_path / 'm.csv'), [m], CLASSES)
    rows = list(csv.DictReader(open(tmp_path / 'm.csv')))
    assert n == 3 and sorted(r['status'] for r in rows) == [
        'fp', 'miss', 'tp']
    assert list(rows[0])[9:] == ['gt_cx', 'gt_cy', 'gt_w', 'gt_h',
                                 'gt_angle', 'pred_cx', 'pred_cy', 'pred_w',
                                 'pred_h', 'pred_angle']
    tp = next(r for r in rows if r['status'] == 'tp')
    assert float(tp['pred_angle']) == pytest.approx(-0.3)
    with pytest.raises(ValueError, match='rotated IoU and others not'):
        write_matches_csv(str(tmp_path / 'x.csv'),
                          [m, img('b', [[0, 0, 1, 1]], [])], CLASSES)
    counts = draw_matches(str(tmp_path / 'a.png'),
                          np.zeros((100, 100, 3), np.uint8), m)
    assert counts == dict(tp=1, fp=1, miss=1)
    out = cv2.imread(str(tmp_path / 'a.png'))
    # the missed bar (yellow) drawn along its diagonal (7 px from its
    # centre: (35, 35)), the false positive (red) across it ((37, 23))
    assert (out[33:38, 33:38] == (0, 215, 255)).all(axis=2).any()
    assert (out[21:26, 35:40] == (0, 0, 230)).all(axis=2).any()
    assert not (out[21:26, 35:40] == (0, 215, 255)).all(axis=2).any()
