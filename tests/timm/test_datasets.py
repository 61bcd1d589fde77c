"""Dataset readers (timm_ext.datasets) on tiny synthetic copies of each official layout: the splits and labels are
right (every image is a solid colour that encodes its true class and a width that encodes which image it is), and an
incomplete layout names the missing file."""
import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import scipy.io
from PIL import Image

from timm_ext.datasets import LAYOUTS, ListFileDataset, create_datasets

PALETTE = [(220, 30, 30), (30, 200, 40), (40, 40, 220), (230, 230, 230), (20, 20, 20)]


def _image(path: Path, label: int, k: int) -> None:
    """Image number ``k`` (its width is 8 + k) of class ``label`` (its colour)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (8 + k, 8), PALETTE[label]).save(path)


def _check(ds, expected: List[Tuple[int, int]]) -> None:
    """``ds`` yields exactly the images ``expected`` (k, label) in order, each labelled with its colour's class."""
    got = []
    for i in range(len(ds)):
        img, label = ds[i]
        assert np.abs(np.asarray(img, dtype=float).mean((0, 1)) - PALETTE[label]).max() < 8, (i, label)
        got.append((img.size[0] - 8, label))
    assert got == expected


def write_list_layout(root: Path, images: List[Tuple[str, str, str, int]], classes: Dict[str, str]) -> Path:
    """CUB/NABirds list files: ``images`` = (image id, relative path, class id, is_train); image k has width 8 + k
    and the colour of its class id's rank among the used ids."""
    used = sorted({c for _, _, c, _ in images}, key=int)
    (root / 'images').mkdir(parents=True, exist_ok=True)
    for k, (_, rel, c, _) in enumerate(images):
        _image(root / 'images' / rel, used.index(c), k)
    (root / 'images.txt').write_text(''.join(f'{i} {rel}\n' for i, rel, _, _ in images))
    (root / 'train_test_split.txt').write_text(''.join(f'{i} {t}\n' for i, _, _, t in images))
    (root / 'image_class_labels.txt').write_text(''.join(f'{i} {c}\n' for i, _, c, _ in images))
    (root / 'classes.txt').write_text(''.join(f'{c} {n}\n' for c, n in classes.items()))
    return root


def _cub(root: Path) -> Path:
    classes = {'1': '001.Zebra_Finch', '2': '002.Albatross', '3': '003.Crow', '4': '004.Wren'}  # not alphabetical
    images = [(str(k + 1), f'{int(c):03d}.x/img_{k:02d}.jpg', c, int(k % 3 != 0)) for k, c in
              enumerate('1234' * 3)]
    return write_list_layout(root / 'CUB_200_2011', images, classes)


def test_cub_reader(tmp_path):
    base = _cub(tmp_path)
    train, test, n = create_datasets('cub', str(tmp_path))
    assert n == 4 and train.classes == ['001.Zebra_Finch', '002.Albatross', '003.Crow', '004.Wren']
    _check(train, [(k, int('1234'[k % 4]) - 1) for k in range(12) if k % 3 != 0])
    _check(test, [(k, int('1234'[k % 4]) - 1) for k in range(12) if k % 3 == 0])
    again, _, _ = create_datasets('cub', str(base))  # --data-dir may be CUB_200_2011 itself
    assert again.samples == train.samples


def test_nabirds_reader_maps_sparse_leaf_ids(tmp_path):
    """NABirds: uuid image ids, classes.txt with the hierarchy's inner nodes, sparse leaf ids sorted numerically
    (295 < 817 < 1000, where a string sort would put 1000 first)."""
    classes = {'0': 'Birds', '1': 'Perching Birds', '295': 'Common Loon', '817': 'Mallard (Male)',
               '1000': 'Wood Duck (Female/juvenile)'}
    ids = [f'{k:08x}-21dc-4d0c-bfe1-4cae3c85c829' for k in range(9)]
    leaf = ['817', '1000', '295'] * 3
    images = [(i, f'{int(c):04d}/{i.replace("-", "")}.jpg', c, int(k < 6)) for k, (i, c) in enumerate(zip(ids, leaf))]
    write_list_layout(tmp_path / 'nabirds', images, classes)
    train, test, n = create_datasets('nabirds', str(tmp_path))
    assert n == 3 and train.class_ids == ['295', '817', '1000']
    assert train.classes == ['Common Loon', 'Mallard (Male)', 'Wood Duck (Female/juvenile)']
    label = {'295': 0, '817': 1, '1000': 2}
    _check(train, [(k, label[c]) for k, c in enumerate(leaf) if k < 6])
    _check(test, [(k, label[c]) for k, c in enumerate(leaf) if k >= 6])


def test_cars_reader(tmp_path):
    """torchvision's StanfordCars on its layout: devkit/*.mat annotations with 1-based classes."""
    base = tmp_path / 'stanford_cars'
    (base / 'devkit').mkdir(parents=True)
    names = ['AM General Hummer SUV 2000', 'Acura RL Sedan 2012', 'Audi R8 Coupe 2012']
    scipy.io.savemat(base / 'devkit' / 'cars_meta.mat', {'class_names': np.array(names, dtype=object)})
    splits = {'train': [('00001.jpg', 3), ('00002.jpg', 1), ('00003.jpg', 2), ('00004.jpg', 1)],
              'test': [('00001.jpg', 2), ('00002.jpg', 3), ('00003.jpg', 1)]}
    for split, items in splits.items():
        for k, (fname, cls) in enumerate(items):
            _image(base / f'cars_{split}' / fname, cls - 1, k)
        annos = np.array([(fname, cls) for fname, cls in items], dtype=[('fname', 'O'), ('class', 'O')])
        mat = base / ('devkit/cars_train_annos.mat' if split == 'train' else 'cars_test_annos_withlabels.mat')
        scipy.io.savemat(mat, {'annotations': annos})
    train, test, n = create_datasets('cars', str(tmp_path))
    assert n == 3 and train.classes == names
    _check(train, [(k, c - 1) for k, (_, c) in enumerate(splits['train'])])
    _check(test, [(k, c - 1) for k, (_, c) in enumerate(splits['test'])])


