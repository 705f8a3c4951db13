#!/usr/bin/env python
"""Training curves and iteration times from mmengine's JSON logs:
``mmretina.cli.analyze_logs`` over :mod:`mmretina.analysis.logs`; run with
``--help``."""
import sys

from mmretina.cli.analyze_logs import main

if __name__ == '__main__':
    sys.exit(main())
