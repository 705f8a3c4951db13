"""Small helpers: CPU description (:mod:`.cpu_info`), the training-time
estimate (:mod:`.train_estimate`), CPU distributed set-up (:mod:`.dist`),
the environment report (:mod:`.collect_env`), resource paths (:mod:`.paths`)
and the registry that checks init arguments (:mod:`.checked_registry`).

Checkpoint loading and the resume checks live in :mod:`mmretina.engine`
(:mod:`mmretina.engine.checkpoint`, :mod:`mmretina.engine.resume`)."""
from .checked_registry import MMRetinaRegistry
from .dist import (close_distributed, closing_distributed,
                   setup_cpu_distributed)

__all__ = ['close_distributed', 'closing_distributed',
           'setup_cpu_distributed', 'MMRetinaRegistry']
