# Make WORK_DIR safe to `tools/train.py CONFIG --work-dir WORK_DIR --resume`.
#
#   python tools/claim_work_dir.py CONFIG WORK_DIR
#
# `--resume` continues from WORK_DIR/last_checkpoint whatever config wrote
# it. This tool stamps WORK_DIR with a hash of the resolved CONFIG
# (WORK_DIR/.config_hash). A work dir that holds a checkpoint of another
# config, of an older version of this one, or of an unknown one (no stamp) is
# moved aside to WORK_DIR.old-<time> first, so training starts anew instead of
# resuming a foreign run. A work dir of this very config is kept. Prints what
# it did; used by tools/run_demo.sh.
import argparse
import hashlib
import os
import os.path as osp
import sys
import time

from mmengine.config import Config

HASH_FILE = '.config_hash'


def config_hash(config):
    """First 16 hex digits of the sha256 of the resolved config's text."""
    text = Config.fromfile(config).pretty_text
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def claim_work_dir(config, work_dir):
    """Stamp ``work_dir`` for ``config``; move a foreign run aside.

    Returns:
        str: the path a foreign run was moved to, or None if nothing moved.
    """
    digest = config_hash(config)
    stamp = osp.join(work_dir, HASH_FILE)
    moved = None
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        old_digest = None
        if osp.isfile(stamp):
            with open(stamp) as f:
                old_digest = f.read().strip()
        if old_digest != digest:
            base = f'{work_dir.rstrip("/")}.old-' \
                   f'{time.strftime("%Y%m%d_%H%M%S")}'
            moved, suffix = base, 1
            while osp.exists(moved):  # two claims within one second
                moved, suffix = f'{base}~{suffix}', suffix + 1
            os.rename(work_dir, moved)
    os.makedirs(work_dir, exist_ok=True)
    with open(stamp, 'w') as f:
        f.write(digest + '\n')
    return moved


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Stamp a work dir with the config hash; move a run of '
        'another config aside so that --resume cannot continue it')
    parser.add_argument('config', help='config file')
    parser.add_argument('work_dir', help='work dir that training will use')
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    moved = claim_work_dir(args.config, args.work_dir)
    if moved:
        print(f'{args.work_dir} holds a run of another config: moved to '
              f'{moved}, training anew')
    else:
        print(f'{args.work_dir}: ready for {args.config}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