def test_aircraft_reader_uses_trainval_and_test(tmp_path):
    data = tmp_path / 'fgvc-aircraft-2013b' / 'data'
    variants = ['707-320', 'A300B4', 'Cessna 172', 'F-16A/B']
    data.mkdir(parents=True)
    (data / 'variants.txt').write_text(''.join(v + '\n' for v in variants))
    splits = {'trainval': [('1000001', 'Cessna 172'), ('1000002', 'F-16A/B'), ('1000003', '707-320')],
              'test': [('2000001', 'A300B4'), ('2000002', 'Cessna 172')],
              'train': [('1000002', 'F-16A/B')]}  # the official train split is a subset; it must not be used
    k = {}
    for split, items in splits.items():
        (data / f'images_variant_{split}.txt').write_text(''.join(f'{i} {v}\n' for i, v in items))
        for i, v in items:
            k.setdefault(i, len(k))
            _image(data / 'images' / f'{i}.jpg', variants.index(v), k[i])
    train, test, n = create_datasets('aircraft', str(tmp_path))
    assert n == 4 and train.classes == variants
    _check(train, [(k[i], variants.index(v)) for i, v in splits['trainval']])
    _check(test, [(k[i], variants.index(v)) for i, v in splits['test']])


def test_food101_reader(tmp_path):
    base = tmp_path / 'food-101'
    (base / 'meta').mkdir(parents=True)
    splits = {'train': {'waffles': ['waffles/11', 'waffles/12'], 'apple_pie': ['apple_pie/21'], 'sushi': ['sushi/31']},
              'test': {'sushi': ['sushi/32'], 'apple_pie': ['apple_pie/22']}}
    order = ['apple_pie', 'sushi', 'waffles']  # torchvision sorts the class names
    for split, meta in splits.items():
        (base / 'meta' / f'{split}.json').write_text(json.dumps(meta))
        for cls, rels in meta.items():
            for rel in rels:
                _image(base / 'images' / f'{rel}.jpg', order.index(cls), int(rel.split('/')[1]) - 10)
    train, test, n = create_datasets('food101', str(tmp_path))
    assert n == 3 and train.classes == order
    _check(train, [(1, 2), (2, 2), (11, 0), (21, 1)])  # in meta/train.json order
    _check(test, [(22, 1), (12, 0)])


@pytest.mark.parametrize('name,remove', [('cub', 'train_test_split.txt'), ('nabirds', 'images/'),
                                         ('cars', 'devkit/cars_meta.mat'), ('aircraft', 'data/variants.txt'),
                                         ('food101', 'meta/test.json')])
def test_missing_file_is_named_with_the_layout(tmp_path, name, remove):
    layout = LAYOUTS[name]
    base = tmp_path / layout.folder
    for rel in layout.required:
        path = base / rel.rstrip('/')
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel == remove:
            continue
        if rel.endswith('/'):
            path.mkdir()
        else:
            path.write_text('')
    missing = base / remove.rstrip('/')
    with pytest.raises(FileNotFoundError) as e:
        create_datasets(name, str(tmp_path))
    assert str(e.value) == (f"dataset {name!r}: missing {missing}{'/' if remove.endswith('/') else ''}; expected the "
                            f'official {layout.title} layout: <data_dir>/{layout.folder}/{{'
                            f"{', '.join(layout.required)}}} (--data-dir is the folder holding {layout.folder}/, or "
                            f'{layout.folder}/ itself)')


def test_list_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as e:  # a --data-dir without the dataset
        create_datasets('cub', str(tmp_path))
    assert str(e.value).startswith(f"dataset 'cub': missing {tmp_path / 'CUB_200_2011' / 'images.txt'}; expected the "
                                   'official CUB-200-2011 layout: <data_dir>/CUB_200_2011/{images.txt, '
                                   'train_test_split.txt, image_class_labels.txt, classes.txt, images/}')
    base = _cub(tmp_path)
    (base / 'image_class_labels.txt').write_text('1 1\n2 2\n')
    with pytest.raises(ValueError) as e:
        ListFileDataset(base, train=True)
    assert str(e.value) == (f"dataset 'cub': {base / 'image_class_labels.txt'} has no line for 10 image id(s) of "
                            "images.txt, first '3'")
    base = _cub(tmp_path)
    (base / 'classes.txt').write_text('1 a\n2 b\n3 c\n')
    with pytest.raises(ValueError) as e:
        ListFileDataset(base, train=False)
    assert str(e.value) == f"dataset 'cub': class id '4' labels images but is not in {base / 'classes.txt'}"
    (base / 'classes.txt').write_text('1 a\n2\n')
    with pytest.raises(ValueError) as e:
        ListFileDataset(base, train=False)
    assert str(e.value) == f"dataset 'cub': {base / 'classes.txt'} line 2: expected '<id> <value>', got '2'"
    with pytest.raises(ValueError) as e:
        create_datasets('inat', str(tmp_path))
    assert str(e.value) == ("dataset: unknown 'inat'; allowed: ['imagefolder', 'cub', 'cars', 'aircraft', 'food101', "
                            "'nabirds']")
