# Convert a torchvision / DeepForest RetinaNet into an mmretina checkpoint
# (mmretina.cli.torchvision_to_mmretina;
# `mmretina convert from-torchvision` when installed).
from mmretina.cli.torchvision_to_mmretina import main

if __name__ == '__main__':
    raise SystemExit(main())
