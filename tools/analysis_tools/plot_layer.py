#!/usr/bin/env python
"""Vector layers over a georeferenced raster, map coordinates on the axes:
``mmretina.cli.plot_layer``; run with ``--help``."""
import sys

from mmretina.cli.plot_layer import main

if __name__ == '__main__':
    sys.exit(main())
