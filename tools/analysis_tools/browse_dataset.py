#!/usr/bin/env python
"""Draw training samples as the model sees them (mmdet's browse_dataset.py
after importing mmretina): ``mmretina.cli.browse_dataset``; run with
``--help``."""
from mmretina.cli.browse_dataset import main

if __name__ == '__main__':
    main()
