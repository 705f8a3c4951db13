"""mmretina's configs and checkpoints, unchanged, in the tools aerial users
already have: mmdet's ``DetInferencer``, SAHI's mmdet backend and
supervision's ``Detections.from_mmdetection``. Each test compares their
detections with mmretina's own on a real DeepForest image (skipped where the
package is not installed; ``tools/run_tests.sh`` installs
``requirements/interop.txt``)."""
import numpy as np
import pytest
import torch

from mmretina.inference.tiled import load_image


@pytest.fixture(scope='module')
def reference(df_model, df_images):
    """mmdet's ``inference_detector`` on OSBS_029 (400 x 400 px)."""
    from mmdet.apis import inference_detector
    pred = inference_detector(df_model, df_images['OSBS_029.png'])
    return pred.pred_instances


def _assert_same(bboxes, scores, ref, score_thr=0.0):
    keep = ref.scores >= score_thr
    ref_boxes, ref_scores = ref.bboxes[keep], ref.scores[keep]
    assert len(ref_scores) > 20  # the biased detector finds hundreds
    order = np.argsort(-np.asarray(scores), kind='stable')
    ref_order = torch.argsort(ref_scores, descending=True, stable=True)
    np.testing.assert_allclose(
        np.asarray(scores)[order], ref_scores[ref_order].numpy(), atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(bboxes)[order], ref_boxes[ref_order].numpy(), atol=1e-3)


def test_mmdet_det_inferencer_accepts_the_config(df_checkpoint, df_images,
                                                 reference):
    from mmdet.apis import DetInferencer
    config, ckpt = df_checkpoint
    inferencer = DetInferencer(config, ckpt, device='cpu', show_progress=False)
    out = inferencer(df_images['OSBS_029.png'], return_datasamples=True,
                     no_save_vis=True)
    inst = out['predictions'][0].pred_instances
    _assert_same(inst.bboxes.numpy(), inst.scores.numpy(), reference)


def test_sahi_mmdet_backend_takes_the_config_unchanged(
        df_checkpoint, df_images, reference):
    sahi = pytest.importorskip('sahi')
    from sahi.predict import get_prediction
    config, ckpt = df_checkpoint
    det = sahi.AutoDetectionModel.from_pretrained(
        model_type='mmdet', model_path=ckpt, config_path=config,
        confidence_threshold=0.3, device='cpu')
    # SAHI hands the model RGB arrays; mmretina reads files as BGR
    rgb = load_image(df_images['OSBS_029.png'])[:, :, ::-1].copy()
    res = get_prediction(rgb, det)
    preds = res.object_prediction_list
    assert {p.category.name for p in preds} == {'tree'}
    _assert_same([p.bbox.to_xyxy() for p in preds],
                 [p.score.value for p in preds], reference, score_thr=0.3)


def test_supervision_from_mmdetection(df_model, df_images, reference):
    sv = pytest.importorskip('supervision')
    from mmdet.apis import inference_detector
    det = sv.Detections.from_mmdetection(
        inference_detector(df_model, df_images['OSBS_029.png']))
    _assert_same(det.xyxy, det.confidence, reference)
    assert set(det.class_id.tolist()) == {0}
