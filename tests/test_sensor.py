"""The sensor model (`sensor`), the scene-blur estimate (`scene_blur`) and the model's
blur input, on the CC0 NEON mosaic (and RRSSRD's two dates where the shared data is)."""

import json
import math
from dataclasses import replace

import pytest
import safetensors
import torch

from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model import RRSNet, with_bicubic_expert, with_blur_conditioning
from rrsgan_geo.model.degradation import down_up_4x, downsample_4x
from rrsgan_geo.model.generator import relevance_kept
from rrsgan_geo.model.sensor import (
    BICUBIC,
    EVALUATION_SENSOR,
    SensorModel,
    TrainingDraws,
    degrade,
    optics,
    psf_kernel,
    reference_dux4,
    sigma_from_mtf,
)
from rrsgan_geo.model.weight_files import (
    WeightsMetadata,
    infer_config,
    load_generator,
    save_weights,
)
from rrsgan_geo.sr.registration import co_registered
from rrsgan_geo.sr.scene_blur import (
    DEFAULT_SIGMA,
    BlurWindow,
    area_sensor,
    estimate_scene_blur,
    given_scene_blur,
)
from rrsgan_geo.training.data import ReferenceConfig, RefSRDataset, _to_tensor, find_samples
from tests.conftest import COMPACT, SHARED
from tests.folders import make_refsr_folder
from tests.rasters import neon_path, read_unit


@pytest.fixture(scope="module")
def neon() -> torch.Tensor:
    """The 400 x 400 NEON mosaic (10 cm), 1 x 3 x H x W in [0, 1]."""
    return read_unit(neon_path())[None]


def test_bicubic_sensor_is_the_data_sets_degradation(neon):
    assert torch.equal(optics(neon, BICUBIC), downsample_4x(neon))
    assert torch.equal(reference_dux4(neon, BICUBIC), down_up_4x(neon))


def test_degrade_is_deterministic_from_its_seed_and_quantised(neon):
    crop = neon[..., :128, :128]
    first, again = degrade(crop, EVALUATION_SENSOR, seed=3), degrade(crop, EVALUATION_SENSOR, 3)
    other = degrade(crop, EVALUATION_SENSOR, seed=4)
    assert first.shape == (1, 3, 32, 32) and torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal((first * 255).round(), first * 255)  # 8-bit levels
    # The sensor-like LR is softer than the data set's bicubic one.
    assert _sharpness(first) < _sharpness(degrade(crop, BICUBIC))


def _sharpness(image: torch.Tensor) -> float:
    return float(image.diff(dim=-1).pow(2).mean() / image.var())


@pytest.mark.parametrize("angle, wider", [(0.0, "x"), (90.0, "y")])
def test_an_elongated_psf_points_where_its_angle_says(angle, wider):
    kernel = psf_kernel(SensorModel(psf_sigma=1.0, psf_sigma_minor=0.5, psf_angle_deg=angle))
    assert math.isclose(float(kernel.sum()), 1.0, rel_tol=1e-5)
    steps = torch.arange(kernel.shape[0]) - kernel.shape[0] // 2
    spread_x = float((kernel.sum(0) * steps**2).sum())
    spread_y = float((kernel.sum(1) * steps**2).sum())
    assert (spread_x > 2 * spread_y) if wider == "x" else (spread_y > 2 * spread_x)


def test_sigma_from_mtf_inverts_the_gaussian_times_the_detectors_mtf():
    for sigma in (0.3, 0.6, 1.0):
        mtf = (2 / math.pi) * math.exp(-(math.pi**2) * sigma**2 / 2)
        assert math.isclose(sigma_from_mtf(mtf), sigma, rel_tol=1e-9)
    with pytest.raises(ConfigError, match="MTF at Nyquist"):
        sigma_from_mtf(0.7)


