"""Make WORK_DIR safe to ``tools/train.py CONFIG --work-dir WORK_DIR
--resume`` (:func:`mmretina.engine.resume.claim_work_dir`).

    mmretina claim-work-dir CONFIG WORK_DIR
    python tools/claim_work_dir.py CONFIG WORK_DIR    # the same

Stamps WORK_DIR with a hash of the resolved CONFIG; a work dir holding a
checkpoint of another config (or of an unknown one) is moved aside to
``WORK_DIR.old-<time>`` first, so training starts anew instead of resuming a
foreign run. Prints what it did; used by ``tools/run_demo.sh``.
"""
import argparse
import os.path as osp
import sys

from mmretina.engine.resume import claim_work_dir


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='mmretina claim-work-dir',
        description='Stamp a work dir with the config hash; move a run of '
        'another config aside so that --resume cannot continue it',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina claim-work-dir configs/retinanet_r50_fpn_1x_coco.py \\\n'
        '      work_dirs/retinanet_r50_fpn_1x_coco\n')
    parser.add_argument('config', help='config file')
    parser.add_argument('work_dir', help='work dir that training will use')
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    moved = claim_work_dir(args.config, args.work_dir)
    if moved:
        print(f'{args.work_dir} holds a run of another config: moved to '
              f'{moved}, training anew')
    else:
        print(f'{args.work_dir}: ready for {args.config}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
