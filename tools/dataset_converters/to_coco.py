#!/usr/bin/env python
"""Convert Pascal-VOC XML, a CSV of boxes or YOLO txt labels to COCO json:
``mmretina.cli.to_coco`` (``mmretina convert labels``); run with ``--help``."""
import sys

from mmretina.cli.to_coco import main

if __name__ == '__main__':
    sys.exit(main())
