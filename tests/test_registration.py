"""Co-registration: phase correlation finds a reference's translation on real imagery,
refuses to move one that does not match, and moves pixels without resampling them."""

import pytest
import torch

from rrsgan_geo.model.degradation import down_up_4x, upsample_4x
from rrsgan_geo.sr.registration import MIN_PEAK_STRENGTH, co_registered, estimate_shift, shifted
from rrsgan_geo.training.data import RefSRDataset, find_samples
from tests.conftest import SHARED
from tests.folders import make_refsr_folder
from tests.rasters import neon_path, read_unit


@pytest.fixture(scope="module")
def neon() -> torch.Tensor:
    """The CC0 NEON image, 3 x 400 x 400 in [0, 1]."""
    return read_unit(neon_path())


def scene_and_reference(neon: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, ...]:
    """LR_UX4 of a 256^2 crop, and as reference the content `rows` below and `cols` right
    of the crop, recoloured: pixel (y, x) of it belongs at (y + rows, x + cols)."""
    hr = neon[:, 64:320, 64:320]
    lr_ux4 = upsample_4x(torch.nn.functional.avg_pool2d(hr[None], 4))[0]
    moved = neon[:, 64 + rows : 320 + rows, 64 + cols : 320 + cols]
    reference = (moved**1.1 * torch.tensor([0.92, 1.0, 1.08])[:, None, None]).clamp(0, 1)
    return hr, lr_ux4, reference


@pytest.mark.parametrize("rows, cols", [(3, -2), (-7, 11), (0, 0)])
def test_a_recoloured_reference_is_found_where_it_lies(neon, rows, cols):
    _, lr_ux4, reference = scene_and_reference(neon, rows, cols)
    shift = estimate_shift(lr_ux4, down_up_4x(reference[None])[0])
    assert (shift.rows, shift.cols) == (rows, cols)
    assert shift.reliable and shift.strength > 2 * MIN_PEAK_STRENGTH


def test_moving_the_reference_lines_it_up_with_the_truth(neon):
    hr, lr_ux4, reference = scene_and_reference(neon, 3, -2)
    aligned, shift = co_registered(lr_ux4, reference)
    recoloured_truth = (hr**1.1 * torch.tensor([0.92, 1.0, 1.08])[:, None, None]).clamp(0, 1)
    # Pixels are moved, not resampled: the interior is the recoloured truth exactly.
    torch.testing.assert_close(aligned[:, 8:-8, 8:-8], recoloured_truth[:, 8:-8, 8:-8])
    # What the move uncovers is LR_UX4, as where a reference is missing.
    torch.testing.assert_close(aligned[:, :3], lr_ux4[:, :3])
    assert (shift.rows, shift.cols) == (3, -2)


def test_an_unrelated_reference_is_not_moved(neon):
    _, lr_ux4, _ = scene_and_reference(neon, 0, 0)
    elsewhere = neon[:, 144:400, 144:400].flip(-1)
    aligned, shift = co_registered(lr_ux4, elsewhere)
    assert not shift.reliable
    assert aligned is elsewhere


def test_shifts_beyond_the_search_range_are_not_looked_for(neon):
    _, lr_ux4, reference = scene_and_reference(neon, 0, 20)
    shift = estimate_shift(lr_ux4, down_up_4x(reference[None])[0], max_shift=8)
    assert abs(shift.rows) <= 8 and abs(shift.cols) <= 8
    assert not shift.reliable


def test_shifted_fills_what_it_uncovers():
    image = torch.arange(16.0).reshape(1, 4, 4)
    fill = torch.full_like(image, -1.0)
    moved = shifted(image, 1, -2, fill)
    expected = torch.tensor(
        [[-1, -1, -1, -1], [2, 3, -1, -1], [6, 7, -1, -1], [10, 11, -1, -1]], dtype=torch.float32
    )
    torch.testing.assert_close(moved[0], expected)
    assert shifted(image, 0, 0, fill) is image


def test_the_training_data_moves_references_onto_their_samples(tmp_path):
    """make_refsr_folder's references show what lies 3 px lower and 2 px further right
    in the HR, recoloured (x 0.9 + 10)."""
    samples = find_samples(make_refsr_folder(tmp_path, count=2, hr_size=128))
    moved = RefSRDataset(samples)
    as_is = RefSRDataset(samples, co_register=False)
    for index in range(2):
        hr = moved[index]["HR"][:, 8:-8, 8:-8]
        error_moved = (moved[index]["Ref"][:, 8:-8, 8:-8] * 255 - (hr * 255 * 0.9 + 10)).abs()
        error_as_is = (as_is[index]["Ref"][:, 8:-8, 8:-8] * 255 - (hr * 255 * 0.9 + 10)).abs()
        assert error_moved.max() <= 1.0  # the reference's own rounding
        assert error_as_is.mean() > 5 * error_moved.mean()


def test_the_trusted_strength_separates_real_references_from_other_places():
    """On RRSSRD area A (first date), no LR reaches MIN_PEAK_STRENGTH against another
    place's Google Earth reference, while most LRs do against their own (at 10, the
    earlier threshold, only 12 of 40 did; 7 admits 24 and no other place)."""
    folder = SHARED / "data" / "rrssrd_val" / "val_1st"
    if not folder.is_dir():
        pytest.skip(f"shared RRSSRD pairs absent ({folder})")

    # LR_UX4 and Ref_DUX4 as the data set makes them for the model, references as given.
    data = RefSRDataset(find_samples(folder), co_register=False)
    samples = [data[index] for index in range(len(data))]
    lr_ux4 = [sample["LR_UX4"] for sample in samples]
    refs = [sample["Ref_DUX4"] for sample in samples]
    own = [estimate_shift(lr_ux4[i], refs[i]).strength for i in range(len(samples))]
    others = [
        estimate_shift(lr_ux4[i], refs[(i + k) % len(samples)]).strength
        for i in range(len(samples))
        for k in (1, 13, 29)
    ]
    assert max(others) < MIN_PEAK_STRENGTH - 1, max(others)
    assert sum(s >= MIN_PEAK_STRENGTH for s in own) >= len(samples) // 2, sorted(own)
