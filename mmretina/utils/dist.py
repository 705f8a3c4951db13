"""Distributed launch on machines without CUDA.

mmengine 0.10.7's ``init_dist`` always calls ``torch.cuda.set_device`` for
the ``pytorch`` / ``slurm`` / ``mpi`` launchers and the configs ask for the
``nccl`` backend, and ``Runner.wrap_model`` hands ``device_ids=[LOCAL_RANK]``
to ``DistributedDataParallel``. None of that works without a GPU. On such a
machine :func:`setup_cpu_distributed` (called by ``tools/train.py`` and
``tools/test.py`` before the runner is built) instead

* switches ``env_cfg.dist_cfg.backend`` to ``gloo``,
* initialises the default process group itself (the runner then sees an
  initialised group and skips ``init_dist``),
* wraps the model in ``MMDistributedDataParallel`` without ``device_ids``
  (unless the config already sets ``model_wrapper_cfg``).

With CUDA available it does nothing, so GPU runs behave exactly as mmdet's.

:func:`close_distributed` destroys the default process group at the end of a
command. mmengine's Runner never does; with gloo, a process that exits with
the group alive can abort at interpreter shutdown ("terminate called without
an active exception", SIGABRT) after its work is done, because gloo's worker
threads still hold tensors while Python is torn down (pytorch/pytorch#190489,
#179291), and torchrun then reports the whole run as failed.
"""
import contextlib
import datetime
import os
import subprocess

import torch
import torch.distributed as torch_dist

__all__ = ['close_distributed', 'closing_distributed', 'setup_cpu_distributed']


def _set_env_from_launcher(launcher: str) -> None:
    """Fill RANK / WORLD_SIZE / LOCAL_RANK / MASTER_* like mmengine does."""
    if launcher == 'slurm':
        proc_id = int(os.environ['SLURM_PROCID'])
        ntasks = int(os.environ['SLURM_NTASKS'])
        node_list = os.environ['SLURM_NODELIST']
        local_rank = os.environ.get('SLURM_LOCALID', '0')
        os.environ.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in os.environ:
            os.environ['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {node_list} | head -n1')
        os.environ['WORLD_SIZE'] = str(ntasks)
        os.environ['LOCAL_RANK'] = str(local_rank)
        os.environ['RANK'] = str(proc_id)
    elif launcher == 'mpi':
        os.environ.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in os.environ:
            raise KeyError('The environment variable MASTER_ADDR is not set')
        os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
        os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
        os.environ['LOCAL_RANK'] = os.environ['OMPI_COMM_WORLD_LOCAL_RANK']
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')


def setup_cpu_distributed(cfg) -> bool:
    """Prepare a CPU-only distributed run (gloo); no-op when CUDA exists.

    Args:
        cfg (mmengine.Config): the full config; ``cfg.launcher`` must be set.

    Returns:
        bool: whether the CPU/gloo path was taken.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return False

    if cfg.get('env_cfg') is None:
        cfg.env_cfg = dict()
    if cfg.env_cfg.get('dist_cfg') is None:
        cfg.env_cfg.dist_cfg = dict()
    dist_cfg = cfg.env_cfg.dist_cfg
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'

    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        _set_env_from_launcher(launcher)
        kwargs = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        if kwargs.get('timeout') is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
        torch_dist.init_process_group(backend=dist_cfg['backend'], **kwargs)

    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True


def close_distributed(wait: bool = True) -> None:
    """Destroy the default process group, if one is initialised.

    Called in a ``finally`` by the train, test and predict commands so that
    a finished (or failed) rank leaves no gloo / NCCL threads for the
    interpreter's shutdown. Does nothing in a single-process run.

    Args:
        wait (bool): first wait at a barrier for the other ranks (a run that
            finished: rank 0 may still be saving its last checkpoint, and a
            rank tearing gloo down while a peer is busy was seen to abort
            the same way). False when the run failed: the other ranks may
            never arrive.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        if wait:
            torch_dist.barrier()
        torch_dist.destroy_process_group()


@contextlib.contextmanager
def closing_distributed():
    """Run a command's body, then :func:`close_distributed`: waiting for the
    other ranks when the body finished, not when it raised."""
    finished = False
    try:
        yield
        finished = True
    finally:
        close_distributed(wait=finished)
