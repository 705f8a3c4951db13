#!/usr/bin/env python
"""Rerun the ablations of "Focal Loss for Dense Object Detection" (Table 1):
``mmretina.cli.ablate`` over :mod:`mmretina.analysis.ablations`; run with
``--help``."""
import sys

from mmretina.cli.ablate import main

if __name__ == '__main__':
    sys.exit(main())
