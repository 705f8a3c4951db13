# Test (and evaluate) a detector with mmretina: mmdet 3.3.0's tools/test.py
# arguments and behaviour, plus CPU distributed runs and --tile
# (mmretina.cli.test; `mmretina test` when installed). Run it from an
# installed mmretina, or with the repository on PYTHONPATH as
# tools/dist_test.sh does (mmdet's habit).
from mmretina.cli.test import main

if __name__ == '__main__':
    main()
