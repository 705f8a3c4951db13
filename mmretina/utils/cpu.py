"""What the CPU is: model name, vector/matrix extensions, native bf16,
threads; and how long a config's training will take on it. Used by
``tools/run_demo.sh``'s start-up banner and the benchmarks, so that every
speed figure names the machine it was measured on.

    python -m mmretina.utils.cpu            # one line
    python -m mmretina.utils.cpu --json     # the fields as JSON
    python -m mmretina.utils.cpu --estimate CONFIG   # + training time
"""
import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Union

# /proc/cpuinfo flags worth naming for convolution speed, best first.
_ISA_FLAGS = ('amx_bf16', 'avx512_bf16', 'avx512f', 'avx2')


@dataclass
class CPUInfo:
    """Description of the host CPU.

    Attributes:
        model (str): ``lscpu``'s "Model name" (``/proc/cpuinfo``'s
            ``model name``), or ``platform.processor()`` where that is absent.
        flags (list[str]): those of ``amx_bf16, avx512_bf16, avx512f, avx2``
            the CPU reports.
        bf16_native (bool): whether oneDNN runs bf16 natively here
            (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``; where torch
            cannot say, the ``amx_bf16`` / ``avx512_bf16`` flags).
        cores (int): logical CPUs this process may run on.
        threads (int): torch's intra-op threads (``torch.get_num_threads``).
    """
    model: str
    flags: List[str] = field(default_factory=list)
    bf16_native: bool = False
    cores: int = 1
    threads: int = 1

    def summary(self) -> str:
        """One line, e.g. ``Intel(R) Xeon(R) Processor (amx_bf16, ...),
        bf16 native, 2 cores, 2 threads``."""
        isa = f' ({", ".join(self.flags)})' if self.flags else ''
        bf16 = 'bf16 native' if self.bf16_native else 'no native bf16'
        return (f'{self.model}{isa}, {bf16}, {self.cores} cores, '
                f'{self.threads} threads')


def parse_cpuinfo(text: str) -> tuple:
    """``(model name, set of flags)`` of the first processor in a
    ``/proc/cpuinfo`` text; ``('', set())`` when it has neither."""
    if not isinstance(text, str):
        raise TypeError(f'parse_cpuinfo: expected str, got {type(text)}')
    model, flags = '', set()
    for line in text.splitlines():
        key, sep, value = line.partition(':')
        if not sep:
            continue
        key = key.strip()
        if key == 'model name' and not model:
            model = value.strip()
        elif key == 'flags' and not flags:
            flags = set(value.split())
    return model, flags


def describe_cpu(cpuinfo: Optional[str] = None) -> CPUInfo:
    """Describe this machine's CPU.

    Args:
        cpuinfo (str, optional): text of ``/proc/cpuinfo``; read from the
            system when None. When given, ``bf16_native`` follows its flags
            only (so a test can describe another machine).
    """
    given = cpuinfo is not None
    if not given:
        try:
            with open('/proc/cpuinfo') as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ''
    model, flags = parse_cpuinfo(cpuinfo)
    model = model or platform.processor() or platform.machine() or 'unknown'
    bf16 = bool(flags & {'amx_bf16', 'avx512_bf16'})
    import torch
    if not given:
        try:
            bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return CPUInfo(
        model=model,
        flags=[f for f in _ISA_FLAGS if f in flags],
        bf16_native=bf16,
        cores=cores,
        threads=torch.get_num_threads())


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
    register_all_modules(init_default_scope=False)
    import mmretina  # noqa: F401
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true',
                        help='print the fields as JSON')
    parser.add_argument('--estimate', metavar='CONFIG',
                        help="also time a few of CONFIG's training "
                        'iterations and estimate the whole training')
    parser.add_argument('--steps', type=int, default=3,
                        help='timed iterations for --estimate (after 1 '
                        'warm-up)')
    args = parser.parse_args(argv)
    info = describe_cpu()
    est = None
    if args.estimate:
        # keep the dataset/model builders' chatter off the banner
        with contextlib.redirect_stdout(io.StringIO()):
            est = estimate_training(args.estimate, steps=args.steps)
    if args.json:
        fields = asdict(info)
        if est is not None:
            fields['estimate'] = asdict(est)
        print(json.dumps(fields))
    else:
        print(f'CPU: {info.summary()}')
        if est is not None:
            print(est.summary() + ' (timed here, now; a busy machine '
                  'takes longer)')


if __name__ == '__main__':
    main()
