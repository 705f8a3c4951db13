"""mmretina.inference.outputs: the one-CRS rule of a merged layer (asked
from the rasters' headers before any window runs)."""
import pytest

pyproj = pytest.importorskip('pyproj')

from mmretina.geo.raster import Georef  # noqa: E402
from mmretina.inference.outputs import (RunOutputs,  # noqa: E402
                                        check_one_crs)

T = (0.1, 0.0, 404211.9, 0.0, -0.1, 3285142.9)


def _georef(epsg=None):
    return Georef(T, pyproj.CRS.from_epsg(epsg).to_wkt() if epsg else None)


def test_one_crs_or_no_georef_is_accepted():
    check_one_crs(['a.tif', 'b.tif'], [_georef(32617), _georef(32617)])
    # plain images, or some of them: the layer holds pixel coordinates
    check_one_crs(['a.png', 'b.png'], [None, None])
    check_one_crs(['a.tif', 'b.png'], [_georef(32617), None])
    check_one_crs([], [])


def test_crss_are_named_with_their_files():
    paths = [f'/data/r{i}.tif' for i in range(6)]
    georefs = [_georef(32617)] * 4 + [_georef(4326), _georef()]
    with pytest.raises(ValueError) as e:
        check_one_crs(paths, georefs)
    assert str(e.value).startswith(
        '--merge-layers: the rasters are in 3 different CRSs (EPSG:32617: '
        'r0.tif, r1.tif, r2.tif and 1 more; EPSG:4326: r4.tif; no CRS: '
        'r5.tif), and one layer holds one CRS; ')


def test_check_inputs_reads_headers_only_for_a_merged_layer(tmp_path):
    georefs = {'a.tif': _georef(32617), 'b.tif': _georef(32618)}

    def unread(path):
        pytest.fail(f'{path}: header read without a merged layer')

    RunOutputs(str(tmp_path)).check_inputs(list(georefs), unread)
    RunOutputs(out=str(tmp_path / 'a.png'),
               merge_layers=True).check_inputs(list(georefs), unread)
    with pytest.raises(ValueError, match=r'2 different CRSs \(EPSG:32617: '
                       r'a.tif; EPSG:32618: b.tif\)'):
        RunOutputs(str(tmp_path), merge_layers=True).check_inputs(
            list(georefs), georefs.get)


def test_one_crs_written_three_ways_is_one_crs():
    # what GDAL writes for an EPSG code, a GDAL-flavoured WKT1 and a PROJ
    # string: three texts, one CRS (rasters from different programs)
    utm = pyproj.CRS.from_epsg(32617)
    texts = [utm.to_wkt(), utm.to_wkt('WKT1_GDAL'),
             pyproj.CRS.from_proj4('+proj=utm +zone=17 +datum=WGS84 '
                                   '+units=m +no_defs').to_wkt()]
    assert len(set(texts)) == 3
    check_one_crs(['a.tif', 'b.tif', 'c.tif'], [Georef(T, t) for t in texts])
    # the next zone is another CRS, however it is written
    with pytest.raises(ValueError, match='2 different CRSs'):
        check_one_crs(['a.tif', 'b.tif'], [
            Georef(T, texts[1]),
            Georef(T, pyproj.CRS.from_epsg(32618).to_wkt('WKT1_GDAL'))])
