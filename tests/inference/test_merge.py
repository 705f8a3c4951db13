"""Windows over an image and the merge of their detections."""
import pytest
import torch

from mmretina.geo.windows import Window, tile_starts, tile_windows
from mmretina.inference.merge import (cut_mask, drop_cut_boxes, merge_nms,
                                      weighted_boxes_fusion)


def test_windows_cover_the_image_and_end_at_its_border():
    wins = tile_windows(1249, 1035, 400, overlap=0.25)
    xs = sorted({w.x0 for w in wins})
    ys = sorted({w.y0 for w in wins})
    assert xs == [0, 300, 600, 849] and ys == [0, 300, 600, 635]
    assert all(w.width == 400 and w.height == 400 for w in wins)
    covered = torch.zeros(1035, 1249, dtype=torch.bool)
    for w in wins:
        covered[w.y0:w.y1, w.x0:w.x1] = True
    assert covered.all()


def test_overlap_in_px_and_small_images():
    assert tile_starts(1000, 400, 300) == [0, 300, 600]
    assert [w.x0 for w in tile_windows(1000, 400, 400, overlap=100)] == \
        [0, 300, 600]
    assert tile_windows(300, 200, 400) == [Window(0, 0, 300, 200)]
    assert tile_windows(400, 400, 400) == [Window(0, 0, 400, 400)]
    # wider than a tile, not higher: windows as high as the image
    assert tile_windows(500, 100, 400, 0) == [
        Window(0, 0, 400, 100), Window(100, 0, 500, 100)]


@pytest.mark.parametrize('kwargs, match', [
    (dict(width=0, height=5, tile=4), 'image size'),
    (dict(width=5, height=5, tile=0), 'tile must be'),
    (dict(width=5, height=5, tile=4, overlap=1.0 * 4), 'overlap'),
    (dict(width=5, height=5, tile=4, overlap=-0.1), 'overlap'),
])
def test_bad_window_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tile_windows(**kwargs)


def test_cut_mask_only_inner_edges():
    win = Window(300, 0, 700, 400)  # touches the image top, not the rest
    boxes = torch.tensor([
        [301.0, 50, 340, 90],  # at the left inner edge
        [500.0, 0, 540, 30],  # at the image's top border: whole
        [650.0, 100, 699, 140],  # right inner edge (within 2 px)
        [400.0, 370, 440, 400],  # bottom inner edge
        [400.0, 100, 440, 140],  # inside
    ])
    assert cut_mask(boxes, win, 1000, 800).tolist() == [
        True, False, True, True, False]
    assert cut_mask(boxes, win, 1000, 800, border=0.5).tolist() == [
        False, False, False, True, False]
    # a window that is the whole image has no inner edge
    assert not cut_mask(boxes, Window(0, 0, 1000, 800), 1000, 800).any()


def test_drop_cut_boxes_needs_a_whole_box_of_the_same_class_elsewhere():
    boxes = torch.tensor([
        [380.0, 10, 399, 50],  # 0: cut by tile 0's right edge
        [360.0, 10, 420, 50],  # 1: the same object, whole in tile 1
        [380.0, 100, 399, 140],  # 2: cut, other tile sees class 1 there
        [360.0, 100, 420, 140],  # 3: class 1, whole
        [380.0, 200, 399, 240],  # 4: cut, nobody sees it whole: kept
        [385.0, 300, 399, 340],  # 5: cut, whole box in the SAME tile
        [360.0, 300, 420, 340],  # 6: tile 0, whole
    ])
    labels = torch.tensor([0, 0, 0, 1, 0, 0, 0])
    tiles = torch.tensor([0, 1, 0, 1, 0, 0, 0])
    cut = torch.tensor([True, False, True, False, True, True, False])
    keep = drop_cut_boxes(boxes, labels, tiles, cut)
    assert keep.tolist() == [False, True, True, True, True, True, True]
    assert torch.equal(drop_cut_boxes(boxes, labels, tiles, cut, chunk=1),
                       keep)
    # coverage below min_cover keeps the cut box
    keep = drop_cut_boxes(boxes, labels, tiles, cut, min_cover=1.01)
    assert keep.all()