def test_training_draws_are_deterministic_and_keep_a_bicubic_share():
    draws = TrainingDraws()
    sensors = [draws.draw(torch.Generator().manual_seed(k)) for k in range(400)]
    again = [draws.draw(torch.Generator().manual_seed(k)) for k in range(400)]
    assert sensors == again
    bicubic = sum(s.is_bicubic for s in sensors) / len(sensors)
    assert 0.18 < bicubic < 0.32
    blurred = [s for s in sensors if not s.is_bicubic]
    assert all(0.3 <= s.psf_sigma <= 1.2 for s in blurred)
    assert {s.integration for s in blurred} == {"area", "bicubic", "bilinear"}
    assert any(s.psf_sigma_minor is not None for s in blurred)
    assert any(s.jpeg_quality is not None for s in blurred)
    assert EVALUATION_SENSOR not in sensors
    assert BICUBIC.blur_code == pytest.approx(0.11) and EVALUATION_SENSOR.blur_code == 0.6


def _window(lr: torch.Tensor, reference: torch.Tensor) -> BlurWindow:
    return BlurWindow(lr[0], reference[0], torch.ones(lr.shape[-2:], dtype=torch.bool))


@pytest.mark.parametrize("sigma", [0.3, 0.6, 0.9])
def test_the_blur_estimate_recovers_a_known_sigma_with_a_matching_reference(neon, sigma):
    """The truth recoloured (gain, offset per band) as the reference: within 0.1 LR px,
    also through shot and read noise."""
    hr = neon[..., :256, :256]
    noisy = SensorModel(psf_sigma=sigma, integration="area", shot_noise=1e-4, read_noise=1 / 255)
    lr = degrade(hr, noisy, seed=1)
    reference = (hr * torch.tensor([0.9, 1.0, 1.1])[:, None, None] + 0.03).clamp(0, 1)
    estimate = estimate_scene_blur([_window(lr, reference)])
    assert estimate.source == "estimated" and estimate.fit_r2 > 0.9
    assert abs(estimate.sigma - sigma) <= 0.1, estimate


def test_the_blur_estimate_with_another_places_texture_and_with_nothing(neon):
    """Another place's texture of the same kind as the reference: the fit says it
    shows little of the scene, and the blur still comes out right (the octave ratio
    hardly depends on what the image shows). Nothing to measure on: the default."""
    lr = degrade(neon[..., :128, :128], EVALUATION_SENSOR)
    elsewhere = neon[..., 272:400, 272:400].flip(-1)
    estimate = estimate_scene_blur([_window(lr, elsewhere)])
    assert estimate.source == "estimated" and estimate.fit_r2 < 0.1
    assert abs(estimate.sigma - 0.6) <= 0.15, estimate
    nothing = estimate_scene_blur([])
    assert nothing.source == "default" and nothing.sigma == DEFAULT_SIGMA
    assert "no window" in nothing.reason
    flat = estimate_scene_blur([_window(torch.full_like(lr, 0.5), elsewhere)])
    assert flat.source == "default" and "flat" in flat.reason


def test_the_blur_estimate_takes_bicubic_lr_as_bicubic_like(neon):
    """The model knows the data set's bicubic LR and PSFs from 0.3 LR px: bicubic LR
    with its truth as the reference is bicubic-like, not a PSF of ~0.1."""
    hr = neon[..., :256, :256]
    estimate = estimate_scene_blur([_window(downsample_4x(hr), hr)])
    assert estimate.source == "estimated" and estimate.sensor == BICUBIC, estimate
    assert "bicubic-like (no PSF), estimated from the reference" in estimate.describe()


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data" / "rrssrd_val").is_dir(), reason="RRSSRD pairs absent")
@pytest.mark.parametrize("sigma", [0.3, 0.6, 0.9])
def test_the_blur_estimate_with_the_other_dates_hr_on_rrssrd(sigma):
    """Another date's HR of the same place (co-registered) as the reference: within 0.2
    LR px on average over 8 places."""
    root = SHARED / "data" / "rrssrd_val"
    samples = find_samples(root / "val_1st") + find_samples(root / "val_2nd")
    data = RefSRDataset(samples, co_register=False)
    pairs = [(i, others[0]) for i, others in enumerate(data.other_dates) if others][:8]
    errors = []
    for index, other in pairs:
        hr = _to_tensor(data.images[index][2])[None]
        lr = degrade(hr, SensorModel(psf_sigma=sigma, integration="area"))
        reference = co_registered(
            torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic")[0],
            _to_tensor(data.images[other][2]),
        )[0]
        estimate = estimate_scene_blur([_window(lr, reference[None])])
        errors.append(estimate.sigma - sigma)
    assert sum(abs(e) for e in errors) / len(errors) <= 0.2, errors


