"""Train a detector with mmretina. Same arguments and behaviour as mmdet
3.3.0's tools/train.py, plus:
  * `mmretina` is imported first (registers the `mmretina.*` modules and
    makes mmengine load its checkpoints under torch>=2.6's weights_only
    default, so `load_from` and `--resume` work);
  * without CUDA, a distributed launch (`--launcher pytorch|slurm|mpi`)
    runs on CPU processes with the gloo backend instead of failing on nccl;
  * `--amp` without a GPU trains in bfloat16 on the CPU
    (`mmretina.BF16OptimWrapper`) where the CPU runs bf16 natively,
    and fails up front with a clear message where it does not.
  * a config without mmretina's finite-loss guard (e.g. one on mmdet's
    bases) gets `mmretina.CheckFiniteLossHook`, and the log says so;
  * a config of mmrotate's scope (oriented boxes: `default_scope =
    'mmrotate'`, or a module of `_scope_` / `type` 'mmrotate') gets
    mmrotate's modules registered first
    (:func:`mmretina.utils.mmrotate.require_for_config`).
Run it from an installed mmretina (tools/install.sh), or with the
repository on PYTHONPATH as tools/dist_train.sh does (mmdet's habit).

``tools/train.py`` and ``mmretina train`` run :func:`main`.
"""
import argparse
import os
import os.path as osp

from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmretina  # noqa: F401  (registers mmretina.* modules)
from mmretina.engine.hooks import (ensure_finite_loss_guard,
                                   non_finite_message)
from mmretina.utils import closing_distributed, setup_cpu_distributed
from mmretina.engine.resume import check_resume
from mmretina.utils.mmrotate import require_for_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmretina train', description='Train a detector',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina train configs/retinanet_r50_fpn_1x_coco.py \\\n'
        '      --work-dir work_dirs/r50\n'
        '  mmretina train configs/retinanet_r50_fpn_1x_coco.py \\\n'
        '      --work-dir work_dirs/r50 --resume\n'
        '  # N processes or machines: tools/dist_train.sh CONFIG N\n')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training: fp16 with dynamic '
        'loss scaling on a CUDA/NPU/MLU/MUSA device; without one, bfloat16 '
        'on a CPU with native bf16 (AVX512-BF16/AMX); refused on a CPU '
        'without it')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint '
        'in the work directory.')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # When using PyTorch version >= 2.0.0, the `torch.distributed.launch`
    # will pass the `--local-rank` parameter to `tools/train.py` instead
    # of `--local_rank`.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)

    if args.amp and not _amp_device_available() and not _cpu_bf16():
        # mmengine's AmpOptimWrapper (fp16 autocast + GradScaler) only runs
        # on accelerators, and bf16 without hardware support is slower than
        # fp32. Fail here rather than after the model and data are built.
        parser.error('--amp needs a CUDA (or NPU/MLU/MUSA) device or a CPU '
                     'with native bfloat16 (AVX512-BF16/AMX); this machine '
                     'has neither. Drop --amp to train in fp32.')
    return args


def _cpu_bf16():
    from mmretina.engine.optimizers import bf16_supported
    return bf16_supported('cpu')


def _amp_device_available():
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def main(argv=None):
    # a gloo rank that exits with its group alive can abort at shutdown
    with closing_distributed():
        _main(parse_args(argv))


def _main(args):

    # Reduce the number of repeated compilations and improve
    # training speed.
    setup_cache_size_limit_of_dynamo()

    # load config
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        # update configs according to CLI args if args.work_dir is not None
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        # use config filename as default work_dir if cfg.work_dir is None
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    # enable automatic-mixed-precision training
    if args.amp is True:
        if _amp_device_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
            cfg.optim_wrapper.pop('enabled', None)
        else:
            # CPU: bf16 autocast, no loss scaler (checked in parse_args).
            print('--amp without a GPU: bfloat16 autocast on the CPU '
                  '(mmretina.BF16OptimWrapper)')
            cfg.optim_wrapper.type = 'mmretina.BF16OptimWrapper'
            cfg.optim_wrapper.enabled = True
            cfg.optim_wrapper.pop('loss_scale', None)

    # enable automatically scaling LR
    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and \
                'enable' in cfg.auto_scale_lr and \
                'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or '
                               '"auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your'
                               ' configuration file.')

    # resume is determined in this priority: resume from > auto_resume
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    # A missing or truncated checkpoint (a run killed while saving) fails
    # here, naming the file and the newest intact one beside it, instead of
    # inside torch.load after the data and model are built.
    check_resume(cfg)

    # without CUDA: gloo backend, process group and DDP without device_ids
    setup_cpu_distributed(cfg)

    # oriented boxes: mmrotate's modules registered before the Runner
    require_for_config(cfg)

    # the NaN/inf guard holds however the config writes custom_hooks
    guard = ensure_finite_loss_guard(cfg)

    # build the runner from config
    if 'runner_type' not in cfg:
        # build the default runner
        runner = Runner.from_cfg(cfg)
    else:
        # build customized runner from the registry
        # if 'runner_type' is set in the cfg
        runner = RUNNERS.build(cfg)
    if guard:
        print_log(guard, logger='current')

    # start training
    try:
        runner.train()
    except FloatingPointError as err:
        # the run diverged: say so in the scalars log (vis_data/scalars.json,
        # what mmretina.analysis reads) at the 1-based iteration it stopped
        iteration = runner.iter + 1
        runner.visualizer.add_scalars(dict(diverged_at_iter=iteration),
                                      step=iteration)
        # a NaN/inf raised inside an iteration (e.g. by mmretina.RetinaHead's
        # finite check): add the iteration and the checkpoint to resume from
        msg = non_finite_message(runner, err)
        if msg is None:
            raise
        raise FloatingPointError(msg) from err


if __name__ == '__main__':
    main()
