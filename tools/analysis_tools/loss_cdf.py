#!/usr/bin/env python
"""Figure 4 of the focal loss paper: where the loss goes.
``mmretina.cli.loss_cdf`` over :mod:`mmretina.analysis.loss_distribution`;
run with ``--help``."""
import sys

from mmretina.cli.loss_cdf import main

if __name__ == '__main__':
    sys.exit(main())
