"""cluttered-digits: the digits split first, each copy a digit at its own place among pieces of
digits of its own split, the same images every run."""
import pytest
import torch

from supernet.data import DataConfig, build_data
from supernet.data.datasets import _clutter


def _config(**kw):
    return DataConfig(**{"name": "cluttered-digits", "image_size": 12, "test_fraction": 0.5, "val_per_class": 5, **kw})


@pytest.fixture(scope="module")
def clean():
    """No pieces, no noise: every canvas is its digit on black."""
    return build_data(_config(clutter_copies=2, clutter_fragments=0, clutter_noise=0.0))


def test_sizes_splits_and_determinism(clean):
    b = build_data(_config(clutter_copies=3))
    assert (b.num_classes, b.in_channels, b.image_size, b.name) == (10, 1, 12, "cluttered-digits")
    assert len(b.train) + len(b.val) + len(b.test) == 3 * 1797
    assert len(b.val) == 3 * 5 * 10 and len(b.test) == 3 * 898 and len(clean.test) == 2 * 898
    sets = [set(d.positions.tolist()) for d in (b.train, b.val, b.test)]
    assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
    again = build_data(_config(clutter_copies=3))
    assert torch.equal(again.train.images, b.train.images) and torch.equal(again.train.labels, b.train.labels)
    other = build_data(_config(clutter_copies=3, split_seed=1))
    assert not torch.equal(other.train.images, b.train.images)
    x, y = b.train[0]
    assert x.shape == (1, 12, 12) and isinstance(y, int)


def test_each_canvas_is_its_digit_at_some_place(clean):
    """Without pieces or noise, each canvas holds one 8x8 window equal to a digit of its label
    and nothing outside it; the copies of one digit sit at different places."""
    from supernet.data.datasets import _digits_arrays
    data, target = _digits_arrays()
    digits = torch.as_tensor(data, dtype=torch.float32).view(-1, 8, 8) / 16.0
    by_label = {c: digits[torch.as_tensor(target) == c] for c in range(10)}
    images, labels = clean.train.images[:, 0], clean.train.labels
    for i in range(0, len(images), 97):
        img, found = images[i], False
        for r in range(5):
            for c in range(5):
                window = img[r:r + 8, c:c + 8]
                outside = img.clone()
                outside[r:r + 8, c:c + 8] = 0
                if outside.abs().sum() == 0 and (by_label[int(labels[i])] - window).abs().amax((1, 2)).min() == 0:
                    found = True
        assert found, f"canvas {i} is not a digit of label {int(labels[i])} on black"


def test_pieces_come_from_the_pool_and_the_digit_wins_by_brightness():
    """A digit of 0.5 everywhere among pieces of a pool digit of 1.0 everywhere: the 1.0 pixels
    are the pieces (whole 4x4 blocks, at most ``fragments`` of them), the rest of the 8x8 digit
    stays 0.5, and nothing else is lit."""
    digits = torch.stack([torch.full((8, 8), 0.5), torch.ones(8, 8)])
    gen = torch.Generator().manual_seed(0)
    m, fragments = 50, 3
    canvas = _clutter(digits, torch.zeros(m, dtype=torch.long), torch.ones(1, dtype=torch.long), 14, fragments,
                      0.0, gen)[:, 0]
    for img in canvas:
        ones = int((img == 1.0).sum())
        assert 16 <= ones <= fragments * 16
        half = (img == 0.5)
        assert 64 - fragments * 16 <= int(half.sum()) <= 64
        assert int((img > 0).sum()) == ones + int(half.sum())


def test_noise_changes_pixels_within_bounds(clean):
    noisy = build_data(_config(clutter_copies=2, clutter_fragments=0, clutter_noise=0.2))
    assert noisy.train.images.min() >= 0 and noisy.train.images.max() <= 1
    assert (noisy.train.images - clean.train.images).abs().mean() > 0.05


@pytest.mark.parametrize("kwargs, field", [
    (dict(clutter_copies=0), "clutter_copies"), (dict(clutter_fragments=-1), "clutter_fragments"),
    (dict(clutter_noise=2.0), "clutter_noise"), (dict(image_size=6), "image_size"),
])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"data.{field}="):
        _config(**kwargs)


def test_settings_of_cluttered_digits_are_refused_elsewhere():
    with pytest.raises(ValueError, match="data.clutter_noise=0.2 .*only to data.name=cluttered-digits"):
        DataConfig(name="digits", clutter_noise=0.2)