@pytest.mark.parametrize(
    "text, sigma, source",
    [("none", 0.11, "none"), ("0.7", 0.7, "given"), ("mtf:0.25", 0.435, "given")],
)
def test_given_scene_blurs(text, sigma, source):
    blur = given_scene_blur(text)
    assert blur.source == source and blur.sigma == pytest.approx(sigma, abs=1e-3)
    assert given_scene_blur("auto") is None


@pytest.mark.parametrize("text", ["sharp", "-1", "9", "mtf:0.9", "nan"])
def test_bad_scene_blurs_are_config_errors(text):
    with pytest.raises(ConfigError, match="--scene-blur"):
        given_scene_blur(text)


def test_a_grown_blur_input_starts_as_the_model_it_grew_from(tmp_path):
    torch.manual_seed(0)
    plain = RRSNet(COMPACT).eval()
    grown = with_blur_conditioning(plain, replace(COMPACT, blur_input=True)).eval()
    assert grown.config.blur_input and not plain.config.blur_input
    lr, grid = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = plain(lr, grid, grid, grid)
        for blur in (0.0, 0.6, torch.tensor([1.2])):
            assert torch.equal(grown(lr, grid, grid, grid, blur=blur), before)
        torch.nn.init.constant_(grown.content_extractor.condition.weight, 0.5)
        assert not torch.equal(grown(lr, grid, grid, grid, blur=0.6), before)
    # Saved and read back: the metadata and the tensors both say it takes a blur code.
    path = tmp_path / "grown.safetensors"
    save_weights(grown.state_dict(), path, WeightsMetadata(config=grown.config))
    loaded, weights = load_generator(path)
    architecture = json.loads(weights.metadata.to_strings()["architecture"])
    assert loaded.config.blur_input and architecture["blur_input"] is True
    plain_path = tmp_path / "plain.safetensors"
    save_weights(plain.state_dict(), plain_path, WeightsMetadata(config=plain.config))
    with safetensors.safe_open(plain_path, framework="pt") as handle:
        assert "blur_input" not in handle.metadata()["architecture"]
    assert infer_config(grown.state_dict(), path).blur_input
    assert not infer_config(plain.state_dict(), path).blur_input


def test_a_grown_blur_modulation_starts_as_the_model_it_grew_from(tmp_path):
    torch.manual_seed(0)
    conditioned = replace(COMPACT, blur_input=True)
    before_model = with_blur_conditioning(RRSNet(COMPACT), conditioned).eval()
    torch.nn.init.constant_(before_model.content_extractor.condition.weight, 0.3)
    wanted = replace(conditioned, blur_modulation=True)
    grown = with_blur_conditioning(before_model, wanted).eval()
    assert grown.config == wanted
    # Growing again, or asking for less, keeps what the model has.
    assert with_blur_conditioning(grown, COMPACT) is grown
    lr, grid = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for blur in (0.11, 0.6, torch.tensor([0.3, 1.2])):
            before = before_model(lr, grid, grid, grid, blur=blur)
            assert torch.equal(grown(lr, grid, grid, grid, blur=blur), before)
        # Trained away from zero, the modulation changes each block's features by the
        # code: two codes now give different outputs, each image its own.
        torch.nn.init.normal_(grown.blur_modulation.net[2].weight, std=0.5)
        sharp = grown(lr, grid, grid, grid, blur=0.11)
        assert not torch.equal(sharp, before_model(lr, grid, grid, grid, blur=0.11))
        mixed = grown(lr, grid, grid, grid, blur=torch.tensor([0.11, 1.2]))
        assert torch.allclose(mixed[0], sharp[0], atol=1e-6)
        assert not torch.allclose(mixed[1], sharp[1], atol=1e-3)
    path = tmp_path / "modulated.safetensors"
    save_weights(grown.state_dict(), path, WeightsMetadata(config=grown.config))
    loaded, weights = load_generator(path)
    assert loaded.config == wanted
    assert json.loads(weights.metadata.to_strings()["architecture"])["blur_modulation"] is True
    with torch.no_grad():
        assert torch.equal(
            loaded(lr, grid, grid, grid, blur=0.6), grown(lr, grid, grid, grid, blur=0.6)
        )


