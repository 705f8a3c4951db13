"""Weight converters between mmretina and other libraries' detectors."""
from .coco_labels import COCO80_IDS, coco91_class_names
from .torchvision import (KeyMismatchError, convert_mmretina_file,
                          convert_torchvision_file, detect_arch,
                          load_weights_file, mmretina_to_torchvision,
                          read_hub_config, torchvision_config,
                          torchvision_model_config, torchvision_to_mmretina)

__all__ = [
    'COCO80_IDS', 'coco91_class_names', 'KeyMismatchError',
    'convert_mmretina_file', 'convert_torchvision_file', 'detect_arch',
    'load_weights_file', 'mmretina_to_torchvision', 'read_hub_config',
    'torchvision_config', 'torchvision_model_config',
    'torchvision_to_mmretina'
]
