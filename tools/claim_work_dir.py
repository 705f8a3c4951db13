# Make WORK_DIR safe to `tools/train.py CONFIG --work-dir WORK_DIR --resume`:
#   python tools/claim_work_dir.py CONFIG WORK_DIR
# (mmretina.cli.claim_work_dir over mmretina.engine.resume.claim_work_dir)
import sys

from mmretina.cli.claim_work_dir import main

if __name__ == '__main__':
    sys.exit(main())
