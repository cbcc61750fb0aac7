"""Evaluating a generator on RRSSRD-style folders, beside bicubic.

For each sample: the model with its reference; with the reference replaced by LR_UX4
(what the reference contributes); with the truth itself, shifted and recoloured, as
reference (`TRUTH_AS_REFERENCE`: proof that the reference path works at all); and
bicubic (LR_UX4 itself). Where the data holds the same place on another date (RRSSRD's
val_1st and val_2nd), also the model with that date's HR as reference (`OTHER_DATE`).
Each is scored by PSNR and SSIM on RGB (the authors' released protocol) and on Y (as
later RefSR papers report), 4-pixel border, 8-bit images (`metrics.py`). Also the
consistency of the SR image: degraded 4x as the scene is, against the LR (RGB PSNR,
1-pixel border), which should be high for a faithful super-resolution.

The LR is the data set's own (bicubic) or made from the HR by a sensor model
(`RefSRDataset.sensor`, `sensor.EVALUATION_SENSOR` for `evaluate --degradation
sensor`); the model is told each sample's blur as `sr` would be (`scene_blur`).
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from rrsgan_geo.model import RRSNet
from rrsgan_geo.model.self_ensemble import ensembled
from rrsgan_geo.model.sensor import optics, reference_dux4
from rrsgan_geo.sr.contrast import stretched
from rrsgan_geo.sr.registration import co_registered
from rrsgan_geo.sr.scene_blur import BlurWindow, SceneBlur, estimate_scene_blur, given_scene_blur
from rrsgan_geo.training.data import RefSRDataset
from rrsgan_geo.training.metrics import Scorer, psnr
from rrsgan_geo.training.reference_synthesis import TRUTH_AS_REFERENCE, synthesize

METHODS = ("model", "model_no_ref", "model_truth_ref", "bicubic")
OTHER_DATE = "model_other_date_ref"
"""The model with another date's HR of the same place, co-registered, as reference: a
real reference from the same kind of sensor, as an older aerial survey would be, where
RRSSRD's own references come from Google Earth. Scored only for samples that have one,
so its means are over those samples."""
PROTOCOL = (
    "PSNR/SSIM on RGB (the authors' val.py) and on Y (BT.601, MATLAB rgb2ycbcr), "
    "4-pixel border cropped, 8-bit images"
)


@dataclass(frozen=True)
class SampleScores:
    name: str
    folder: str
    psnr_rgb: dict[str, float]
    ssim_rgb: dict[str, float]
    psnr_y: dict[str, float]
    ssim_y: dict[str, float]
    lr_consistency_psnr: float
    scene_blur: float = 0.0
    """The blur code the model was told (`sensor.SensorModel.blur_code`)."""


@torch.no_grad()
def evaluate(
    model: RRSNet,
    data: RefSRDataset,
    device: torch.device,
    on_sample: Callable[[SampleScores], None] | None = None,
    views: int = 1,
    other_dates: bool = True,
    scene_blur: str | None = "auto",
) -> list[SampleScores]:
    """Score every sample; `views` > 1 scores the model as a geometric self-ensemble
    (`self_ensemble`), as `sr --self-ensemble` runs it. `other_dates`: also score
    `OTHER_DATE` where a sample has another date (one more model run for each).
    `scene_blur`: what the model is told of each sample's blur, as `sr --scene-blur`
    takes it (`auto`: measured on the sample's own reference, as `sr` measures it);
    None: the data's true sensor model (`data.sensor`), as training validates. Every
    reference is blurred by that model before the generator compares it with the LR."""
    model = model.to(device).eval()
    given = None if scene_blur is None else given_scene_blur(scene_blur)

    def generate(lr, lr_ux4, ref, blur: SceneBlur) -> torch.Tensor:
        inputs = (lr, lr_ux4, ref, reference_dux4(ref, blur.sensor))
        return stretched(
            lambda tiles: ensembled(lambda view: model(*view, blur=blur.sigma), tiles, views),
            inputs,
        )

    scores = []
    for index, sample in enumerate(data.samples):
        item = {k: v[None].to(device) for k, v in data[index].items()}
        lr, lr_ux4, hr = item["LR"], item["LR_UX4"], item["HR"]
        truth_ref = truth_reference(hr, lr_ux4, data.co_register)
        blur = sample_blur(scene_blur, given, data, lr, item["Ref"])
        outputs = {
            "model": generate(lr, lr_ux4, item["Ref"], blur),
            "model_no_ref": generate(lr, lr_ux4, lr_ux4, blur),
            "model_truth_ref": generate(lr, lr_ux4, truth_ref, blur),
            "bicubic": lr_ux4,
        }
        others = data.other_dates[index] if other_dates else []
        if others:
            other_ref = data.other_date_reference(index, others[0]).to(device)[None]
            outputs[OTHER_DATE] = generate(lr, lr_ux4, other_ref, blur)
        outputs = {k: v.clamp(0, 1)[0].cpu() for k, v in outputs.items()}
        hr = hr[0].cpu()
        consistency = psnr(
            optics(outputs["model"][None], blur.sensor)[0],
            lr[0].cpu(),
            crop_border=1,
            y_channel=False,
        )
        scorer = Scorer(hr)  # the HR's planes and SSIM statistics, once per image
        result = SampleScores(
            sample.name,
            sample.folder.name,
            {k: scorer.psnr(v, y_channel=False) for k, v in outputs.items()},
            {k: scorer.ssim(v, y_channel=False) for k, v in outputs.items()},
            {k: scorer.psnr(v) for k, v in outputs.items()},
            {k: scorer.ssim(v) for k, v in outputs.items()},
            consistency,
            blur.sigma,
        )
        scores.append(result)
        if on_sample is not None:
            on_sample(result)
    return scores


def sample_blur(
    scene_blur: str | None,
    given: SceneBlur | None,
    data: RefSRDataset,
    lr: torch.Tensor,
    reference: torch.Tensor,
) -> SceneBlur:
    """One sample's blur: the data's true one (`scene_blur` None), the one given, or
    measured on the sample's reference over the whole image (1 x C x h x w LR)."""
    if scene_blur is None:
        return SceneBlur(data.sensor, "given")
    if given is not None:
        return given
    valid = torch.ones(lr.shape[-2:], dtype=torch.bool)
    return estimate_scene_blur([BlurWindow(lr[0].cpu(), reference[0].cpu(), valid)])


def truth_reference(hr: torch.Tensor, lr_ux4: torch.Tensor, co_register: bool) -> torch.Tensor:
    """The "truth as reference" of one sample (1 x 3 x H x W each): the HR shifted and
    recoloured (`TRUTH_AS_REFERENCE`), moved onto the LR first when co-registering, as
    every reference is."""
    truth = synthesize(hr[0], TRUTH_AS_REFERENCE)
    if co_register:
        truth = co_registered(lr_ux4[0], truth)[0]
    return truth[None]


def summarise(scores: list[SampleScores]) -> dict[str, object]:
    """Means over samples, per method and metric, plus the per-sample rows."""
    count = len(scores)
    methods = METHODS + ((OTHER_DATE,) if any(OTHER_DATE in s.psnr_rgb for s in scores) else ())

    def mean(metric: str) -> dict[str, float]:
        """Per method, over the samples that have it (`OTHER_DATE` may be on some only)."""
        means = {}
        for method in methods:
            values = [getattr(s, metric)[method] for s in scores if method in s.psnr_rgb]
            means[method] = sum(values) / len(values)
        return means

    return {
        "samples": count,
        "protocol": PROTOCOL,
        **{
            f"mean_{metric}": mean(metric)
            for metric in ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")
        },
        "mean_lr_consistency_psnr": sum(s.lr_consistency_psnr for s in scores) / count,
        "mean_scene_blur": sum(s.scene_blur for s in scores) / count,
        **_other_date_effect(scores),
        "per_sample": [asdict(s) for s in scores],
    }


def _other_date_effect(scores: list[SampleScores]) -> dict[str, float | int]:
    """How many samples had another date, and what its HR as reference adds over no
    reference (RGB PSNR) on those samples, comparable with the real reference's gain."""
    having = [s for s in scores if OTHER_DATE in s.psnr_rgb]
    if not having:
        return {"other_date_samples": 0}
    gain = sum(s.psnr_rgb[OTHER_DATE] - s.psnr_rgb["model_no_ref"] for s in having)
    return {"other_date_samples": len(having), "other_date_ref_adds_rgb": gain / len(having)}
