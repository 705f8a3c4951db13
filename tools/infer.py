# Run a trained detector on one image and draw its detections into a PNG.
#
#   python tools/infer.py IMAGE CONFIG CHECKPOINT --out result.png \
#       [--score-thr 0.3] [--device cpu]
#
# Uses mmdet's `init_detector` / `inference_detector` and draws with mmdet's
# `DetLocalVisualizer`. Importing `mmretina` registers our modules and lets
# torch>=2.6 load full mmengine checkpoints (weights_only=True).
import argparse
import os.path as osp
import sys

_REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if osp.isdir(osp.join(_REPO_ROOT, 'mmretina')) and _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import mmcv  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mmdet.apis import inference_detector, init_detector  # noqa: E402
from mmdet.visualization import DetLocalVisualizer  # noqa: E402

import mmretina  # noqa: E402,F401  (registers mmretina.* modules)
from mmretina.utils.resume import check_checkpoint  # noqa: E402
from mmretina.utils import register_safe_checkpoint_globals  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(
        description='Detect objects in one image and save a PNG with boxes')
    parser.add_argument('image', help='input image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out', required=True, help='output image file (PNG)')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='only draw detections with at least this score')
    parser.add_argument(
        '--device',
        default='cuda:0' if torch.cuda.is_available() else 'cpu',
        help='device for inference, e.g. cpu or cuda:0 '
        '(default: cuda:0 if available, else cpu)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config (xxx=yyy)')
    return parser.parse_args()


def main():
    args = parse_args()
    register_safe_checkpoint_globals()

    check_checkpoint(args.checkpoint, 'load')
    model = init_detector(
        args.config,
        args.checkpoint,
        device=args.device,
        cfg_options=args.cfg_options)
    result = inference_detector(model, args.image)

    img = mmcv.imread(args.image, channel_order='rgb')
    visualizer = DetLocalVisualizer(name='mmretina_infer')
    visualizer.dataset_meta = model.dataset_meta
    visualizer.add_datasample(
        osp.basename(args.image),
        img,
        data_sample=result,
        draw_gt=False,
        show=False,
        out_file=args.out,
        pred_score_thr=args.score_thr)

    inst = result.pred_instances
    keep = inst.scores >= args.score_thr
    classes = model.dataset_meta.get('classes', ())
    print(f'{int(keep.sum())} detections with score >= {args.score_thr} '
          f'(of {len(inst)}) drawn into {args.out}')
    for box, score, label in zip(inst.bboxes[keep], inst.scores[keep],
                                 inst.labels[keep]):
        name = classes[label] if label < len(classes) else str(int(label))
        x1, y1, x2, y2 = (float(v) for v in box)
        print(f'  {name}\t{float(score):.3f}\t'
              f'[{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]')


if __name__ == '__main__':
    main()
