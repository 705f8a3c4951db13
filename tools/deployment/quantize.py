# INT8 (static QDQ) quantization of an exported model, calibrated on your
# images (mmretina.cli.quantize; `mmretina quantize` when installed).
from mmretina.cli.quantize import main

if __name__ == '__main__':
    raise SystemExit(main())
