"""Evaluation of a dataset of large images, each detected window by window
(``tools/test.py --tile``): the config's test evaluator (e.g. mmdet's
``CocoMetric``) scores the merged detections against the dataset's
annotations in original image pixels."""
from typing import Dict, Optional

from mmretina.deploy.pytorch import PytorchBackend
from mmretina.inference.tiled import TiledInferencer
from mmretina.inference.progress import progress_bar

__all__ = ['tiled_evaluate']


def tiled_evaluate(cfg,
                   checkpoint: str,
                   tile: int,
                   overlap: float = 0.25,
                   batch_size: int = 4,
                   merge: str = 'nms',
                   merge_iou: Optional[float] = None,
                   border: float = 2.0,
                   device: str = 'cpu',
                   out: Optional[str] = None,
                   backend=None) -> Dict[str, float]:
    """Detect every image of ``cfg.test_dataloader.dataset`` with a
    :class:`TiledInferencer` and evaluate with ``cfg.test_evaluator``.

    The dataset's pipeline is not used for the images (each window goes
    through the config's test pipeline instead, as in ``inference_detector``);
    the dataset provides the image paths, ids and annotations.

    Args:
        cfg (Config): the full config.
        checkpoint (str): weights.
        tile, overlap, batch_size, merge, merge_iou, border: see
            :class:`TiledInferencer`.
        device (str): torch device.
        out (str, optional): also dump the detections to this pickle
            (mmdet's ``DumpDetResults`` format).
        backend (callable, optional): run the windows with this backend
            (e.g. ``mmretina.deploy.build_backend`` 's, for an exported
            model) instead of ``checkpoint`` in PyTorch.

    Returns:
        dict[str, float]: the evaluator's metrics.
    """
    import torch
    from mmdet.apis import init_detector
    from mmdet.registry import DATASETS
    from mmdet.structures import DetDataSample
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope
    from mmengine.structures import InstanceData

    if backend is None:
        backend = PytorchBackend(
            init_detector(cfg, checkpoint, device=device))
    inferencer = TiledInferencer(
        backend,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        merge=merge,
        iou_thr=merge_iou,
        border=border,
        progress=False)
    scope = cfg.get('default_scope', 'mmdet')
    with DefaultScope.overwrite_default_scope(scope):
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        metrics = cfg.test_evaluator
        metrics = list(metrics) if isinstance(metrics, (list, tuple)) \
            else [metrics]
        if out is not None:
            if not out.endswith(('.pkl', '.pickle')):
                raise ValueError(f'--out must be a .pkl file, got {out!r}')
            metrics.append(dict(type='DumpDetResults', out_file_path=out))
        evaluator = Evaluator(metrics)
        evaluator.dataset_meta = dataset.metainfo
        bar = progress_bar(len(dataset), desc='images')
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            inst = inferencer(info['img_path'])
            height, width = inst.metainfo['ori_shape']
            sample = DetDataSample(
                metainfo=dict(
                    img_id=info['img_id'],
                    img_path=info['img_path'],
                    ori_shape=(height, width),
                    img_shape=(height, width),
                    scale_factor=(1.0, 1.0)))
            pred = InstanceData()
            pred.bboxes = torch.as_tensor(inst.bboxes).float()
            pred.scores = torch.as_tensor(inst.scores).float()
            pred.labels = torch.as_tensor(inst.labels).long()
            sample.pred_instances = pred
            gt = InstanceData()
            boxes = [x['bbox'] for x in info.get('instances', [])]
            gt.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(
                -1, 4)
            gt.labels = torch.tensor(
                [x['bbox_label'] for x in info.get('instances', [])],
                dtype=torch.long)
            sample.gt_instances = gt
            sample.ignored_instances = InstanceData(
                bboxes=torch.zeros((0, 4)),
                labels=torch.zeros(0, dtype=torch.long))
            evaluator.process(data_samples=[sample], data_batch=None)
            bar.update()
        bar.close()
        return evaluator.evaluate(len(dataset))
