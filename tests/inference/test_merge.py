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
