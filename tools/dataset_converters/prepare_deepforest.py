#!/usr/bin/env python
"""Build the DeepForest tree-crown data set in COCO format:
``mmretina.cli.prepare_deepforest``; run with ``--help``."""
import sys

from mmretina.cli.prepare_deepforest import main

if __name__ == '__main__':
    sys.exit(main())
