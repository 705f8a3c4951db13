"""Tiled inference: exactness on one window, bounded batches, and objects
on window borders reported once."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmretina.deploy.pytorch import PytorchBackend
from mmretina.geo.windows import tile_windows
from mmretina.inference.tiled import TiledInferencer, load_image
from mmretina.structures import pairwise_iou


@pytest.mark.parametrize('tile', [400, 512])
def test_one_window_is_exactly_the_untiled_result(df_model, df_images, tile):
    from mmdet.apis import inference_detector
    path = df_images['OSBS_029.png']  # 400 x 400
    ref = inference_detector(df_model, path).pred_instances
    got = TiledInferencer(PytorchBackend(df_model), tile=tile,
                          progress=False)(path)
    assert len(ref) > 50
    assert torch.equal(got.bboxes, ref.bboxes)
    assert torch.equal(got.scores, ref.scores)
    assert torch.equal(got.labels, ref.labels)
    assert len(got.metainfo['windows']) == 1


class CountingBackend:
    """The real backend, recording how many windows each call gets."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []
        self.nms_iou = backend.nms_iou

    def __call__(self, imgs):
        self.calls.append([im.shape for im in imgs])
        return self.backend(imgs)


def test_windows_stream_in_batches(df_model, df_images):
    path = df_images['OSBS_029.png']
    backend = CountingBackend(PytorchBackend(df_model))
    inf = TiledInferencer(backend, tile=160, overlap=0.25, batch_size=2,
                          progress=False)
    result = inf(path)
    n = len(tile_windows(400, 400, 160, 0.25))
    assert n == 9
    assert [len(c) for c in backend.calls] == [2, 2, 2, 2, 1]
    assert all(s == (160, 160, 3) for c in backend.calls for s in c)
    assert len(result) > 0
    b = result.bboxes
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= 400).all()
    assert (b[:, 1] >= 0).all() and (b[:, 3] <= 400).all()
    assert (result.scores[:-1] >= result.scores[1:]).all()


class BrightBlobDetector:
    """A complete (if simple) detector: every connected bright region of a
    window is an object, boxed as it is visible in that window, the way a
    trained detector boxes the visible part of a cut object."""
    nms_iou = 0.5

    def __call__(self, imgs):
        import cv2
        out = []
        for img in imgs:
            mask = (img[..., 0] > 128).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask, 4)
            boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:]]
            inst = InstanceData()
            inst.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(
                -1, 4)
            # larger visible area, higher score (a cut object scores lower)
            inst.scores = torch.tensor([0.5 + (b[2] - b[0]) * (b[3] - b[1])
                                        / 1e4 for b in boxes]).reshape(-1)
            inst.labels = torch.zeros(len(boxes), dtype=torch.long)
            out.append(inst)
        return out


def _squares(width=1000, height=700, num=40, seed=0):
    rng = np.random.RandomState(seed)
    img = np.zeros((height, width, 3), np.uint8)
    boxes = []
    while len(boxes) < num:
        s = rng.randint(30, 90)  # below the 100 px overlap
        x, y = rng.randint(0, width - s), rng.randint(0, height - s)
        b = [x, y, x + s, y + s]
        if boxes and pairwise_iou(torch.tensor([b], dtype=torch.float32).add(
                torch.tensor([-3.0, -3, 3, 3])), torch.tensor(
                    boxes, dtype=torch.float32)).max() > 0:
            continue  # 3 px apart at least
        boxes.append(b)
        img[y:y + s, x:x + s] = 255
    return img, torch.tensor(boxes, dtype=torch.float32)


