"""The training data set and the evaluation metrics."""

import math

import numpy as np
import pytest
import torch

from rrsgan_geo.model.degradation import _phase_taps, bicubic_resize, downsample_4x, upsample_4x
from rrsgan_geo.training.data import RefSRDataset, find_samples, place_key, spatial_split
from rrsgan_geo.training.metrics import Scorer, psnr, rgb_to_y, ssim
from tests.conftest import SHARED
from tests.folders import make_refsr_folder

RRSSRD = SHARED / "data" / "rrssrd_val"


@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (1, 3, 40, 200), (1, 1, 1, 1), (3, 2, 2, 9)])
def test_fast_4x_upsampling_equals_torchs_bicubic(shape):
    """The phase-filter upsampling is torch's bicubic (align_corners=False, edges
    replicated), edges, 1-pixel images and values outside [0, 1] included."""
    images = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.3
    torch.testing.assert_close(upsample_4x(images), bicubic_resize(images, 4.0), atol=1e-6, rtol=0)
    as_float64 = images.double()
    torch.testing.assert_close(
        upsample_4x(as_float64), bicubic_resize(as_float64, 4.0), atol=1e-12, rtol=0
    )


def test_fast_4x_upsampling_is_the_plain_five_tap_sum_to_the_bit():
    """Skipping each phase's zero tap and writing phases into their output rows changes
    no value: the same sums as all five taps added in order, phases interleaved after
    (the training data and `sr` must get the same LR_UX4 as before)."""
    images = torch.rand(2, 3, 9, 13, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(images.reshape(6, 1, 9, 13), (2, 2, 2, 2), mode="replicate")

    def plain(planes, dim):
        size = planes.shape[dim] - 4
        phases = []
        for taps in _phase_taps():
            phase = planes.narrow(dim, 0, size) * taps[0]
            for offset in range(1, 5):
                phase.add_(planes.narrow(dim, offset, size), alpha=taps[offset])
            phases.append(phase)
        return torch.stack(phases, dim=dim).flatten(dim - 1, dim)

    expected = plain(plain(padded[:, 0], -1), -2).reshape(2, 3, 36, 52).clamp(0.0, 1.0)
    assert torch.equal(upsample_4x(images), expected)


def test_random_crops_are_aligned_five_tuples(tmp_path):
    dataset = RefSRDataset(find_samples(make_refsr_folder(tmp_path)))
    batch = dataset.batch(6, 8, seed=0, step=0)  # several draws: flips and rotations included
    for index in range(6):
        crop = {k: v[index] for k, v in batch.items()}
        assert crop["LR"].shape == (3, 8, 8)
        assert all(crop[k].shape == (3, 32, 32) for k in ("HR", "LR_UX4", "Ref", "Ref_DUX4"))
        # The LR was made from HR by the shared degradation: a crop of HR, downsampled,
        # is the same crop of LR (interior: the resize kernel reaches past a crop edge).
        down = downsample_4x(crop["HR"][None])[0]
        assert torch.abs(down - crop["LR"])[:, 2:-2, 2:-2].max() < 1.5 / 255
        # LR_UX4 is the shared upsampling of LR, under the same flips and rotation.
        up = upsample_4x(crop["LR"][None])[0]
        assert torch.abs(up - crop["LR_UX4"])[:, 8:-8, 8:-8].max() < 1e-5


def test_batches_are_a_function_of_seed_and_step(tmp_path):
    dataset = RefSRDataset(find_samples(make_refsr_folder(tmp_path)))
    first, again = dataset.batch(2, 8, seed=1, step=5), dataset.batch(2, 8, seed=1, step=5)
    other = dataset.batch(2, 8, seed=1, step=6)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["HR"], other["HR"])


def test_spatial_split_keeps_places_and_dates_together():
    if not RRSSRD.is_dir():
        pytest.skip(f"shared RRSSRD pairs absent ({RRSSRD})")
    samples = find_samples(RRSSRD / "val_1st") + find_samples(RRSSRD / "val_2nd")
    train, val = spatial_split(samples, 0.25, 32, seed=0)
    assert len(train) + len(val) == 80 and val
    train_keys = {place_key(s.name, 32) for s in train}
    assert not train_keys & {place_key(s.name, 32) for s in val}
    # Both dates of each held-out place are held out.
    assert sorted(s.name for s in val if s.folder.name == "val_1st") == sorted(
        s.name for s in val if s.folder.name == "val_2nd"
    )