def test_merge_nms_is_class_aware():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10],
                          [1.0, 0, 11, 10], [50.0, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    assert merge_nms(boxes, scores, labels, 0.5).tolist() == [0, 2, 3]
    assert merge_nms(boxes[:0], scores[:0], labels[:0]).numel() == 0


def test_weighted_boxes_fusion_by_hand():
    boxes = torch.tensor([[0.0, 0, 10, 10], [2.0, 0, 12, 10],
                          [100.0, 100, 110, 110], [0.0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.3, 0.5, 0.4])
    labels = torch.tensor([0, 0, 0, 1])
    b, s, lab = weighted_boxes_fusion(boxes, scores, labels, iou_thr=0.55)
    # cluster {0, 1}: x = (0*.9 + 2*.3) / 1.2 = 0.5, x2 = 10.5; mean score
    # 0.6; the lone boxes keep theirs (T = 1 without windows)
    assert lab.tolist() == [0, 0, 1]
    assert torch.allclose(s, torch.tensor([0.6, 0.5, 0.4]))
    assert torch.allclose(b[0], torch.tensor([0.5, 0.0, 10.5, 10.0]))
    assert torch.equal(b[1], boxes[2]) and torch.equal(b[2], boxes[3])
    # with windows: a box inside two windows found by one is halved
    wins = [Window(0, 0, 200, 200), Window(50, 50, 250, 250)]
    b, s, lab = weighted_boxes_fusion(boxes, scores, labels, 0.55, wins)
    assert torch.allclose(s, torch.tensor([0.6, 0.4, 0.25]))
    assert weighted_boxes_fusion(boxes[:0], scores[:0],
                                 labels[:0])[0].shape == (0, 4)
    with pytest.raises(ValueError, match='iou_thr'):
        weighted_boxes_fusion(boxes, scores, labels, iou_thr=1.5)


def _many_boxes(seed=0, size=2000, tile=400, overlap=100, per_window=150):
    """Boxes detected window by window over a ``size`` px image: clusters
    of jittered copies (the duplicates NMS removes), inside their window."""
    from mmretina.geo.windows import tile_windows
    g = torch.Generator().manual_seed(seed)
    windows = tile_windows(size, size, tile, overlap)
    boxes, tiles = [], []
    for t, w in enumerate(windows):
        centre = torch.rand(per_window // 3, 2, generator=g) * (tile - 40) + 20
        centre = centre.repeat_interleave(3, 0)
        centre = centre + torch.randn(centre.shape, generator=g)
        half = torch.rand(per_window // 3, 2, generator=g) * 25 + 8
        half = half.repeat_interleave(3, 0) + torch.rand(
            len(centre), 2, generator=g)
        b = torch.cat([centre - half, centre + half], 1)
        b = b.clamp(min=0, max=tile) + torch.tensor([w.x0, w.y0, w.x0, w.y0])
        boxes.append(b)
        tiles.append(torch.full((len(b), ), t))
    boxes, tiles = torch.cat(boxes), torch.cat(tiles)
    scores = (torch.randperm(len(boxes), generator=g) + 1) / len(boxes)
    labels = torch.randint(0, 2, (len(boxes), ), generator=g)
    return boxes, scores, labels, tiles, windows, size


def test_window_neighbours():
    from mmretina.geo.windows import tile_windows
    from mmretina.inference.merge import window_neighbours
    windows = tile_windows(1000, 700, 400, 100)  # 3 x 2 windows
    nb = window_neighbours(windows)
    for t, w in enumerate(windows):
        want = [u for u, v in enumerate(windows)
                if v.x0 < w.x1 and w.x0 < v.x1 and v.y0 < w.y1
                and w.y0 < v.y1]
        assert nb[t].tolist() == want


def test_local_merge_equals_the_global_merge():
    from mmretina.inference.merge import (
        drop_cut_boxes_local, merge_nms, merge_nms_local)
    boxes, scores, labels, tiles, windows, size = _many_boxes()
    assert len(boxes) > 3000
    cut = torch.cat([cut_mask(boxes[tiles == t], w, size, size)
                     for t, w in enumerate(windows)])
    keep = drop_cut_boxes(boxes, labels, tiles, cut)
    assert 0 < int((~keep).sum()) < int(cut.sum())  # the rule did work
    assert torch.equal(
        drop_cut_boxes_local(boxes, labels, tiles, cut, windows), keep)
    boxes, scores, labels, tiles = (boxes[keep], scores[keep], labels[keep],
                                    tiles[keep])
    ref = merge_nms(boxes, scores, labels, 0.5)
    got = merge_nms_local(boxes, scores, labels, tiles, windows, 0.5)
    assert len(boxes) * 0.2 < len(ref) < len(boxes) * 0.8
    assert torch.equal(got, ref)


def test_tiled_inferencer_merges_locally_above_the_threshold(monkeypatch):
    from mmengine.structures import InstanceData

    from mmretina.inference.tiled import TiledInferencer
    from mmretina.inference import merge as tiling
    boxes, scores, labels, tiles, windows, size = _many_boxes(seed=1)
    per_window = {}
    for t, w in enumerate(windows):
        m = tiles == t
        inst = InstanceData()
        inst.bboxes = boxes[m] - torch.tensor([w.x0, w.y0, w.x0, w.y0])
        inst.scores, inst.labels = scores[m], labels[m]
        per_window[t] = inst
    inf = TiledInferencer(lambda imgs: [], tile=400, overlap=100,
                          progress=False)
    results = {}
    for name, threshold in (('global', 10**9), ('local', 0)):
        monkeypatch.setattr('mmretina.inference.tiled.LOCAL_MERGE_MIN',
                            threshold)
        results[name] = inf.merge_windows(per_window, windows, size, size)
    assert tiling.LOCAL_MERGE_MIN == 10000
    for k in ('bboxes', 'scores', 'labels'):
        assert torch.equal(results['local'][k], results['global'][k]), k


# ------------------------------------------------------------ rotated boxes
# (cx, cy, w, h, angle) px and radians, as an oriented model returns them
Q = 3.141592653589793 / 4


def test_rotated_cut_mask_tests_the_corners():
    win = Window(300, 0, 700, 400)  # touches the image top, not the rest
    boxes = torch.tensor([
        [322.0, 200, 30, 30, Q],  # a diamond: left corner at x = 300.8
        [322.0, 200, 30, 30, 0],  # the same square upright: x >= 307
        [500.0, 10, 30, 30, Q],  # top corner above the image border
        [680.0, 200, 30, 10, 0.3],  # right corner at x = 695.8
        [680.0, 200, 40, 10, 0.3],  # right corner at x = 700.6: past
    ])
    assert cut_mask(boxes, win, 1000, 800).tolist() == [
        True, False, False, False, True]
    assert not cut_mask(boxes, Window(0, 0, 1000, 800), 1000, 800).any()


def test_rotated_cut_boxes_dropped_by_rotated_cover():
    # tiles 0 = [0, 400) and 1 = [300, 700) of a 1000 x 400 image
    boxes = torch.tensor([
        [385.0, 100, 30, 30, Q],  # 0: cut (right corner at 406), tile 0
        [386.0, 100, 30, 30, Q],  # 1: the same object whole in tile 1
        [390.0, 200, 40, 4, Q],  # 2: a bar, cut, tile 0
        [390.0, 200, 40, 4, -Q],  # 3: a crossing bar, whole in tile 1
    ])
    labels = torch.zeros(4, dtype=torch.long)
    tiles = torch.tensor([0, 1, 0, 1])
    wins = [Window(0, 0, 400, 400), Window(300, 0, 700, 400)]
    cut = torch.stack([cut_mask(b[None], wins[t], 1000, 400)[0]
                       for b, t in zip(boxes, tiles.tolist())])
    assert cut.tolist() == [True, False, True, False]
    # 2 and 3 have the same enclosing box (cover 1 as axis-aligned boxes)
    # but cross in a 4 x 4 square: 16 / 160 = 0.1 of the cut bar
    from mmretina.structures.rotated import rotated_iou
    assert float(rotated_iou(boxes[2:3], boxes[3:], mode='iof')) == \
        pytest.approx(0.1, abs=1e-3)
    keep = drop_cut_boxes(boxes, labels, tiles, cut)
    assert keep.tolist() == [False, True, True, True]
    assert drop_cut_boxes(boxes, labels, tiles, cut, min_cover=0.05).tolist() \
        == [False, True, False, True]


def test_rotated_nms_keeps_ships_moored_side_by_side():
    from mmretina.structures.rotated import rbox_to_hbox
    # two 60 x 8 px ships at 45 degrees, 10 px apart across their length
    # (a 2 px gap), a near copy of the first, and a copy of another class
    boxes = torch.tensor([[100.0, 100, 60, 8, Q],
                          [100.0 - 7.0711, 100 + 7.0711, 60, 8, Q],
                          [101.0, 100, 60, 8, Q],
                          [100.0, 100, 60, 8, Q]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 0, 1])
    assert merge_nms(boxes, scores, labels, 0.1).tolist() == [0, 1, 3]
    # as axis-aligned boxes the two ships overlap by IoU 0.6: one is lost
    assert merge_nms(rbox_to_hbox(boxes), scores, labels,
                     0.5).tolist() == [0, 3]
    with pytest.raises(ValueError, match='--merge nms'):
        weighted_boxes_fusion(boxes, scores, labels)


def _many_rboxes(seed=0, size=1200, tile=400, overlap=100, per_window=60):
    """Rotated boxes detected window by window: clusters of jittered
    copies at random angles, centres inside their window, corners past
    its edge by up to a few px where a box lies at it."""
    from mmretina.geo.windows import tile_windows
    g = torch.Generator().manual_seed(seed)
    windows = tile_windows(size, size, tile, overlap)
    boxes, tiles = [], []
    for t, w in enumerate(windows):
        n = per_window // 3
        centre = (torch.rand(n, 2, generator=g) * (tile - 30) + 15)
        wh = torch.rand(n, 2, generator=g) * 25 + 5
        angle = (torch.rand(n, 1, generator=g) - 0.5) * 3.1
        b = torch.cat([centre, wh, angle], 1).repeat_interleave(3, 0)
        b = b + torch.randn(b.shape, generator=g) * torch.tensor(
            [1.0, 1.0, 1.0, 1.0, 0.05])
        boxes.append(b + torch.tensor([w.x0, w.y0, 0, 0, 0]))
        tiles.append(torch.full((len(b), ), t))
    boxes, tiles = torch.cat(boxes), torch.cat(tiles)
    scores = (torch.randperm(len(boxes), generator=g) + 1) / len(boxes)
    labels = torch.randint(0, 2, (len(boxes), ), generator=g)
    return boxes, scores, labels, tiles, windows, size


def test_rotated_local_merge_equals_the_global_merge(monkeypatch):
    from mmengine.structures import InstanceData

    from mmretina.inference.tiled import TiledInferencer
    boxes, scores, labels, tiles, windows, size = _many_rboxes()
    per_window = {}
    for t, w in enumerate(windows):
        m = tiles == t
        inst = InstanceData()
        inst.bboxes = boxes[m] - torch.tensor([w.x0, w.y0, 0, 0, 0])
        inst.scores, inst.labels = scores[m], labels[m]
        per_window[t] = inst
    inf = TiledInferencer(lambda imgs: [], tile=400, overlap=100,
                          iou_thr=0.1, progress=False)
    results = {}
    for name, threshold in (('global', 10**9), ('local', 0)):
        monkeypatch.setattr('mmretina.inference.tiled.LOCAL_MERGE_MIN',
                            threshold)
        results[name] = inf.merge_windows(per_window, windows, size, size)
    got = results['global']
    assert got.bboxes.shape[1] == 5
    assert len(boxes) * 0.2 < len(got) < len(boxes) * 0.6
    for k in ('bboxes', 'scores', 'labels'):
        assert torch.equal(results['local'][k], got[k]), k
    # what NMS left: no two boxes of a class at rotated IoU >= 0.1
    from mmretina.structures.rotated import rotated_iou
    iou = rotated_iou(got.bboxes, got.bboxes).fill_diagonal_(0)
    same = got.labels[:, None] == got.labels[None]
    assert not ((iou >= 0.1) & same).any()
