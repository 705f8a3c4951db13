#!/usr/bin/env python
"""How well do the anchors of a config fit its training boxes?
``mmretina.cli.analyze_anchors`` over :mod:`mmretina.analysis.anchors`;
run with ``--help``."""
import sys

from mmretina.cli.analyze_anchors import main

if __name__ == '__main__':
    sys.exit(main())
