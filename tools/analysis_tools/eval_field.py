#!/usr/bin/env python
"""Box precision / recall at IoU 0.4 per raster and site, and COCO mAP:
``mmretina.cli.eval_field``; run with ``--help``."""
import sys

from mmretina.cli.eval_field import main

if __name__ == '__main__':
    sys.exit(main())
