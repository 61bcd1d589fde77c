"""detectron2 adapter, bad data (docs/errors.md): missing synthetic files, a corrupt image in a registered dataset."""
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image

from d2_ext.data import register_shapes


def test_register_without_files(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        register_shapes('dlap_err_missing', str(tmp_path / 'nowhere'), 4, write=False)
    assert str(e.value) == (f"register_shapes(write=False): no {str(tmp_path / 'nowhere' / 'instances.json')!r}; "
                            f"expected <root>/instances.json and <root>/images/*.png written by write_shapes_coco")
    assert 'dlap_err_missing' not in DatasetCatalog.list()


def test_corrupt_image_is_named(tmp_path):
    """detectron2 itself names the file (PIL's UnidentifiedImageError): nothing to add on our side."""
    name = register_shapes('dlap_err_corrupt', str(tmp_path), 2, size=(32, 32))
    try:
        first = DatasetCatalog.get(name)[0]['file_name']
        with open(first, 'wb') as f:
            f.write(b'not a png')
        with pytest.raises(Exception, match=rf"cannot identify image file <_io.BufferedReader name='{first}'>"):
            read_image(first, format='RGB')
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
