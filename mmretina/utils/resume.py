"""Moved to :mod:`mmretina.engine.resume` (work-dir identity and resume
checks in one place); this name stays for existing imports."""
from mmretina.engine.resume import *  # noqa: F401,F403
from mmretina.engine.resume import __all__  # noqa: F401
