"""``python -m mmretina``: the ``mmretina`` command
(:func:`mmretina.cli.main.main`)."""
import sys

from mmretina.cli.main import main

if __name__ == '__main__':
    sys.exit(main())
