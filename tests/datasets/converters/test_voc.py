"""mmretina.datasets.converters.voc: the VOC reader refuses DTDs and
entities (untrusted XML) quickly, naming the file."""
import pytest

from mmretina.datasets.converters import ConversionError, parse_voc_file
from mmretina.datasets.converters.voc import MAX_XML_BYTES, parse_voc

# the classic "billion laughs": ten levels of ten references, ~1 KB that a
# parser expanding entities turns into 10^9 copies of "lol"
BILLION_LAUGHS = '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n' + \
    ' <!ENTITY lol "lol">\n' + ''.join(
        f' <!ENTITY lol{i} "' + f'&lol{i - 1 if i > 1 else ""};' * 10 + '">\n'
        for i in range(1, 10)) + ']>\n<annotation>&lol9;</annotation>\n'


def test_billion_laughs_is_refused_naming_the_file(tmp_path):
    assert len(BILLION_LAUGHS) < 1100
    path = tmp_path / 'evil.xml'
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(ConversionError) as e:
        parse_voc_file(str(path))
    msg = str(e.value)
    assert msg.startswith(f'{path}: refused: the XML declares a DTD')
    assert '<!DOCTYPE' in msg


def test_external_entity_is_refused(tmp_path):
    path = tmp_path / 'ext.xml'
    path.write_text('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x SYSTEM '
                    '"file:///etc/passwd">]>\n<annotation>&x;</annotation>')
    with pytest.raises(ConversionError, match=r'ext\.xml: refused'):
        parse_voc_file(str(path))


def test_oversized_file_is_refused_before_parsing():
    data = b'<annotation>' + b' ' * MAX_XML_BYTES + b'</annotation>'
    with pytest.raises(ConversionError, match='big.xml: refused: .* bytes'):
        parse_voc(data, 'big.xml')


def test_a_plain_file_is_read_with_lines():
    xml = (b'<annotation>\n<filename>a.png</filename>\n<size><width>4'
           b'</width><height>3</height></size>\n<object><name>cat</name>\n'
           b'<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>3'
           b'</ymax></bndbox></object>\n</annotation>')
    rec = parse_voc(xml, 'a.xml')
    assert (rec.file_name, rec.width, rec.height) == ('a.png', 4, 3)
    (b, ) = rec.boxes
    assert (b.x1, b.y1, b.x2, b.y2, b.label) == (0, 0, 4, 3, 'cat')
    assert b.line == 5
