"""Convert a torchvision / DeepForest RetinaNet into an mmretina checkpoint
and config (logic: mmretina/models/converters/torchvision.py).

    python tools/model_converters/torchvision_to_mmretina.py \
        deepforest-tree/model.safetensors checkpoints/deepforest_tree.pth \
        --config configs/deepforest_tree_converted.py

Reads ``.pth`` / ``.pt`` (weights only) or ``.safetensors``, with or without
a ``model.`` prefix, and DeepForest's ``config.json`` beside the weights
(classes, score and NMS thresholds).
"""
import argparse
import sys

from mmretina.models.converters import convert_torchvision_file


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='mmretina convert from-torchvision',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina convert from-torchvision \\\n'
        '      deepforest-tree/model.safetensors \\\n'
        '      checkpoints/deepforest_tree.pth \\\n'
        '      --config configs/deepforest_tree_converted.py\n')
    p.add_argument('src', help='torchvision RetinaNet weights '
                   '(.pth, .pt, .ckpt, .safetensors)')
    p.add_argument('dst', help='mmretina checkpoint to write (.pth)')
    p.add_argument('--config', help='also write the model config (.py)')
    p.add_argument('--arch', choices=['v1', 'v2'],
                   help='retinanet_resnet50_fpn (v1, DeepForest) or _v2; '
                   'detected from the weights when left out')
    p.add_argument('--num-classes', type=int,
                   help='expected number of classes (checked)')
    p.add_argument('--class-names', nargs='+',
                   help='class names (default: config.json\'s label_dict, '
                   'else COCO\'s for a 91-output model, else class_i)')
    p.add_argument('--coco-labels', choices=['coco80', 'coco91'],
                   default='coco80',
                   help='91-output COCO models: coco80 (default): mmdet\'s '
                   '80 classes; coco91: torchvision\'s 91 indices (exact '
                   'outputs)')
    p.add_argument('--bn-eps', type=float,
                   help='backbone norm eps (default 1e-5; 0 for '
                   'torchvision\'s COCO_V1 v1 release)')
    p.add_argument('--min-size', type=int, help='torchvision min_size')
    p.add_argument('--max-size', type=int, help='torchvision max_size')
    p.add_argument('--score-thr', type=float, help='score_thresh')
    p.add_argument('--nms-thr', type=float, help='nms_thresh')
    p.add_argument('--max-per-img', type=int, help='detections_per_img')
    p.add_argument('--nms-pre', type=int, help='topk_candidates')
    p.add_argument('--gsd', type=float,
                   help='ground sample distance of the model\'s training '
                   'imagery in metres, written into the config (the '
                   'DeepForest tree model: 0.1); predict reads rasters at '
                   'it')
    p.add_argument('--tile', type=int,
                   help='the model\'s window in px (default: config.json\'s '
                   'patch_size if any)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        dst, cfg = convert_torchvision_file(
            args.src, args.dst, config_out=args.config, arch=args.arch,
            num_classes=args.num_classes, class_names=args.class_names,
            coco_labels=args.coco_labels, bn_eps=args.bn_eps,
            min_size=args.min_size, max_size=args.max_size,
            score_thr=args.score_thr, nms_thr=args.nms_thr,
            max_per_img=args.max_per_img, nms_pre=args.nms_pre,
            gsd=args.gsd, tile=args.tile)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f'error: {e}')
    print(f'wrote {dst}' + (f' and {cfg}' if cfg else ''))


if __name__ == '__main__':
    main()
