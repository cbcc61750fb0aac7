"""Reference-aware training data: synthetic references, sources, batches per rank."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model import GeneratorConfig, RRSNet
from rrsgan_geo.model.degradation import down_up_4x, upsample_4x
from rrsgan_geo.training.data import ReferenceConfig, RefSRDataset, find_samples
from rrsgan_geo.training.reference_synthesis import (
    Distortion,
    SyntheticReferenceConfig,
    displacement,
    draw_distortion,
    synthesize,
)
from tests.folders import make_refsr_folder

NO_DISTORTION = dict(
    max_shift=0,
    elastic=0,
    max_rotation_deg=0,
    max_scale=0,
    gamma=[1, 1],
    gain=0,
    offset=0,
    haze=0,
    max_blur_sigma=0,
    jpeg_probability=0,
    replace_probability=0,
)


def _hr(size: int = 96) -> torch.Tensor:
    """A real image: the CC0 NEON mosaic shipped in examples/, via the test folder."""
    import rasterio

    from tests.rasters import neon_path

    with rasterio.open(neon_path()) as src:
        return torch.from_numpy(src.read()[:, 100 : 100 + size, 120 : 120 + size]).float() / 255


def test_the_identity_distortion_returns_the_hr():
    hr = _hr()
    torch.testing.assert_close(synthesize(hr, Distortion()), hr, atol=1e-5, rtol=0)


def test_an_integer_shift_moves_the_image_by_that_many_pixels():
    hr = _hr()
    ref = synthesize(hr, Distortion(shift=(3.0, -2.0)))
    # ref[y, x] = hr[y - 2, x + 3]
    torch.testing.assert_close(ref[:, 2:, :-3], hr[:, :-2, 3:], atol=1e-5, rtol=0)


def test_random_distortions_stay_within_their_bound():
    config = SyntheticReferenceConfig()
    generator = torch.Generator().manual_seed(0)
    size = 96
    bound = config.displacement_bound(size / 2)
    assert bound < 20  # a few pixels of shift, elastic and rotation, not a scramble
    largest = 0.0
    for _ in range(30):
        distortion = draw_distortion(config, generator)
        assert math.hypot(*distortion.shift) <= config.max_shift + 1e-9
        moved = displacement(distortion, size, size).norm(dim=0).max().item()
        largest = max(largest, moved)
        assert moved <= bound
    assert largest > config.max_shift / 2  # the draws do move things


def test_synthetic_references_change_colour_detail_and_content():
    hr = _hr()
    generator = torch.Generator().manual_seed(3)
    config = SyntheticReferenceConfig(jpeg_probability=1, replace_probability=1)
    donor = torch.flip(hr, (1, 2))
    for _ in range(4):
        ref = synthesize(hr, draw_distortion(config, generator), donor)
        assert ref.shape == hr.shape and ref.min() >= 0 and ref.max() <= 1
        assert (ref - hr).abs().mean() > 0.01


def test_reference_sources_and_the_curriculum():
    config = ReferenceConfig.from_dict(
        {
            "sources": {"real": 1, "synthetic": 1},
            "sources_end": {"synthetic": 1, "none": 3},
            "curriculum_steps": 100,
            "synthetic_start_strength": 0.25,
            "synthetic": {"max_shift": 8, "gamma": [0.6, 1.4]},
        }
    )
    easy, halfway, full = (config.synthetic_at(step) for step in (0, 50, 100))
    assert easy.max_shift == 2 and easy.gamma == pytest.approx((0.9, 1.1))
    assert halfway.max_shift == pytest.approx(5)
    assert full == config.synthetic
    assert config.probabilities(0) == pytest.approx([0.5, 0, 0.5, 0])
    assert config.probabilities(50) == pytest.approx([0.25, 0, 0.375, 0.375])
    assert config.probabilities(500) == pytest.approx([0, 0, 0.25, 0.75])
    with pytest.raises(ConfigError, match="unknown cloud"):
        ReferenceConfig.from_dict({"sources": {"cloud": 1}})
    with pytest.raises(ConfigError, match="unknown key"):
        ReferenceConfig.from_dict({"synthetic": {"max_shfit": 3}})


def _two_dates(tmp_path):
    first = make_refsr_folder(tmp_path / "date1", count=3)
    second = make_refsr_folder(tmp_path / "date2", count=3)
    for path in (second / "HR").iterdir():  # the second date: the same places, changed
        image = np.asarray(Image.open(path))
        Image.fromarray(255 - image).save(path)
    return RefSRDataset(find_samples(first) + find_samples(second))


def test_each_source_gives_the_reference_it_names(tmp_path):
    dataset = _two_dates(tmp_path)

    def batch_of(source: str, **synthetic):
        reference = ReferenceConfig.from_dict({"sources": {source: 1}, "synthetic": synthetic})
        return dataset.batch(4, 12, seed=0, step=0, reference=reference)

    none = batch_of("none")
    torch.testing.assert_close(none["Ref"], none["LR_UX4"])
    # Ref_DUX4 is made from the reference with context: away from the crop's edges it
    # equals the reference blurred here (the resizes reach 16 HR px).
    torch.testing.assert_close(
        none["Ref_DUX4"][..., 16:-16, 16:-16],
        down_up_4x(none["Ref"])[..., 16:-16, 16:-16],
        atol=1e-5,
        rtol=0,
    )
    identity = batch_of("synthetic", **NO_DISTORTION)
    torch.testing.assert_close(identity["Ref"], identity["HR"], atol=1e-5, rtol=0)
    other = batch_of("other_date")  # the HR of the other date: inverted here
    torch.testing.assert_close(other["Ref"], 1 - other["HR"], atol=1e-5, rtol=0)
    real = batch_of("real")
    assert not torch.allclose(real["Ref"], real["HR"], atol=0.01)


def test_crops_are_degraded_as_the_whole_image_is(tmp_path):
    dataset = _two_dates(tmp_path)
    batch = dataset.batch(6, 8, seed=2, step=1)
    torch.testing.assert_close(
        upsample_4x(batch["LR"])[..., 8:-8, 8:-8],
        batch["LR_UX4"][..., 8:-8, 8:-8],
        atol=1e-5,
        rtol=0,
    )


def test_ranks_split_one_global_batch(tmp_path):
    dataset = _two_dates(tmp_path)
    reference = ReferenceConfig.from_dict({"sources": {"real": 1, "synthetic": 1, "none": 1}})
    whole = dataset.batch(4, 8, seed=5, step=7, reference=reference)
    parts = [
        dataset.batch(4, 8, seed=5, step=7, reference=reference, rank=r, world_size=2)
        for r in (0, 1)
    ]
    for key, value in whole.items():
        torch.testing.assert_close(torch.cat([p[key] for p in parts]), value)
    with pytest.raises(ConfigError, match="divisible"):
        dataset.batch(3, 8, seed=5, step=7, world_size=2)


def test_a_fresh_generator_listens_to_its_reference():
    """At random initialisation, swapping the reference moves the output's residual at
    least a fifth as much as swapping the LR (it was 1/60 with default initialisation:
    aligned reference features reached the relevance attention far below the content)."""
    torch.manual_seed(0)
    model = RRSNet(GeneratorConfig(nf=16, n_blocks=2, groups=4)).eval()
    hr = torch.stack([_hr(), torch.flip(_hr(), (1,))])
    lr = torch.nn.functional.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True)

    def residual(lr, ref):
        base = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bilinear")
        return model(lr, upsample_4x(lr), ref, down_up_4x(ref)) - base

    with torch.no_grad():
        both = residual(lr, hr)
        ref_swapped = (both - residual(lr, hr.flip(0))).abs().mean()
        lr_swapped = (both - residual(lr.flip(0), hr)).abs().mean()
    assert ref_swapped > 0.2 * lr_swapped


def test_replaced_tells_where_a_synthetic_reference_took_another_places_texture(tmp_path):
    """With replacement alone (no other distortion) a synthetic reference equals the HR
    where `Replaced` is 0, is another place's texture where it is 1, and only the
    synthetic source marks anything."""
    dataset = _two_dates(tmp_path)
    only_replaced = {**NO_DISTORTION, "replace_probability": 1.0, "cloud_probability": 0.0}
    only_replaced["max_replaced_fraction"] = 0.5
    reference = ReferenceConfig.from_dict({"sources": {"synthetic": 1}, "synthetic": only_replaced})
    batch = dataset.batch(6, 16, seed=0, step=0, reference=reference)
    replaced = batch["Replaced"]
    assert replaced.shape == (6, 1, *batch["HR"].shape[-2:])
    intact, swapped = replaced == 0, replaced == 1
    assert intact.any() and swapped.any()
    difference = (batch["Ref"] - batch["HR"]).abs().amax(dim=1, keepdim=True)
    assert float(difference[intact].max()) < 1e-4
    assert float(difference[swapped].mean()) > 0.02
    for source in ("none", "real", "other_date"):
        plain = ReferenceConfig.from_dict({"sources": {source: 1}})
        assert not dataset.batch(2, 8, seed=0, step=0, reference=plain)["Replaced"].any()
