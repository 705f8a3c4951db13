# Convert an mmretina RetinaNet checkpoint in torchvision's layout
# (mmretina.cli.mmretina_to_torchvision;
# `mmretina convert to-torchvision` when installed).
from mmretina.cli.mmretina_to_torchvision import main

if __name__ == '__main__':
    raise SystemExit(main())
