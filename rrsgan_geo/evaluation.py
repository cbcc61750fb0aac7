"""Evaluating a generator on RRSSRD-style folders, beside bicubic.

For each sample: the model with its reference, the model with the reference replaced
by LR_UX4 (what the reference contributes), and bicubic (LR_UX4 itself), each scored
by PSNR and SSIM on Y with a 4-pixel border (the authors' protocol, `metrics.py`).
Also the consistency of the SR image: its 4x downsampling against the LR (RGB PSNR,
1-pixel border), which should be high for a faithful super-resolution.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from rrsgan_geo.data import RefSRDataset, Sample
from rrsgan_geo.degradation import down_up_4x, downsample_4x
from rrsgan_geo.metrics import psnr, ssim
from rrsgan_geo.model import RRSNet

METHODS = ("model", "model_no_ref", "bicubic")


@dataclass(frozen=True)
class SampleScores:
    name: str
    folder: str
    psnr: dict[str, float]
    ssim: dict[str, float]
    lr_consistency_psnr: float


@torch.no_grad()
def evaluate(
    model: RRSNet,
    samples: list[Sample],
    device: torch.device,
    on_sample: Callable[[SampleScores], None] | None = None,
) -> list[SampleScores]:
    model = model.to(device).eval()
    data = RefSRDataset(samples)
    scores = []
    for index, sample in enumerate(samples):
        item = {k: v[None].to(device) for k, v in data[index].items()}
        lr, lr_ux4, hr = item["LR"], item["LR_UX4"], item["HR"][0].cpu()
        outputs = {
            "model": model(lr, lr_ux4, item["Ref"], item["Ref_DUX4"]),
            "model_no_ref": model(lr, lr_ux4, lr_ux4, down_up_4x(lr_ux4)),
            "bicubic": lr_ux4,
        }
        outputs = {k: v.clamp(0, 1)[0].cpu() for k, v in outputs.items()}
        consistency = psnr(
            downsample_4x(outputs["model"][None])[0], lr[0].cpu(), crop_border=1, y_channel=False
        )
        result = SampleScores(
            sample.name,
            sample.folder.name,
            {k: psnr(v, hr) for k, v in outputs.items()},
            {k: ssim(v, hr) for k, v in outputs.items()},
            consistency,
        )
        scores.append(result)
        if on_sample is not None:
            on_sample(result)
    return scores


def summarise(scores: list[SampleScores]) -> dict[str, object]:
    """Means over samples, per method, plus the per-sample rows."""
    count = len(scores)
    return {
        "samples": count,
        "protocol": "PSNR/SSIM on Y (BT.601, MATLAB rgb2ycbcr), 4-pixel border cropped",
        "mean_psnr": {m: sum(s.psnr[m] for s in scores) / count for m in METHODS},
        "mean_ssim": {m: sum(s.ssim[m] for s in scores) / count for m in METHODS},
        "mean_lr_consistency_psnr": sum(s.lr_consistency_psnr for s in scores) / count,
        "per_sample": [asdict(s) for s in scores],
    }
