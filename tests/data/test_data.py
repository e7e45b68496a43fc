"""Data splits, the (index, aug_seed) determinism contract, loaders and the on-disk formats."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from supernet.data import (DataBundle, DataConfig, DataError, StepBatchSampler, build_data,
                           eval_loader, fixed_batches, train_loader)
from supernet.data.loader import Compact
from supernet.data.transforms import pad_crop, random_resized_crop, random_resized_crop_params


def _positions(ds):
    return set(ds.positions.tolist())


def _assert_disjoint(bundle: DataBundle):
    tr, va, te = (_positions(d) for d in (bundle.train, bundle.val, bundle.test))
    assert not tr & va and not tr & te and not va & te


@pytest.fixture(scope="module")
def digits():
    return build_data(DataConfig(name="digits", image_size=16, val_per_class=20))


@pytest.fixture(scope="module")
def synthetic():
    return build_data(DataConfig(name="synthetic", image_size=16, val_per_class=4,
                                 synthetic_train=64, synthetic_test=16))


# ---- config ----

@pytest.mark.parametrize("kwargs, field", [
    (dict(image_size=0), "image_size"), (dict(test_fraction=1.0), "test_fraction"),
    (dict(val_per_class=0), "val_per_class"), (dict(num_workers=-1), "num_workers"),
    (dict(name="cifar10"), "root"), (dict(name="imagefolder"), "root"),
    (dict(name="mnist"), "name"), (dict(preprocessing="bgr"), "preprocessing"),
])
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"data.{field}="):
        DataConfig(**kwargs)


# ---- digits ----

def test_digits_splits_are_stratified_disjoint_and_fixed(digits):
    b = digits
    assert (b.num_classes, b.in_channels, b.image_size, b.name) == (10, 1, 16, "digits")
    assert len(b.train) + len(b.val) + len(b.test) == 1797
    for ds in (b.train, b.val, b.test):
        assert set(ds.targets) == set(range(10))
    assert all(b.val.targets.count(c) == 20 for c in range(10))
    assert b.val.targets[:20] == list(range(10)) * 2  # any prefix of val is class-balanced
    _assert_disjoint(b)
    again = build_data(DataConfig(name="digits", image_size=16, val_per_class=20))
    for a, c in zip((b.train, b.val, b.test), (again.train, again.val, again.test)):
        assert torch.equal(a.positions, c.positions)
    other = build_data(DataConfig(name="digits", image_size=16, val_per_class=20, split_seed=1))
    assert not torch.equal(other.val.positions, b.val.positions)
    x, y = b.train[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and isinstance(y, int)


def test_digits_val_per_class_too_large_names_the_numbers():
    with pytest.raises(DataError, match="val_per_class=500"):
        build_data(DataConfig(name="digits", image_size=8, val_per_class=500))


def test_digits_spos_is_raw_0_255():
    b = build_data(DataConfig(name="digits", image_size=8, val_per_class=5, preprocessing="spos"))
    x, _ = b.test[0]
    assert x.min() >= 0 and x.max() <= 255 and x.max() > 100


# ---- determinism contract ----

@pytest.mark.parametrize("which", ["digits", "synthetic"])
def test_same_seed_same_tensor_int_index_is_eval(which, request):
    b = request.getfixturevalue(which)
    ds = b.train
    a1, y1 = ds[(3, 123)]
    a2, y2 = ds[(3, 123)]
    assert torch.equal(a1, a2) and y1 == y2
    others = [ds[(3, s)][0] for s in range(10)]
    assert any(not torch.equal(a1, o) for o in others)
    plain = ds.view(ds.positions, augment=False)
    assert torch.equal(ds[3][0], plain[3][0]) and torch.equal(ds[3][0], ds[3][0])
    assert torch.equal(plain[(3, 123)][0], plain[3][0])  # eval splits ignore the seed
    assert torch.equal(b.val[(0, 5)][0], b.val[0][0])


def test_synthetic_splits(synthetic):
    assert (len(synthetic.train), len(synthetic.val), len(synthetic.test)) == (48, 16, 16)
    _assert_disjoint(synthetic)


def test_pad_crop_matches_pad_then_crop():
    x = torch.randint(0, 255, (3, 8, 6), dtype=torch.uint8)
    for pad in (1, 3, 9):  # 9: wider than the image
        for s in range(10):
            g = torch.Generator().manual_seed(s)
            i, j = (int(torch.randint(0, 2 * pad + 1, (1,), generator=g)) for _ in range(2))
            ref = torch.nn.functional.pad(x, (pad,) * 4)[:, i:i + 8, j:j + 6]
            assert torch.equal(pad_crop(x, pad, torch.Generator().manual_seed(s)), ref)


def test_augment_false_ignores_seed():
    b = build_data(DataConfig(name="synthetic", image_size=8, val_per_class=2, augment=False,
                              synthetic_train=16, synthetic_test=4))
    assert torch.equal(b.train[(1, 9)][0], b.train[1][0])


def test_global_rng_untouched(synthetic):
    torch.manual_seed(0)
    before = torch.get_rng_state()
    synthetic.train[(0, 1)]
    assert torch.equal(before, torch.get_rng_state())


# ---- StepBatchSampler ----

def test_step_batches_pure_function_and_resume():
    full = list(StepBatchSampler(30, 8, seed=5, start_step=0, num_steps=12))
    tail = list(StepBatchSampler(30, 8, seed=5, start_step=7, num_steps=5))
    assert len(full) == 12 and tail == full[7:]
    assert list(StepBatchSampler(30, 8, seed=5, start_step=0, num_steps=12)) == full
    assert list(StepBatchSampler(30, 8, seed=6, start_step=0, num_steps=12)) != full
    # 30 // 8 = 3 batches per epoch; each epoch's indices are distinct, and epochs differ.
    epochs = [[i for b in full[e * 3:(e + 1) * 3] for i, _ in b] for e in range(4)]
    assert all(len(set(e)) == 24 and set(e) <= set(range(30)) for e in epochs)
    assert epochs[0] != epochs[1]
    seeds = [s for b in full for _, s in b]
    assert len(set(seeds)) == len(seeds)


def test_step_batches_split_across_ranks():
    one = StepBatchSampler(40, 8, seed=1, start_step=3, num_steps=6)
    ranks = [StepBatchSampler(40, 8, seed=1, start_step=3, num_steps=6, rank=r, world_size=2)
             for r in range(2)]
    for whole, b0, b1 in zip(one, *ranks):
        assert len(b0) == len(b1) == 4
        assert not {i for i, _ in b0} & {i for i, _ in b1}
        assert sorted(b0 + b1) == sorted(whole)


def test_step_batches_errors():
    with pytest.raises(DataError, match="10 images.*batch_size is 16"):
        StepBatchSampler(10, 16, seed=0, start_step=0, num_steps=1)
    with pytest.raises(DataError, match="divisible"):
        StepBatchSampler(40, 9, seed=0, start_step=0, num_steps=1, world_size=2)


def test_train_loader_same_with_workers(synthetic):
    kw = dict(batch_size=8, seed=3, start_step=2, num_steps=3)
    a = list(train_loader(synthetic.train, **kw, num_workers=0))
    b = list(train_loader(synthetic.train, **kw, num_workers=2))
    assert len(a) == len(b) == 3
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == (8, 3, 16, 16) and torch.equal(xa, xb) and torch.equal(ya, yb)


def test_eval_loader_sequential_keeps_last(synthetic):
    batches = list(eval_loader(synthetic.val, batch_size=7))
    assert [len(y) for _, y in batches] == [7, 7, 2]
    assert torch.cat([y for _, y in batches]).tolist() == synthetic.val.targets


def test_fixed_batches_reproducible(synthetic):
    a = fixed_batches(synthetic.train, batch_size=16, num_batches=5, seed=2)  # 80 > 48: cycles
    b = fixed_batches(synthetic.train, batch_size=16, num_batches=5, seed=2)
    c = fixed_batches(synthetic.train, batch_size=16, num_batches=5, seed=3)
    assert len(a) == 5 and a[0][0].shape == (16, 3, 16, 16) and a[0][1].dtype == torch.long
    assert all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])


# ---- CIFAR-10 ----

def _write_cifar(folder, n=20, skip=()):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        if name in skip:
            continue
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": [i % 10 for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)


def test_cifar10_fake_folder_loads(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    b = build_data(DataConfig(name="cifar10", root=str(tmp_path), val_per_class=2))
    assert (len(b.train), len(b.val), len(b.test)) == (80, 20, 20)
    assert (b.num_classes, b.in_channels) == (10, 3) and b.train.classes[0] == "airplane"
    _assert_disjoint(b)
    x, y = b.train[(0, 1)]
    assert x.shape == (3, 32, 32) and 0 <= y < 10
    raw = b.test.images[b.test.positions[0]].float() / 255
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)
    assert torch.allclose(b.test[0][0], (raw - mean) / std)
    spos = build_data(DataConfig(name="cifar10", root=str(tmp_path / "cifar-10-batches-py"),
                                 val_per_class=2, preprocessing="spos"))
    assert torch.equal(spos.test[0][0], b.test.images[b.test.positions[0]].flip(0).float())
    big = build_data(DataConfig(name="cifar10", root=str(tmp_path), val_per_class=2, image_size=40))
    assert big.train[(0, 1)][0].shape == (3, 40, 40) and big.test[0][0].shape == (3, 40, 40)


def test_cifar10_missing_batch(tmp_path):
    _write_cifar(tmp_path, skip=("data_batch_3",))
    with pytest.raises(DataError, match="data_batch_3"):
        build_data(DataConfig(name="cifar10", root=str(tmp_path), val_per_class=2))
    with pytest.raises(DataError, match="data_batch_1.*test_batch"):
        build_data(DataConfig(name="cifar10", root=str(tmp_path / "nowhere"), val_per_class=2))


def test_cifar10_refuses_arbitrary_pickles(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": __import__("collections").OrderedDict()}, f)
    with pytest.raises(DataError, match="data_batch_2"):
        build_data(DataConfig(name="cifar10", root=str(tmp_path), val_per_class=2))


# ---- image folder ----

COLOURS = {"cat": (10, 200, 30), "dog": (250, 5, 120)}


def _write_folder(root, n_train=4, n_val=2):
    for split, n in (("train", n_train), ("val", n_val)):
        for cls, rgb in COLOURS.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                img = Image.new("RGB", (40 + 4 * i, 30), rgb)  # solid colour, varied shapes
                img.save(d / (f"{i}.png" if i % 2 == 0 else f"{i}.JPEG"))


def test_imagefolder_loads_and_transforms(tmp_path):
    _write_folder(tmp_path)
    cfg = DataConfig(name="imagefolder", root=str(tmp_path), val_per_class=1, image_size=24)
    b = build_data(cfg)
    assert b.train.classes == ["cat", "dog"] and b.num_classes == 2 and b.in_channels == 3
    assert (len(b.train), len(b.val), len(b.test)) == (6, 2, 4)
    assert sorted(b.test.targets) == [0, 0, 1, 1]
    assert not _positions(b.train) & _positions(b.val)
    assert b.test[0][0].shape == (3, 24, 24)
    x1, x2 = b.train[(0, 11)][0], b.train[(0, 11)][0]
    assert x1.shape == (3, 24, 24) and torch.equal(x1, x2)
    assert torch.equal(b.train[0][0], b.train.view(b.train.positions, augment=False)[0][0])


def test_imagefolder_spos_is_bgr_0_255(tmp_path):
    _write_folder(tmp_path)
    b = build_data(DataConfig(name="imagefolder", root=str(tmp_path), val_per_class=1,
                              image_size=16, preprocessing="spos"))
    path, label = b.test.samples[0]
    assert path.endswith(".png")
    r, g, bl = Image.open(path).convert("RGB").getpixel((0, 0))
    x, _ = b.test[0]
    assert x.shape == (3, 16, 16)
    assert torch.equal(x, torch.tensor([bl, g, r], dtype=torch.float32).view(3, 1, 1).expand(3, 16, 16))


def test_random_resized_crop_size_and_bounds():
    img = Image.new("RGB", (50, 20), (1, 2, 3))
    for s in range(20):
        gen = torch.Generator().manual_seed(s)
        top, left, h, w = random_resized_crop_params(50, 20, gen)
        assert 0 <= top and top + h <= 20 and 0 <= left and left + w <= 50
        assert random_resized_crop(img, 12, torch.Generator().manual_seed(s)).size == (12, 12)
    # An impossible scale range forces the centre-crop fallback.
    assert random_resized_crop_params(100, 10, torch.Generator(), scale=(5.0, 6.0)) == (0, 43, 10, 13)


def test_imagefolder_missing_or_empty(tmp_path):
    with pytest.raises(DataError, match="train"):
        build_data(DataConfig(name="imagefolder", root=str(tmp_path)))
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        build_data(DataConfig(name="imagefolder", root=str(tmp_path)))
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(DataError, match="cat"):
        build_data(DataConfig(name="imagefolder", root=str(tmp_path)))


def test_imagefolder_val_classes_must_match(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "val" / "cow").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "cow" / "a.png")
    with pytest.raises(DataError, match="cow"):
        build_data(DataConfig(name="imagefolder", root=str(tmp_path), val_per_class=1))


def test_imagefolder_corrupt_file(tmp_path):
    _write_folder(tmp_path)
    bad = tmp_path / "train" / "cat" / "x.jpg"
    bad.write_bytes(b"this is not a jpeg" * 10)
    cfg = dict(name="imagefolder", root=str(tmp_path), val_per_class=1, image_size=16)
    b = build_data(DataConfig(**cfg))
    i = [p for p, _ in b.train.samples].index(str(bad))
    pos = b.train.positions.tolist()
    ds = b.train if i in pos else b.val
    with pytest.raises(DataError, match="x.jpg"):
        ds[(ds.positions.tolist().index(i), 0)]
    b = build_data(DataConfig(**cfg, skip_corrupt=True))
    assert b.train.skipped == [str(bad)] and b.test.skipped == []
    assert len(b.train) + len(b.val) == 8
    assert all(p != str(bad) for p, _ in b.train.samples)


# ---- compact storage for the search ----

def _bundles(tmp_path):
    _write_cifar(tmp_path / "cifar")
    _write_folder(tmp_path / "folder", n_train=6)
    for pre in ("standard", "spos"):
        yield torch.uint8, build_data(DataConfig(name="cifar10", root=str(tmp_path / "cifar"), val_per_class=2, preprocessing=pre))
        yield torch.uint8, build_data(DataConfig(name="imagefolder", root=str(tmp_path / "folder"), val_per_class=1,
                                             image_size=24, preprocessing=pre))
        yield torch.float32, build_data(DataConfig(name="digits", image_size=16, val_per_class=20, preprocessing=pre))
    yield torch.float32, build_data(DataConfig(name="cifar10", root=str(tmp_path / "cifar"), val_per_class=2, image_size=40))


def test_compact_batches_finish_to_exactly_the_dataset_values(tmp_path):
    """The search keeps raw images and finishes whole batches; that must equal finishing each image
    alone, bit for bit, for every dataset and preprocessing, in both memory layouts."""
    for dtype, b in _bundles(tmp_path):
        train, val = Compact(b.train), Compact(b.val)
        raw = fixed_batches(train, batch_size=4, num_batches=3, seed=5)
        full = fixed_batches(b.train, batch_size=4, num_batches=3, seed=5)
        assert raw[0][0].dtype == dtype
        for (r, ry), (f, fy) in zip(raw, full):
            assert torch.equal(train.finish(r), f) and torch.equal(ry, fy)
            cl = train.finish(r.contiguous(memory_format=torch.channels_last))
            assert torch.equal(cl, f)
        (rv, _), = eval_loader(val, batch_size=len(val))
        assert torch.equal(val.finish(rv), torch.stack([b.val[i][0] for i in range(len(b.val))]))


def test_fixed_batches_same_with_workers(synthetic):
    a = fixed_batches(Compact(synthetic.train), batch_size=8, num_batches=3, seed=1)
    b = fixed_batches(Compact(synthetic.train), batch_size=8, num_batches=3, seed=1, num_workers=2)
    assert all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))


def test_compact_needs_raw_and_finish():
    with pytest.raises(TypeError, match="raw"):
        Compact(torch.utils.data.TensorDataset(torch.zeros(2, 1)))
