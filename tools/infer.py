# Run a detector on images and rasters and write its detections: images,
# large rasters window by window from disk, GIS layers in the raster's CRS,
# exported models (mmretina.cli.infer; `mmretina predict` when installed).
#
#   python tools/infer.py IMAGE_OR_DIR CONFIG CHECKPOINT --out-dir DIR \
#       --tile 400 --overlap 0.25 [--bands 1,2,3] [--format gpkg]
#
# docs/user_guides/large_rasters.md has every option.
from mmretina.cli.infer import main

if __name__ == '__main__':
    raise SystemExit(main())