def test_psnr_on_a_hand_built_case():
    """Grey images off by 2/255 in R, G and B: Y differs by 219 * 2 / 255 everywhere."""
    hr = torch.full((3, 24, 24), 100 / 255)
    sr = hr + 2 / 255
    expected = 20 * math.log10(255 / (219 * 2 / 255))
    assert psnr(sr, hr) == pytest.approx(expected, abs=1e-6)
    assert psnr(sr, hr, y_channel=False) == pytest.approx(20 * math.log10(255 / 2), abs=1e-6)
    assert psnr(hr, hr) == math.inf
    assert ssim(hr, hr) == pytest.approx(1.0)


def _authors_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """The authors' `calculate_ssim` for H x W x 3 uint8 images, written out with an
    explicit 11 x 11 Gaussian window (their cv2.filter2D over the valid region), per
    channel, averaged."""
    coords = np.arange(11) - 5
    kernel = np.exp(-(coords**2) / (2 * 1.5**2))
    window = np.outer(kernel, kernel) / kernel.sum() ** 2
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def local_mean(image):
        patches = np.lib.stride_tricks.sliding_window_view(image, (11, 11))
        return np.einsum("ijkl,kl->ij", patches, window)

    scores = []
    for channel in range(3):
        x, y = a[..., channel].astype(np.float64), b[..., channel].astype(np.float64)
        mu_x, mu_y = local_mean(x), local_mean(y)
        var_x = local_mean(x * x) - mu_x**2
        var_y = local_mean(y * y) - mu_y**2
        cov = local_mean(x * y) - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
            (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
        )
        scores.append(ssim_map.mean())
    return float(np.mean(scores))


def test_rgb_ssim_equals_the_authors_formula():
    """Our separable, batched SSIM against the authors' 2-D window on noisy images
    (4-pixel border cropped first, as their val.py does)."""
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-80, 81, hr.shape), 0, 255).astype(np.uint8)
    to_tensor = lambda image: torch.from_numpy(image).permute(2, 0, 1).double() / 255  # noqa: E731
    expected = _authors_ssim(sr[4:-4, 4:-4], hr[4:-4, 4:-4])
    assert 0.3 < expected < 0.95
    assert ssim(to_tensor(sr), to_tensor(hr), y_channel=False) == pytest.approx(expected, abs=1e-12)


def _independent_psnr_y(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """Straight from the formulas, in numpy (H x W x 3, uint8)."""

    def y(image):
        return image.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255 + 16

    diff = (y(a) - y(b))[border:-border, border:-border]
    return 10 * np.log10(255**2 / np.mean(diff**2))


def test_bicubic_psnr_on_rrssrd_matches_an_independent_computation():
    if not RRSSRD.is_dir():
        pytest.skip(f"shared RRSSRD pairs absent ({RRSSRD})")
    dataset = RefSRDataset(find_samples(RRSSRD / "val_1st")[:3])
    for index in range(len(dataset)):
        item = dataset[index]
        to_uint8 = lambda t: (t.double().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()  # noqa: E731
        expected = _independent_psnr_y(to_uint8(item["LR_UX4"]), to_uint8(item["HR"]), 4)
        assert psnr(item["LR_UX4"], item["HR"]) == pytest.approx(expected, abs=1e-9)
        assert 20 < expected < 45
    assert rgb_to_y(torch.ones(3, 1, 1)).item() == pytest.approx(235.0)


def test_a_scorer_reuses_its_hr_and_scores_as_a_fresh_one():
    """`evaluate` scores four methods against one HR with one Scorer: what it caches
    (the HR's planes and SSIM statistics) must not leak from one image into the next."""
    torch.manual_seed(0)
    hr = torch.rand(3, 48, 48)
    first, second = ((hr + 0.1 * torch.randn(3, 48, 48)).clamp(0, 1) for _ in range(2))
    scorer = Scorer(hr)
    for y_channel in (False, True):
        scorer.psnr(first, y_channel), scorer.ssim(first, y_channel)
        assert scorer.psnr(second, y_channel) == psnr(second, hr, y_channel=y_channel)
        assert scorer.ssim(second, y_channel) == ssim(second, hr, y_channel=y_channel)
    assert scorer.ssim(hr) == 1.0 and scorer.psnr(hr) == float("inf")
