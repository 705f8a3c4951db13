"""Moved to :mod:`mmretina.engine.checkpoint` (checkpoint loading beside
the resume checks); this name stays for existing imports."""
from mmretina.engine.checkpoint import *  # noqa: F401,F403
from mmretina.engine.checkpoint import __all__  # noqa: F401
