"""ONNX export (decoding and NMS in the graph) checked against PyTorch:
onnxruntime's detections on real DeepForest images equal PyTorch's for the
same weights, batch 1 and 2, two input sizes."""
import mmcv
import numpy as np
import pytest
import torch

from mmretina.deploy.pytorch import PytorchBackend

pytest.importorskip('onnxruntime')


def match(ref, got, size):
    """Greedy one-to-one matching by score order; returns the largest box
    and score differences. Same count and labels required."""
    assert len(ref) == len(got), (len(ref), len(got))
    used = torch.zeros(len(ref), dtype=torch.bool)
    box_diff, score_diff = 0.0, 0.0
    for i in range(len(got)):
        d = (ref.bboxes - got.bboxes[i]).abs().max(dim=1).values
        d = d + 1e9 * (used | (ref.labels != got.labels[i])).float()
        j = int(d.argmin())
        used[j] = True
        box_diff = max(box_diff, float(d[j]))
        score_diff = max(score_diff,
                         float((ref.scores[j] - got.scores[i]).abs()))
    return box_diff, score_diff


def test_export_cli_check(df_onnx):
    path, stdout = df_onnx
    assert 'dynamic batch and size' in stdout
    assert 'PyTorch 300 detections, onnxruntime 300' in stdout, stdout[-2000:]
    import onnx
    model = onnx.load(path)
    ops = {n.op_type for n in model.graph.node}
    assert {'NonMaxSuppression', 'TopK', 'Conv'} <= ops
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta['mmretina_format'] == 'retinanet-v1'
    assert meta['classes'] == '["tree"]'


@pytest.mark.parametrize('names', [
    ['OSBS_029.png'],  # 400 x 400 -> input 416 x 416
    ['2019_YELL_2_541000_4977000_image_crop.png'],  # resized to 400 x 331
    ['OSBS_029.png', '2019_YELL_2_541000_4977000_image_crop.png'],
    ['SOAP_061.png', 'OSBS_029.png'],
])
def test_onnxruntime_matches_pytorch(df_onnx, df_model, df_images, names):
    from mmretina.deploy.runtime import OrtBackend
    imgs = [mmcv.imread(df_images[n]) for n in names]
    ref = PytorchBackend(df_model)(imgs)
    ort = OrtBackend(df_onnx[0], num_threads=1)
    got = ort(imgs)
    image, info = ort.preprocess(imgs)
    for img, r, g in zip(imgs, ref, got):
        size = max(img.shape[:2])
        assert len(r) == 300  # max_per_img: the comparison is not vacuous
        box_diff, score_diff = match(r, g, size)
        print(f'{names} {img.shape[1]}x{img.shape[0]} (input '
              f'{image.shape[3]}x{image.shape[2]}): {len(g)} detections, '
              f'max |box diff| {box_diff:.2e} px '
              f'({box_diff / size:.1e} of the image), '
              f'max |score diff| {score_diff:.1e}')
        assert box_diff <= 1e-3 * size / 400
        assert score_diff <= 1e-4


def test_export_refuses_what_it_cannot_express(df_model):
    from mmretina.deploy.export import RetinaNetONNX
    cfg = dict(df_model.bbox_head.test_cfg)
    with pytest.raises(ValueError, match='nms_pre'):
        RetinaNetONNX(df_model, dict(cfg, nms_pre=-1))
    with pytest.raises(ValueError, match='class-aware hard NMS'):
        RetinaNetONNX(df_model, dict(cfg, nms=dict(type='soft_nms')))


def test_nms_op_matches_mmcv():
    from mmcv.ops import batched_nms
    from mmretina.deploy.export import nonmax_suppression
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(2, 60, 2, generator=g) * 20],
                      -1)
    labels = torch.randint(0, 3, (2, 60), generator=g)
    scores = torch.rand(2, 60, generator=g)
    per_class = torch.where(labels[:, None] == torch.arange(3)[None, :, None],
                            scores[:, None], -torch.ones(1))
    sel = nonmax_suppression(boxes, per_class, 100, 0.5, 0.05)
    for b in range(2):
        keep_mask = scores[b] > 0.05
        idx = keep_mask.nonzero().squeeze(1)
        _, keep = batched_nms(boxes[b, idx], scores[b, idx], labels[b, idx],
                              dict(type='nms', iou_threshold=0.5))
        assert sorted(idx[keep].tolist()) == \
            sorted(sel[sel[:, 0] == b, 2].tolist())
        assert (labels[b, sel[sel[:, 0] == b, 2]] ==
                sel[sel[:, 0] == b, 1]).all()


def test_ort_backend_refuses_foreign_models(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    from mmretina.deploy.runtime import OrtBackend
    node = helper.make_node('Identity', ['x'], ['y'])
    graph = helper.make_graph(
        [node], 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT,
                                                    [1])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid('', 18)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / 'other.onnx'))
    with pytest.raises(ValueError, match='not written by mmretina'):
        OrtBackend(str(tmp_path / 'other.onnx'))
    assert np  # numpy used by the parametrised cases through mmcv


def test_export_refuses_an_output_folder_it_cannot_create(df_model,
                                                          tmp_path):
    """Refused before tracing (an export takes 20-60 s); a missing folder
    is created (the deploy tests export into one)."""
    from mmretina.deploy.export import export_onnx
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    with pytest.raises(OSError, match='cannot create the folder .*a_file'):
        export_onnx(df_model, str(blocker / 'sub' / 'm.onnx'))
