# Train a detector with mmretina: mmdet 3.3.0's tools/train.py arguments and
# behaviour, plus CPU distributed training, bf16 --amp on CPUs and the
# finite-loss guard (mmretina.cli.train; `mmretina train` when installed).
# Run it from an installed mmretina, or with the repository on PYTHONPATH
# as tools/dist_train.sh does (mmdet's habit).
from mmretina.cli.train import main

if __name__ == '__main__':
    main()
