# Export a RetinaNet to ONNX: preprocessing (BGR->RGB, normalisation),
# ONNX with the box decoding and NMS inside (mmretina.cli.export_onnx;
# `mmretina export` when installed).
from mmretina.cli.export_onnx import main

if __name__ == '__main__':
    raise SystemExit(main())