@pytest.mark.parametrize('merge', ['nms', 'wbf'])
def test_objects_on_window_borders_are_reported_once(merge):
    img, gt = _squares()
    wins = tile_windows(1000, 700, 400, 0.25)
    inner_x = {w.x0 for w in wins if w.x0 > 0} | \
        {w.x1 for w in wins if w.x1 < 1000}
    inner_y = {w.y0 for w in wins if w.y0 > 0} | \
        {w.y1 for w in wins if w.y1 < 700}
    crossing = sum(
        any(b[0] < e < b[2] for e in inner_x)
        or any(b[1] < e < b[3] for e in inner_y) for b in gt.tolist())
    assert crossing >= 15  # the case under test is well represented
    res = TiledInferencer(BrightBlobDetector(), tile=400, overlap=0.25,
                          merge=merge, progress=False)(img)
    iou = pairwise_iou(res.bboxes, gt)
    assert len(res) == len(gt), (len(res), len(gt))
    assert (iou.max(dim=1).values > 0.999).all()
    assert sorted(iou.argmax(dim=1).tolist()) == list(range(len(gt)))
    # without the cut-box rule, cut parts survive NMS as extra boxes
    naive = TiledInferencer(BrightBlobDetector(), tile=400, overlap=0.25,
                            merge=merge, min_cover=2.0, progress=False)(img)
    assert len(naive) > len(gt)
    print(f'{len(gt)} squares, {crossing} crossing an inner window edge: '
          f'{len(res)} boxes with the cut-box rule ({merge}), '
          f'{len(naive)} without')


def test_bad_arguments(df_model):
    backend = PytorchBackend(df_model)
    with pytest.raises(ValueError, match='merge'):
        TiledInferencer(backend, merge='mean')
    with pytest.raises(ValueError, match='batch_size'):
        TiledInferencer(backend, batch_size=0)
    with pytest.raises(ValueError, match='overlap'):
        TiledInferencer(backend, tile=400, overlap=400)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_image('/nonexistent/image.png')


