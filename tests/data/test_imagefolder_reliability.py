"""Image folders are read as the user meant, or refused by name.

* high-bit-depth images are scaled to 0..255, not clipped by Pillow's ``convert("RGB")``;
* links inside a class folder cannot pull in other classes' images or loop;
* what was read is reported per class, so a wrong count shows at a glance.
"""
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from supernet.data import DataConfig, DataError, build_data
from supernet.data.imagefolder import decode, scan_folder

from .test_data import _write_folder

GRADIENT = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)  # the whole 16-bit range


def _cfg(root, **kw):
    return DataConfig(**{"name": "imagefolder", "root": str(root), "val_per_class": 1, "image_size": 16, **kw})


def _labels(bundle):
    """``{file name: class name}`` over every train/ sample (train and held-out val)."""
    ds = bundle.train
    return {os.path.basename(p): ds.classes[y] for p, y in ds.samples}


def _counts(bundle):
    ds = bundle.train
    return {c: sum(1 for _, y in ds.samples if y == i) for i, c in enumerate(ds.classes)}


# ---- high bit depth ----

def test_16bit_png_is_scaled_not_saturated(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(GRADIENT).save(path)
    assert Image.open(path).mode in ("I;16", "I")  # what Pillow >= 10 / Pillow 9 call a 16-bit PNG
    rgb = np.asarray(decode(str(path)))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert (rgb == 255).mean() < 0.01  # Pillow's own convert("RGB") makes 99.6% of them 255
    expected = GRADIENT / 257.0  # 65535 -> 255 exactly
    assert np.abs(rgb[..., 0] - expected).max() <= 0.5 + 1e-9  # rounded to nearest
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_other_16bit_containers_are_scaled(tmp_path, mode):
    if mode == "I":  # 32-bit integers holding 16-bit values (Pillow 9's 16-bit PNG, PGM maxval > 255)
        img, path = Image.fromarray(GRADIENT.astype(np.int32)), tmp_path / "g.tif"
    else:
        img, path = Image.frombytes(mode, (64, 64), GRADIENT.astype(">u2").tobytes()), tmp_path / "g.png"
    img.save(path)
    rgb = np.asarray(decode(str(path)))
    assert np.abs(rgb[..., 0] - GRADIENT / 257.0).max() <= 0.5 + 1e-9


def test_16bit_pgm_with_small_maxval_is_scaled(tmp_path):
    path = tmp_path / "g.pgm"  # a 12-bit PGM: Pillow stretches maxval 4095 to 65535 itself
    path.write_bytes(b"P5 4 1 4095\n" + np.array([0, 1000, 4095, 2048], ">u2").tobytes())
    assert np.asarray(decode(str(path)))[0, :, 0].tolist() == [0, 62, 255, 128]


@pytest.mark.parametrize("channels, color_type", [(3, 2), (2, 4)])  # 48-bit RGB, 16-bit grey + alpha
def test_16bit_colour_pngs_keep_their_scale(tmp_path, channels, color_type):
    """Pillow reads these as 8-bit RGB / RGBA itself (the high byte): guard that it stays so."""
    a = np.linspace(0, 65535, 16 * channels).round().astype(np.uint16).reshape(4, 4, channels)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in a)  # filter byte 0 per row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path = tmp_path / "wide.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 16, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    rgb = np.asarray(decode(str(path))).astype(float)  # (4, 4, 3)
    colour = a[..., :1] if channels == 2 else a  # the grey of grey + alpha is each of R, G, B
    assert np.abs(rgb - colour / 257).max() < 1


def test_float_image_is_refused_by_name(tmp_path):
    path = tmp_path / "depth.tif"
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(path)
    with pytest.raises(DataError, match=r"depth\.tif has mode F \(32-bit float"):
        decode(str(path))


def test_32bit_values_beyond_16_bits_are_refused_by_name(tmp_path):
    path = tmp_path / "wide.tif"
    Image.fromarray(np.array([[-5, 0], [70000, 3]], dtype=np.int32)).save(path)
    with pytest.raises(DataError, match=r"wide\.tif has mode I .* values -5\.\.70000 outside 0\.\.65535"):
        decode(str(path))


def test_8bit_modes_are_unchanged(tmp_path):
    for mode, colour in (("L", 77), ("RGB", (10, 200, 30)), ("RGBA", (1, 2, 3, 4)), ("P", 5)):
        path = tmp_path / f"{mode}.png"
        Image.new(mode, (5, 4), colour).save(path)
        assert np.array_equal(np.asarray(decode(str(path))), np.asarray(Image.open(path).convert("RGB")))


def test_skip_corrupt_drops_refused_images(tmp_path):
    _write_folder(tmp_path)
    bad = tmp_path / "train" / "cat" / "depth.tif"
    Image.fromarray(np.zeros((8, 8), np.float32)).save(bad)
    b = build_data(_cfg(tmp_path, skip_corrupt=True))
    assert b.train.skipped == [str(bad)]
    assert str(bad) not in [p for p, _ in b.train.samples]


# ---- links ----

def test_symlink_loop_in_a_class_folder_is_not_followed(tmp_path):
    _write_folder(tmp_path, n_train=6)  # 12 images
    (tmp_path / "train" / "cat" / "loop").symlink_to("..")  # train/cat/loop -> train/
    b = build_data(_cfg(tmp_path))
    assert len(b.train) + len(b.val) == 12  # was 492, dog images among them labelled cat
    assert _counts(b) == {"cat": 6, "dog": 6}
    assert not any("/cat/loop/" in p for p, _ in b.train.samples)


