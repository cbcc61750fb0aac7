"""Evaluating a generator on RRSSRD-style folders, beside bicubic.

For each sample: the model with its reference; with the reference replaced by LR_UX4
(what the reference contributes); with the truth itself, shifted and recoloured, as
reference (`TRUTH_AS_REFERENCE`: proof that the reference path works at all); and
bicubic (LR_UX4 itself). Where the data holds the same place on another date (RRSSRD's
val_1st and val_2nd), also the model with that date's HR as reference (`OTHER_DATE`).
Each is scored by PSNR and SSIM on RGB (the authors' released protocol) and on Y (as
later RefSR papers report), 4-pixel border, 8-bit images (`metrics.py`). Also the
consistency of the SR image: its 4x downsampling against the LR (RGB PSNR, 1-pixel
border), which should be high for a faithful super-resolution.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from rrsgan_geo.data import RefSRDataset
from rrsgan_geo.degradation import down_up_4x, downsample_4x
from rrsgan_geo.metrics import Scorer, psnr
from rrsgan_geo.model import RRSNet
from rrsgan_geo.reference_synthesis import TRUTH_AS_REFERENCE, synthesize
from rrsgan_geo.registration import co_registered
from rrsgan_geo.self_ensemble import ensembled

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


@torch.no_grad()
def evaluate(
    model: RRSNet,
    data: RefSRDataset,
    device: torch.device,
    on_sample: Callable[[SampleScores], None] | None = None,
    views: int = 1,
    other_dates: bool = True,
) -> list[SampleScores]:
    """Score every sample; `views` > 1 scores the model as a geometric self-ensemble
    (`self_ensemble`), as `sr --self-ensemble` runs it. `other_dates`: also score
    `OTHER_DATE` where a sample has another date (one more model run for each)."""
    model = model.to(device).eval()

    def generate(*inputs: torch.Tensor) -> torch.Tensor:
        return ensembled(lambda view: model(*view), inputs, views)

    scores = []
    for index, sample in enumerate(data.samples):
        item = {k: v[None].to(device) for k, v in data[index].items()}
        lr, lr_ux4, hr = item["LR"], item["LR_UX4"], item["HR"]
        truth_ref = truth_reference(hr, lr_ux4, data.co_register)
        outputs = {
            "model": generate(lr, lr_ux4, item["Ref"], item["Ref_DUX4"]),
            "model_no_ref": generate(lr, lr_ux4, lr_ux4, down_up_4x(lr_ux4)),
            "model_truth_ref": generate(lr, lr_ux4, truth_ref, down_up_4x(truth_ref)),
            "bicubic": lr_ux4,
        }
        others = data.other_dates[index] if other_dates else []
        if others:
            other_ref = data.other_date_reference(index, others[0]).to(device)[None]
            outputs[OTHER_DATE] = generate(lr, lr_ux4, other_ref, down_up_4x(other_ref))
        outputs = {k: v.clamp(0, 1)[0].cpu() for k, v in outputs.items()}
        hr = hr[0].cpu()
        consistency = psnr(
            downsample_4x(outputs["model"][None])[0], lr[0].cpu(), crop_border=1, y_channel=False
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
        )
        scores.append(result)
        if on_sample is not None:
            on_sample(result)
    return scores


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