def test_optimize_for_cpu_keeps_the_detections(df_model, df_images):
    import copy
    from mmretina.deploy.pytorch import optimize_for_cpu
    model = copy.deepcopy(df_model)
    g = torch.Generator().manual_seed(0)
    bns = [m for m in model.modules()
           if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns
    # non-trivial statistics, so that fusing really changes the weights
    for bn in bns:
        bn.running_mean.copy_(0.1 * torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(0.5 + torch.rand(bn.num_features, generator=g))
    path = df_images['OSBS_029.png']
    ref = TiledInferencer(PytorchBackend(model), tile=400,
                          progress=False)(path)
    fast = optimize_for_cpu(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for m in fast.modules())
    conv = fast.backbone.conv1
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    got = TiledInferencer(PytorchBackend(fast), tile=400, progress=False)(path)
    assert len(ref) > 50
    # the same detections up to float rounding: near-ties of this random
    # model's scores may swap neighbours or add/drop one at the threshold
    assert abs(len(ref) - len(got)) <= 2
    n = min(len(ref), len(got))
    torch.testing.assert_close(got.scores[:n], ref.scores[:n], atol=1e-4,
                               rtol=0)
    gap = (ref.bboxes[:n, None] - got.bboxes[None]).abs().amax(-1)
    assert (gap.amin(1) < 1e-2).float().mean() > 0.99


# ------------------------------------------------------------ rotated boxes
class BrightRotatedBlobDetector:
    """:class:`BrightBlobDetector` for an oriented model: every connected
    bright region of a window is an object, boxed by the minimum-area
    rotated rectangle of its visible part (mmrotate's ``RotatedBoxes``,
    le90), as an oriented detector boxes a cut object."""
    nms_iou = 0.5

    def __call__(self, imgs):
        import cv2
        from mmrotate.structures.bbox import RotatedBoxes

        from mmretina.structures.rotated import corners_to_rbox
        out = []
        for img in imgs:
            mask = (img[..., 0] > 128).astype(np.uint8)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_NONE)
            # pixel centres -> the pixels' outline: +0.5 px
            rboxes = [corners_to_rbox(c.reshape(1, -1, 2) + 0.5)[0]
                      for c in contours if len(c) >= 3]
            boxes = torch.stack(rboxes) if rboxes else torch.zeros((0, 5))
            boxes[:, 2:4] += 1  # the outline of pixel centres, 1 px less
            inst = InstanceData()
            inst.bboxes = RotatedBoxes(boxes)
            inst.scores = 0.5 + boxes[:, 2] * boxes[:, 3] / 1e4
            inst.labels = torch.zeros(len(boxes), dtype=torch.long)
            out.append(inst)
        return out


def _rotated_rectangles(width=1000, height=700, num=30, seed=0):
    """An image of ``num`` bright rotated rectangles (sides 25-60 px: their
    enclosing boxes stay below the 100 px overlap), 3 px apart at least,
    and the rectangles (num, 5)."""
    import cv2

    from mmretina.structures.rotated import rbox_corners, rotated_iou
    rng = np.random.RandomState(seed)
    img = np.zeros((height, width, 3), np.uint8)
    boxes = torch.zeros((0, 5))
    while len(boxes) < num:
        w, h = rng.uniform(25, 60, 2)
        b = torch.tensor([[rng.uniform(45, width - 45),
                           rng.uniform(45, height - 45), w, h,
                           rng.uniform(-1.5, 1.5)]])
        grown = b + torch.tensor([0, 0, 6, 6, 0.0])
        if len(boxes) and rotated_iou(grown, boxes).max() > 0:
            continue
        boxes = torch.cat([boxes, b])
        cv2.fillPoly(img, [np.rint(rbox_corners(b)[0].numpy() - 0.5)
                           .astype(np.int32)], (255, 255, 255))
    return img, boxes


def test_rotated_objects_on_window_borders_are_reported_once():
    from mmretina.structures.rotated import rbox_to_hbox, rotated_iou
    img, gt = _rotated_rectangles()
    wins = tile_windows(1000, 700, 400, 0.25)
    inner_x = {w.x0 for w in wins if w.x0 > 0} | \
        {w.x1 for w in wins if w.x1 < 1000}
    inner_y = {w.y0 for w in wins if w.y0 > 0} | \
        {w.y1 for w in wins if w.y1 < 700}
    crossing = sum(
        any(b[0] < e < b[2] for e in inner_x)
        or any(b[1] < e < b[3] for e in inner_y)
        for b in rbox_to_hbox(gt).tolist())
    assert crossing >= 10  # the case under test is well represented
    res = TiledInferencer(BrightRotatedBlobDetector(), tile=400,
                          overlap=0.25, progress=False)(img)
    assert res.bboxes.shape == (len(gt), 5), (res.bboxes.shape, len(gt))
    iou = rotated_iou(res.bboxes, gt)  # rasterised at integer corners
    assert (iou.max(dim=1).values > 0.85).all()
    assert sorted(iou.argmax(dim=1).tolist()) == list(range(len(gt)))
    # without the cut-box rule, cut parts survive rotated NMS as extra boxes
    naive = TiledInferencer(BrightRotatedBlobDetector(), tile=400,
                            overlap=0.25, min_cover=2.0, progress=False)(img)
    assert len(naive) > len(gt)
    with pytest.raises(ValueError, match='--merge nms'):
        TiledInferencer(BrightRotatedBlobDetector(), tile=400, merge='wbf',
                        progress=False)(img)


@pytest.fixture(scope='module')
def oriented():
    from oriented_model import oriented_model
    return oriented_model()


def test_oriented_model_one_window_exact_and_windows_shifted(oriented):
    backend = PytorchBackend(oriented)
    img = np.random.RandomState(1).randint(0, 255, (200, 200, 3), np.uint8)
    # one window: the backend's detections, untouched
    ref = backend([img[:128, :128]])[0]
    got = TiledInferencer(backend, tile=128, progress=False)(img[:128, :128])
    assert ref.bboxes.shape[1] == 5 and len(ref) > 20
    for k in ('bboxes', 'scores', 'labels'):
        assert torch.equal(got[k], ref[k]), k
    # 2 x 2 windows: every merged box is a detection of its window, shifted
    res = TiledInferencer(backend, tile=128, overlap=56, progress=False)(img)
    wins = res.metainfo['windows']
    assert len(wins) == 4 and res.bboxes.shape[1] == 5
    # (one batch of the four, as the loop runs them: float-exact)
    direct = backend([img[w.y0:w.y1, w.x0:w.x1] for w in wins])
    shifted = torch.cat([d.bboxes + torch.tensor([w.x0, w.y0, 0, 0, 0])
                         for d, w in zip(direct, wins)])
    scores = torch.cat([d.scores for d in direct])
    for box, score in zip(res.bboxes, res.scores):
        hit = (shifted == box).all(dim=1) & (scores == score)
        assert hit.any()
    assert len(wins) * 5 < len(res) < len(shifted)
    assert (res.scores[:-1] >= res.scores[1:]).all()