def test_blur_modulation_without_a_blur_input_is_a_config_error():
    with pytest.raises(ConfigError, match="blur_modulation needs blur_input"):
        replace(COMPACT, blur_modulation=True)


def _conditioned(seed, config=None):
    torch.manual_seed(seed)
    model = RRSNet(config or replace(COMPACT, blur_input=True)).eval()
    torch.nn.init.normal_(model.content_extractor.condition.weight, std=2.0)
    return model


def test_a_bicubic_expert_takes_the_bicubic_like_lr_and_the_model_the_rest():
    model = _conditioned(1, replace(COMPACT, blur_input=True, blur_modulation=True))
    torch.nn.init.normal_(model.blur_modulation.net[2].weight, std=0.5)
    expert = _conditioned(2)
    joined = with_bicubic_expert(model, expert).eval()
    assert joined.config == replace(model.config, bicubic_expert=True)
    lr, grid = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 64, 64)
    codes = torch.tensor([BICUBIC.blur_code, 0.6, 0.19])
    with torch.no_grad():
        mixed = joined(lr, grid, grid, grid, blur=codes)
        for index, network in ((0, expert), (1, model), (2, expert)):
            one = [x[index : index + 1] for x in (lr, grid, grid, grid)]
            alone = network(*one, blur=codes[index : index + 1])
            assert torch.allclose(mixed[index : index + 1], alone, atol=1e-6), index
        # One code for the whole batch (as in sr) runs one network; no code reads 0.
        assert torch.equal(joined(lr, grid, grid, grid, blur=0.6), model(lr, grid, grid, grid, 0.6))
        untold = joined(lr, grid, grid, grid)
        assert torch.equal(untold, expert(lr, grid, grid, grid, blur=0.0))
        with relevance_kept(joined) as kept:
            joined(lr, grid, grid, grid, blur=BICUBIC.blur_code)
        with relevance_kept(expert) as alone:
            expert(lr, grid, grid, grid, blur=BICUBIC.blur_code)
        assert len(kept) == 1 and torch.equal(kept[0], alone[0])


def test_a_bicubic_expert_survives_a_weight_file_and_refuses_what_cannot_join(tmp_path):
    joined = with_bicubic_expert(_conditioned(1), _conditioned(2))
    path = tmp_path / "joined.safetensors"
    save_weights(joined.state_dict(), path, WeightsMetadata(config=joined.config))
    loaded, _ = load_generator(path)
    assert loaded.config.bicubic_expert and infer_config(joined.state_dict(), path).bicubic_expert
    with pytest.raises(ConfigError, match="has a bicubic expert already"):
        with_bicubic_expert(joined, _conditioned(3))
    with pytest.raises(ConfigError, match="does not take a blur code"):
        with_bicubic_expert(_conditioned(1), RRSNet(COMPACT))
    with pytest.raises(ConfigError, match="bicubic_expert needs blur_input"):
        replace(COMPACT, bicubic_expert=True)


def test_training_batches_draw_sensors_and_degrade_references_alike(tmp_path):
    folder = make_refsr_folder(tmp_path / "data", count=2, hr_size=96)
    data = RefSRDataset(find_samples(folder), co_register=False)
    draws = TrainingDraws(bicubic=0.0, jpeg=0.0, max_shot_noise=0.0, max_read_noise=0.0)
    reference = ReferenceConfig(sources={"none": 1.0})
    batch = data.batch(4, 8, seed=5, step=0, reference=reference, degradation=draws)
    again = data.batch(4, 8, seed=5, step=0, reference=reference, degradation=draws)
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    assert batch["blur"].shape == (4,) and bool((batch["blur"] >= 0.3).all())
    plain = data.batch(4, 8, seed=5, step=0, reference=reference)
    assert bool((plain["blur"] == 0.11).all())
    assert not torch.equal(batch["LR"], plain["LR"])  # made by the drawn sensors
    # With no reference, LR_UX4 stands in and is blurred as the scene was: then
    # Ref_DUX4 differs from the bicubic down-up of the same image.
    assert torch.equal(batch["Ref"], batch["LR_UX4"])
    assert not torch.allclose(batch["Ref_DUX4"], down_up_4x(batch["Ref"]), atol=1e-3)


