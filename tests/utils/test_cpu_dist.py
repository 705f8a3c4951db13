"""mmretina.utils.dist.setup_cpu_distributed: gloo instead of nccl, process
group initialised without torch.cuda.set_device, DDP without device_ids."""
from unittest import mock

import pytest
import torch
from mmengine.config import Config

import mmretina.utils.dist as cpu_dist


def test_noop_without_launcher():
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    cfg.launcher = 'none'
    assert cpu_dist.setup_cpu_distributed(cfg) is False
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert 'model_wrapper_cfg' not in cfg


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only path')
@pytest.mark.parametrize('env_cfg', [
    None,
    dict(dist_cfg=dict(backend='nccl', timeout=60)),
])
def test_pytorch_launcher_on_cpu(env_cfg, monkeypatch):
    cfg = Config(dict(env_cfg=env_cfg) if env_cfg else dict())
    cfg.launcher = 'pytorch'
    monkeypatch.setattr(cpu_dist.torch_dist, 'is_initialized', lambda: False)
    with mock.patch.object(cpu_dist.torch_dist,
                           'init_process_group') as init_pg:
        assert cpu_dist.setup_cpu_distributed(cfg) is True
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert init_pg.call_args.kwargs['backend'] == 'gloo'
    if env_cfg:
        assert init_pg.call_args.kwargs['timeout'].total_seconds() == 60
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
    assert cfg.model_wrapper_cfg.device_ids is None


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only path')
def test_slurm_env_translated(monkeypatch):
    for k, v in dict(SLURM_PROCID='1', SLURM_NTASKS='2', SLURM_LOCALID='1',
                     SLURM_NODELIST='node1', MASTER_ADDR='10.0.0.1').items():
        monkeypatch.setenv(k, v)
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_PORT'):
        monkeypatch.delenv(k, raising=False)
    cfg = Config(dict(model_wrapper_cfg=dict(type='Custom')))
    cfg.launcher = 'slurm'
    monkeypatch.setattr(cpu_dist.torch_dist, 'is_initialized', lambda: False)
    with mock.patch.object(cpu_dist.torch_dist, 'init_process_group'):
        cpu_dist.setup_cpu_distributed(cfg)
    import os
    assert (os.environ['RANK'], os.environ['WORLD_SIZE'],
            os.environ['LOCAL_RANK']) == ('1', '2', '1')
    assert os.environ['MASTER_PORT'] == '29500'
    assert cfg.model_wrapper_cfg.type == 'Custom'  # user's choice kept


def _init_single_process_gloo(tmp_path):
    torch.distributed.init_process_group(
        'gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
        world_size=1)


def test_close_distributed_destroys_the_group(tmp_path):
    cpu_dist.close_distributed()  # nothing initialised: a no-op
    _init_single_process_gloo(tmp_path)
    assert torch.distributed.is_initialized()
    cpu_dist.close_distributed()
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize('command', ['train', 'test', 'infer'])
def test_commands_close_the_group_when_they_fail(command, tmp_path,
                                                 monkeypatch):
    """A rank that stops (or finishes) leaves no process group behind: gloo
    threads alive at interpreter shutdown abort the process (SIGABRT) and
    torchrun reports the run as failed."""
    import importlib
    cli = importlib.import_module(f'mmretina.cli.{command}')

    def fails(args):
        _init_single_process_gloo(tmp_path)
        raise RuntimeError('stopped inside the run')

    monkeypatch.setattr(cli, 'parse_args', lambda argv: None)
    monkeypatch.setattr(cli, '_main', fails)
    with pytest.raises(RuntimeError, match='stopped inside the run'):
        cli.main([])
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize('command', ['train', 'test', 'infer'])
def test_commands_wait_for_the_other_ranks_when_they_finish(
        command, tmp_path, monkeypatch):
    """A finished rank waits at a barrier before tearing the group down
    (rank 0 may still be saving); a failed one does not (see above)."""
    import importlib
    cli = importlib.import_module(f'mmretina.cli.{command}')
    barriers = []
    real_barrier = cpu_dist.torch_dist.barrier
    monkeypatch.setattr(cpu_dist.torch_dist, 'barrier',
                        lambda: barriers.append(1) or real_barrier())
    monkeypatch.setattr(cli, 'parse_args', lambda argv: None)
    monkeypatch.setattr(cli, '_main',
                        lambda args: _init_single_process_gloo(tmp_path))
    cli.main([])
    assert barriers == [1]
    assert not torch.distributed.is_initialized()

    def fails(args):
        _init_single_process_gloo(tmp_path / 'again')
        raise RuntimeError('stopped')

    (tmp_path / 'again').mkdir()
    monkeypatch.setattr(cli, '_main', fails)
    with pytest.raises(RuntimeError):
        cli.main([])
    assert barriers == [1]  # no barrier after a failure
    assert not torch.distributed.is_initialized()
