"""How much detail that matches the HR does a reference hold? An oracle beside the model.

`evaluate` measures what a reference adds to the model (model minus model_no_ref). This
script measures what the reference holds to add, in the same units. For each image it
takes the model's no-reference output and adds the reference's own detail (Ref -
Ref_DUX4: what the reference holds above the LR's band), moved by the best whole-pixel
shift within --reach output px and scaled by the best factor, both chosen per block of
--block px by least squares against the HR itself. No model can do that (it never sees
the HR), yet it is no bound on what a model can do either: a model also reshapes the
detail and repairs the LR's own band with it (both models beat the oracle with the truth
as reference). It is a yardstick to compare references by: how much of each one's
detail, locally aligned and weighted, matches the truth.

Fitting a shift and a factor per block gains something on any detail, even detail that
has nothing to do with the image: the "another place" row measures that bias with
another image's reference (its "model's gain" says how much the model takes from a
reference of the wrong place). Rows: the data's own reference (RRSSRD's Google Earth
images), the same place's HR on another date where the folders hold one, and the truth
as reference (`evaluate`'s). References are co-registered first, as `sr` and
`evaluate` do. RGB PSNR, the authors' protocol.

    python benchmarks/reference_oracle.py rrssrd/val_1st rrssrd/val_2nd \\
        --held-out weights/provenance/rrsnet_compact_coreg_cpu_10.yaml
"""

import argparse
from collections.abc import Callable
from pathlib import Path
from statistics import fmean

import torch
import torch.nn.functional as F

from rrsgan_geo.devices import resolve_device
from rrsgan_geo.model.degradation import down_up_4x
from rrsgan_geo.model.weight_files import load_generator, shipped_weights_path
from rrsgan_geo.training.data import RefSRDataset
from rrsgan_geo.training.evaluation import truth_reference
from rrsgan_geo.training.metrics import Scorer
from rrsgan_geo.training.trainer import scored_samples

REFERENCES = ("data's reference", "other date's HR", "truth as reference", "another place (bias)")


def oracle_transfer(
    base: torch.Tensor, reference: torch.Tensor, hr: torch.Tensor, block: int, reach: int
) -> torch.Tensor:
    """`base` plus the reference's detail, shifted and scaled per block to fit `hr` best.

    All 1 x 3 x H x W (blocks at the right and bottom edges may be smaller). Per block,
    each shift's best factor is <r, d> / <d, d> (r = hr - base, d = the shifted detail),
    which lowers the squared error by <r, d>^2 / <d, d>; the shift that lowers it most
    wins. Shifts roll the image, so up to `reach` px at each edge wrap around: keep
    `reach` within the border that scoring crops."""
    detail = reference - down_up_4x(reference)
    residual = hr - base
    shifts = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)]
    height, width = hr.shape[-2:]

    def block_means(image: torch.Tensor) -> torch.Tensor:
        """Means, not sums: an edge block's smaller count cancels in each ratio below."""
        return F.avg_pool2d(image.sum(1, keepdim=True), block, ceil_mode=True)

    best_fit = torch.full_like(block_means(residual), -1.0)
    best_factor = torch.zeros_like(best_fit)
    best_shift = torch.zeros_like(best_fit, dtype=torch.long)
    for index, shift in enumerate(shifts):
        moved = torch.roll(detail, shift, (2, 3))
        agreement = block_means(residual * moved)
        energy = block_means(moved * moved).clamp_min(1e-12)
        fit = agreement**2 / energy
        better = fit > best_fit
        best_fit = torch.where(better, fit, best_fit)
        best_factor = torch.where(better, agreement / energy, best_factor)
        best_shift = torch.where(better, index, best_shift)
    output = base.clone()
    for index, shift in enumerate(shifts):
        factor = torch.where(best_shift == index, best_factor, 0.0)
        if factor.any():
            weight = factor.repeat_interleave(block, 2).repeat_interleave(block, 3)
            output += weight[..., :height, :width] * torch.roll(detail, shift, (2, 3))
    return output.clamp(0, 1)