def test_a_told_error_tells_the_model_an_erring_blur_and_blurs_the_reference_by_it(tmp_path):
    folder = make_refsr_folder(tmp_path / "data", count=2, hr_size=96)
    data = RefSRDataset(find_samples(folder), co_register=False)
    reference = ReferenceConfig(sources={"real": 1.0})

    def plans_with(draws: TrainingDraws) -> list:
        return [
            data.plan(8, torch.Generator().manual_seed(k), reference, 0, draws) for k in range(64)
        ]

    truthful = plans_with(TrainingDraws(bicubic=0.5, jpeg=0.0))
    plans = plans_with(TrainingDraws(bicubic=0.5, jpeg=0.0, told_error=0.3))
    assert [p.told for p in truthful] == [None] * 64
    # The LR is made as without the error (the error is drawn last): only what the
    # model is told differs, and it is what `sr` would assume for such an estimate.
    assert [p.sensor for p in plans] == [p.sensor for p in truthful]
    assert sum(abs(p.assumed.blur_code - p.sensor.blur_code) > 0.05 for p in plans) > 32
    assert all(p.told in (BICUBIC, area_sensor(p.told.psf_sigma)) for p in plans)
    assert any(p.sensor.is_bicubic and not p.told.is_bicubic for p in plans)
    assert any(not p.sensor.is_bicubic and p.told.is_bicubic for p in plans)
    batch = data.build(plans[:4], 8)
    truthful_batch = data.build(truthful[:4], 8)
    assert batch["blur"].tolist() == pytest.approx([p.told.blur_code for p in plans[:4]])
    assert torch.equal(batch["LR"], truthful_batch["LR"])
    for k, plan in enumerate(plans[:4]):
        same = plan.told.optics_only() == plan.sensor.optics_only()
        assert torch.equal(batch["Ref_DUX4"][k], truthful_batch["Ref_DUX4"][k]) == same


def test_the_told_error_can_grow_for_sharp_lr_as_the_estimates_does():
    """The blur estimate errs about twice as much on bicubic-like LR as on blurred LR
    (docs/performance.md); `told_error_sharp` lets training match that."""
    draws = TrainingDraws(told_error=0.06, told_error_sharp=0.12)
    middle = SensorModel(psf_sigma=0.355, integration="area")  # halfway from 0.11 to 0.6

    def deviation(sensor: SensorModel) -> float:
        told = [draws.told_blur(sensor, torch.Generator().manual_seed(k)) for k in range(2000)]
        return float(torch.tensor(told).std())

    assert deviation(BICUBIC) == pytest.approx(0.12, rel=0.1)
    assert deviation(middle) == pytest.approx(0.09, rel=0.1)
    assert deviation(EVALUATION_SENSOR) == pytest.approx(0.06, rel=0.1)
    assert deviation(SensorModel(psf_sigma=1.2, integration="area")) == pytest.approx(0.06, rel=0.1)
    assert draws.tells_errors and TrainingDraws(told_error_sharp=0.1).tells_errors
    assert not TrainingDraws().tells_errors


@pytest.mark.parametrize("key", ["told_error", "told_error_sharp"])
def test_told_errors_are_checked(key):
    with pytest.raises(ConfigError, match=key):
        TrainingDraws(**{key: -0.1})


def test_validation_and_evaluation_make_whole_samples_with_a_fixed_sensor(tmp_path):
    folder = make_refsr_folder(tmp_path / "data", count=2, hr_size=96)
    samples = find_samples(folder)
    bicubic, sensor = RefSRDataset(samples), RefSRDataset(samples, sensor=EVALUATION_SENSOR)
    assert torch.equal(bicubic[0]["HR"], sensor[0]["HR"])
    assert not torch.equal(bicubic[0]["LR"], sensor[0]["LR"])
    assert torch.equal(sensor[0]["LR"], RefSRDataset(samples, sensor=EVALUATION_SENSOR)[0]["LR"])
    expected = reference_dux4(sensor[0]["Ref"][None], EVALUATION_SENSOR)[0]
    assert torch.equal(sensor[0]["Ref_DUX4"], expected)