def test_link_to_another_class_folder_is_not_followed(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "train" / "cat" / "dogs").symlink_to(tmp_path / "train" / "dog")  # absolute link
    (tmp_path / "train" / "cat" / "more").symlink_to(os.path.join("..", "dog"))  # relative link
    b = build_data(_cfg(tmp_path))
    assert _counts(b) == {"cat": 4, "dog": 4}
    assert all(("/dog/" in p) == (y == 1) for p, y in b.train.samples)


def test_file_link_into_another_class_is_refused(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "train" / "cat" / "x.png").symlink_to(tmp_path / "train" / "dog" / "0.png")
    with pytest.raises(DataError, match=r"train/cat/x\.png and .*train/dog/0\.png are the same file"):
        build_data(_cfg(tmp_path))


def test_file_links_are_followed_and_each_file_counted_once(tmp_path):
    _write_folder(tmp_path / "data")
    outside = tmp_path / "pool"
    outside.mkdir()
    Image.new("RGB", (9, 9), (1, 2, 3)).save(outside / "a.png")
    cat = tmp_path / "data" / "train" / "cat"
    (cat / "a.png").symlink_to(outside / "a.png")  # the usual way to build a subset: links to the full set
    (cat / "a_again.png").symlink_to(outside / "a.png")  # the same file twice in one class: counted once
    (cat / "0_again.png").symlink_to(cat / "0.png")
    b = build_data(_cfg(tmp_path / "data"))
    assert _counts(b) == {"cat": 5, "dog": 4}
    assert _labels(b)["a.png"] == "cat" and "a_again.png" not in _labels(b)


def test_a_linked_class_folder_is_read(tmp_path):
    _write_folder(tmp_path / "full")
    sub = tmp_path / "subset"
    for split in ("train", "val"):
        (sub / split).mkdir(parents=True)
        for cls in ("cat", "dog"):
            (sub / split / cls).symlink_to(tmp_path / "full" / split / cls)
    b = build_data(_cfg(sub))
    assert _counts(b) == {"cat": 4, "dog": 4} and len(b.test) == 4


def test_a_class_folder_linked_twice_is_refused(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "train" / "kitten").symlink_to(tmp_path / "train" / "cat")
    (tmp_path / "val" / "kitten").symlink_to(tmp_path / "val" / "cat")
    with pytest.raises(DataError, match="are the same file"):
        build_data(_cfg(tmp_path))


def test_val_sharing_a_file_with_train_is_refused(tmp_path):
    _write_folder(tmp_path / "data")
    (tmp_path / "data" / "val" / "dog" / "seen.png").symlink_to(tmp_path / "data" / "train" / "dog" / "2.png")
    with pytest.raises(DataError, match=r"val/dog/seen\.png is the same file as .*train/dog/2\.png \(1 of val/"):
        build_data(_cfg(tmp_path / "data"))
    (tmp_path / "data" / "val" / "dog" / "seen.png").unlink()
    (tmp_path / "data" / "val").rename(tmp_path / "data" / "val_copy")
    (tmp_path / "data" / "val").symlink_to("train")  # a quick way to "have" a test split
    with pytest.raises(DataError, match=r"\(8 of val/'s images are in train/\); val/ is the test split"):
        build_data(_cfg(tmp_path / "data"))


# ---- the per-class report ----

def test_what_was_read_is_reported_per_class(tmp_path, capsys):
    _write_folder(tmp_path, n_train=6)
    (tmp_path / "train" / "cat" / "loop").symlink_to("..")
    build_data(_cfg(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert out == [f"note: imagefolder {tmp_path}/train: 12 images in 2 classes (cat 6, dog 6); "
                   f"did not follow 1 linked folder ({tmp_path}/train/cat/loop)",
                   f"note: imagefolder {tmp_path}/val: 4 images in 2 classes (cat 2, dog 2)"]


def test_many_classes_are_summarised_on_one_line(tmp_path):
    for i in range(12):
        d = tmp_path / "train" / f"c{i:02d}"
        d.mkdir(parents=True)
        for j in range(2 + (i == 7) * 3 + (i == 3)):
            Image.new("L", (4, 4), j).save(d / f"{j}.png")
    assert scan_folder(tmp_path / "train").note() == (
        f"note: imagefolder {tmp_path}/train: 28 images in 12 classes; per class min 2 (c00), median 2, "
        f"max 5 (c07); c00 2, c01 2, c02 2, c03 3, c04 2, ...")


# ---- folders for the bad-input table (tests/test_bad_input.py) ----

def bad_folder(tmp, case):
    """CLI overrides reading an image folder under ``tmp`` with one kind of refused input."""
    root = tmp / "imgs"
    _write_folder(root)
    cat = root / "train" / "cat"
    if case == "float":  # two, so one stays in training whichever image the split holds out
        for name in ("depth_a.tif", "depth_b.tif"):
            Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(cat / name)
    elif case == "int32":
        for name in ("wide_a.tif", "wide_b.tif"):
            Image.fromarray(np.array([[-5, 0], [70000, 3]], dtype=np.int32)).save(cat / name)
    elif case == "two classes":
        (cat / "x.png").symlink_to(root / "train" / "dog" / "0.png")
    elif case == "val in train":
        (root / "val" / "dog" / "seen.png").symlink_to(root / "train" / "dog" / "2.png")
    elif case == "links only":
        for split in ("train", "val"):
            (root / split / "cow").mkdir()
            (root / split / "cow" / "imgs").symlink_to(root / split / "cat")
    else:
        raise ValueError(case)
    return ["data.name=imagefolder", f"data.root={root}", "data.val_per_class=1", "data.image_size=32"]
