"""Figure 4 of "Focal Loss for Dense Object Detection": the cumulative
distribution of the normalised focal loss of positive and negative anchors
(:mod:`mmretina.analysis.loss_distribution`).

    python tools/analysis_tools/loss_cdf.py CONFIG CKPT \\
        [--gammas 0 0.5 1 2] [--out fig4.png] [--csv fig4.csv] \\
        [--max-images N] [--device cpu] [--cfg-options ...]
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, load_checkpoint

# importing mmretina registers its modules and lets mmengine load full
# checkpoints under torch >= 2.6
import mmretina  # noqa: F401
from mmretina.analysis.loss_distribution import (collect_logits,
                                                 hardest_share, loss_cdfs,
                                                 plot, val_loader_cfg,
                                                 write_csv)
from mmretina.engine.resume import check_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmretina analyze loss-cdf',
        description='Cumulative distribution of the normalised focal loss '
        'of positive and negative anchors (Figure 4 of the paper)',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina analyze loss-cdf configs/retinanet_r50_fpn_1x_coco.py '
        '\\\n'
        '      epoch_12.pth --out fig4.png --max-images 200\n')
    parser.add_argument('config', help='config of the trained model')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--gammas', type=float, nargs='+',
                        default=[0, 0.5, 1, 2],
                        help='gammas to draw (default: the paper\'s)')
    parser.add_argument('--out', default='fig4.png', help='PNG to write')
    parser.add_argument('--csv', help='CSV of the curves (default: --out '
                        'with .csv)')
    parser.add_argument('--points', type=int, default=101,
                        help='points per curve in the CSV')
    parser.add_argument('--max-images', type=int, default=0,
                        help='use at most this many val images (0: all)')
    parser.add_argument(
        '--device', default='cpu',
        help='PyTorch device (default %(default)s, also where a GPU is: '
        '--device cuda:0 to use it)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings (xxx=yyy)')
    args = parser.parse_args(argv)
    if any(g < 0 for g in args.gammas):
        parser.error(f'--gammas must be >= 0, got {args.gammas}')
    if args.points < 2:
        parser.error('--points must be at least 2')
    for path in (args.config, args.checkpoint):
        if not osp.isfile(path):
            parser.error(f'file not found: {path}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    check_checkpoint(args.checkpoint, 'load')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu',
                    logger='silent')
    model.to(args.device).eval()
    dataloader = Runner.build_dataloader(val_loader_cfg(cfg))
    positives, negatives = collect_logits(model, dataloader,
                                          args.max_images, args.device)
    counts = dict(positive=positives.numel(), negative=negatives.numel())
    curves = loss_cdfs(positives, negatives, args.gammas)

    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    csv_path = args.csv or osp.splitext(args.out)[0] + '.csv'
    write_csv(curves, csv_path, args.points)
    trained = cfg.model.get('bbox_head', {}).get('loss_cls', {}).get('gamma')
    title = (f'{osp.basename(args.config)} (trained with γ = {trained:g}) '
             f'on its val images' if trained is not None else '')
    plot(curves, args.gammas, counts, args.out, title)

    print(f'{counts["positive"]:,} positive and {counts["negative"]:,} '
          'negative samples')
    print('share of the loss held by the hardest 20%:')
    print('gamma  positives  negatives')
    for gamma in args.gammas:
        print(f'{gamma:5g}  {hardest_share(curves[("positive", gamma)]):9.3f}'
              f'  {hardest_share(curves[("negative", gamma)]):9.3f}')
    print(f'wrote {args.out} and {csv_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
