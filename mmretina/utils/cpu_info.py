"""What the CPU is: model name, the vector/matrix extensions ATen
dispatches to, native bf16, threads. Used by ``tools/run_demo.sh``'s
start-up banner and the benchmarks, so that every speed figure names the
machine it was measured on (``python -m mmretina.cli.cpu_info``).

The extensions of this machine are those ``/proc/cpuinfo`` lists *and*
``torch.backends.cpu.get_cpu_capability()`` lets ATen use: under
``ATEN_CPU_CAPABILITY=avx2`` on an AMX machine only ``avx2`` is named.
"""
import os
import platform
from dataclasses import dataclass, field
from typing import List, Optional

__all__ = ['CPUInfo', 'parse_cpuinfo', 'cpu_capability', 'describe_cpu']

# /proc/cpuinfo flags worth naming for convolution speed, best first.
_ISA_FLAGS = ('amx_bf16', 'avx512_bf16', 'avx512f', 'avx2')


@dataclass
class CPUInfo:
    """Description of the host CPU.

    Attributes:
        model (str): ``lscpu``'s "Model name" (``/proc/cpuinfo``'s
            ``model name``), or ``platform.processor()`` where that is absent.
        flags (list[str]): those of ``amx_bf16, avx512_bf16, avx512f, avx2``
            the CPU reports and (for this machine) ATen dispatches to
            (:func:`cpu_capability`).
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


# ISA flags usable under each ATen CPU capability
_CAPABILITY_FLAGS = {
    'AVX512': set(_ISA_FLAGS),
    'AVX2': {'avx2'},
}


def cpu_capability() -> str:
    """What ATen dispatches to here: ``torch.backends.cpu.
    get_cpu_capability()`` (``'AVX512'``, ``'AVX2'``, ``'DEFAULT'``, ...;
    lowered by ``ATEN_CPU_CAPABILITY``)."""
    import torch
    return torch.backends.cpu.get_cpu_capability()


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
    if not given:  # what ATen may use of what the CPU has
        flags &= _CAPABILITY_FLAGS.get(cpu_capability().upper(), set())
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
