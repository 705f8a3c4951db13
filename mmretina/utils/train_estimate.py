"""How long a config's training will take on this machine, from a few
real iterations (``python -m mmretina.cli.cpu_info --estimate CONFIG``)."""
import statistics
import time
from dataclasses import dataclass
from typing import Union

__all__ = ['TrainEstimate', 'estimate_training']


@dataclass
class TrainEstimate:
    """How long a config's training takes here, from a few real iterations.

    Attributes:
        precision (str): 'bf16' (bf16 autocast: ``mmretina.BF16OptimWrapper``
            on a CPU that runs it natively, or forced) or 'fp32'.
        iters (int): training iterations of the config (``max_epochs`` x
            iterations per epoch, or ``max_iters``).
        iter_s (float): median seconds of one iteration (the train
            dataloader's next batch + ``model.train_step``), after warm-up.
        data_s (float): median seconds of the dataloader part.
        total_s (float): ``iters * iter_s`` (validation, checkpoints and
            hooks such as the EMA update are not included).
    """
    precision: str
    iters: int
    iter_s: float
    data_s: float
    total_s: float

    def summary(self) -> str:
        return (f'training in {self.precision}: {self.iters} iterations x '
                f'{self.iter_s:.3f} s (data {self.data_s:.3f} s) = '
                f'about {self.total_s / 60:.0f} min')


def estimate_training(config: Union[str, 'Config'],  # noqa: F821
                      steps: int = 3,
                      warmup: int = 1) -> TrainEstimate:
    """Time ``warmup + steps`` real training iterations of ``config`` (its
    train dataloader, model, optimizer wrapper) and scale to the whole run.

    The model starts from its initialisation (no checkpoint is read or
    written); the timed iterations are what ``IterBasedTrainLoop`` /
    ``EpochBasedTrainLoop`` run: next batch, then ``model.train_step``.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f'estimate_training: need steps >= 1 and warmup '
                         f'>= 0, got steps={steps}, warmup={warmup}')
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.runner import Runner
    from mmdet.utils import register_all_modules
    # mmretina.* are registered: importing this module imported mmretina
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    train_cfg = cfg.get('train_cfg') or {}
    scope = cfg.get('default_scope') or 'mmdet'
    with DefaultScope.overwrite_default_scope(scope):
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
        if 'max_iters' in train_cfg:
            iters = int(train_cfg['max_iters'])
        elif 'max_epochs' in train_cfg:
            iters = int(train_cfg['max_epochs']) * len(loader)
        else:
            raise ValueError('estimate_training: train_cfg has neither '
                             'max_epochs nor max_iters')
        model = MODELS.build(cfg.model)
        model.init_weights()
        model.train()
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        use_bf16 = getattr(wrapper, '_use_bf16', None)
        precision = 'bf16' if use_bf16 and use_bf16('cpu') else 'fp32'
        it = iter(loader)
        iter_t, data_t = [], []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            try:
                data = next(it)
            except StopIteration:
                it = iter(loader)
                data = next(it)
            t1 = time.perf_counter()
            model.train_step(data, wrapper)
            if i >= warmup:
                iter_t.append(time.perf_counter() - t0)
                data_t.append(t1 - t0)
    iter_s = statistics.median(iter_t)
    return TrainEstimate(precision=precision, iters=iters, iter_s=iter_s,
                         data_s=statistics.median(data_t),
                         total_s=iters * iter_s)
