#!/usr/bin/env python
"""Cut training chips and COCO annotations from rasters and vector labels:
``mmretina.cli.raster_to_coco``; run with ``--help``."""
import sys

from mmretina.cli.raster_to_coco import main

if __name__ == '__main__':
    sys.exit(main())