def _other_place(data: RefSRDataset, index: int) -> int | None:
    """The next sample of another place with an image of the same size, if any."""
    count = len(data)
    for step in range(1, count):
        other = (index + step) % count
        same_size = data.images[other][2].shape == data.images[index][2].shape
        if data.samples[other].name != data.samples[index].name and same_size:
            return other
    return None


def _references(data: RefSRDataset, index: int, item: dict) -> dict[str, torch.Tensor]:
    """Each reference this sample has, 1 x 3 x H x W, co-registered as `evaluate` does."""
    truth = truth_reference(item["HR"], item["LR_UX4"], data.co_register)
    references = {REFERENCES[0]: item["Ref"], REFERENCES[2]: truth}
    if data.other_dates[index]:
        other = data.other_date_reference(index, data.other_dates[index][0])
        references[REFERENCES[1]] = other[None]
    other_place = _other_place(data, index)
    if other_place is not None:
        references[REFERENCES[3]] = data[other_place]["Ref"][None]
    return references


@torch.no_grad()
def measure(
    model: Callable[..., torch.Tensor], data: RefSRDataset, block: int, reach: int
) -> dict[str, dict[str, list[float]]]:
    """Per reference kind: the model's gain over no reference and the oracle's gain,
    in RGB PSNR dB, one value per image that has that kind of reference."""
    gains: dict[str, dict[str, list[float]]] = {
        name: {"model": [], "oracle": []} for name in REFERENCES
    }
    for index in range(len(data)):
        item = {key: value[None] for key, value in data[index].items()}
        lr, lr_ux4, hr = item["LR"], item["LR_UX4"], item["HR"]
        scorer = Scorer(hr[0])
        no_reference = model(lr, lr_ux4, lr_ux4, down_up_4x(lr_ux4)).clamp(0, 1)
        baseline = scorer.psnr(no_reference[0], y_channel=False)
        for name, reference in _references(data, index, item).items():
            with_reference = model(lr, lr_ux4, reference, down_up_4x(reference)).clamp(0, 1)
            oracle = oracle_transfer(no_reference, reference, hr, block, reach)
            gains[name]["model"].append(scorer.psnr(with_reference[0], y_channel=False) - baseline)
            gains[name]["oracle"].append(scorer.psnr(oracle[0], y_channel=False) - baseline)
    return gains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dirs", nargs="+", type=Path)
    parser.add_argument("--held-out", type=Path, help="Only the places this config held out.")
    parser.add_argument("--weights", type=Path, help="Default: the shipped ones for the device.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, help="At most this many images.")
    parser.add_argument("--block", type=int, default=32, help="Output px per fitted block.")
    parser.add_argument("--reach", type=int, default=3, help="Largest shift tried (output px).")
    args = parser.parse_args()
    samples = scored_samples(args.data_dirs, args.held_out)
    samples = samples[: args.limit] if args.limit else samples
    device = resolve_device(args.device)
    model, weight_file = load_generator(args.weights or shipped_weights_path(device.type))
    model = model.to(device).eval()
    data = RefSRDataset(samples, co_register=True)

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        return model(*(x.to(device) for x in inputs)).cpu()

    gains = measure(run, data, args.block, args.reach)
    bias = gains[REFERENCES[3]]["oracle"]
    print(
        f"{weight_file.path.name}, {len(samples)} images; oracle: detail shifted up to "
        f"{args.reach} px and scaled per {args.block} px block, fitted to the HR"
    )
    print("| reference | images | model's gain dB | oracle's gain dB | oracle - bias dB |")
    print("|---|---|---|---|---|")
    for name, values in gains.items():
        if not values["model"]:
            continue
        model_gain, oracle_gain = fmean(values["model"]), fmean(values["oracle"])
        ceiling = f"{oracle_gain - fmean(bias):+.3f}" if bias and name != REFERENCES[3] else "-"
        count = len(values["model"])
        print(f"| {name} | {count} | {model_gain:+.3f} | {oracle_gain:+.3f} | {ceiling} |")
    print("gains in RGB PSNR over the model without a reference, authors' protocol")


if __name__ == "__main__":
    main()
