"""GAFA: gradient-assisted pyramid, cascading and deformable alignment (`gpcd_align`).

Offsets are predicted from [Ref_DUX4 features, LR_UX4 features]: both are blurred the
same way, so their difference tells where the reference content sits relative to the
LR content. The deformable convolutions then sample the sharp Ref features at those
offsets. Features are image features concatenated with gradient features.
"""

import torch
from torch import nn
from torch.nn import functional as F

from rrsgan_geo.model.blocks import conv3x3, kaiming_leaky_init, leaky_relu
from rrsgan_geo.model.deform import SeparateOffsetDeformConv

Pyramid = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class GPCDAlign(nn.Module):
    """Aligns reference features to the LR at scales 1, 1/2 and 1/4 of the 4x grid."""

    def __init__(self, channels: int, out_channels: int, deformable_groups: int) -> None:
        super().__init__()
        c, c_out, g = channels, out_channels, deformable_groups
        # L3: 1/4 scale
        self.L3_offset_conv1 = conv3x3(2 * c, c)
        self.L3_offset_conv2 = conv3x3(c, c)
        self.L3_dcnpack = SeparateOffsetDeformConv(c, g)
        self.L3_fea_conv = conv3x3(c, c_out)
        # L2: 1/2 scale
        self.L2_offset_conv1 = conv3x3(2 * c, c)
        self.L2_offset_conv2 = conv3x3(2 * c, c)
        self.L2_offset_conv3 = conv3x3(c, c)
        self.L2_dcnpack = SeparateOffsetDeformConv(c, g)
        self.L2_fea_conv = conv3x3(c + c_out, c_out)
        # L1: full scale (keeps `channels` outputs, refined by the cascade below)
        self.L1_offset_conv1 = conv3x3(2 * c, c)
        self.L1_offset_conv2 = conv3x3(2 * c, c)
        self.L1_offset_conv3 = conv3x3(c, c)
        self.L1_dcnpack = SeparateOffsetDeformConv(c, g)
        self.L1_fea_conv = conv3x3(c + c_out, c)
        # Cascade: one more deformable refinement at full scale
        self.cas_offset_conv1 = conv3x3(2 * c, c)
        self.cas_offset_conv2 = conv3x3(c, c)
        self.cas_dcnpack = SeparateOffsetDeformConv(c, g)
        self.cas_fea_conv = conv3x3(c, c_out)
        self.lrelu = leaky_relu()
        for name, layer in self.named_children():
            if name.endswith(("_offset_conv1", "_offset_conv2", "_offset_conv3", "_fea_conv")):
                kaiming_leaky_init(layer)

    def forward(self, ref: Pyramid, ref_blurred: Pyramid, lr: Pyramid) -> Pyramid:
        """`ref`: Ref features (sampled); `ref_blurred`: Ref_DUX4; `lr`: LR_UX4 features."""
        act = self.lrelu
        # L3
        l3_offset = act(self.L3_offset_conv1(torch.cat([ref_blurred[2], lr[2]], dim=1)))
        l3_offset = act(self.L3_offset_conv2(l3_offset))
        l3_out = act(self.L3_fea_conv(self.L3_dcnpack(ref[2], l3_offset)))
        # L2: coarser offsets are upsampled and doubled (they are in pixels)
        l2_offset = act(self.L2_offset_conv1(torch.cat([ref_blurred[1], lr[1]], dim=1)))
        l2_offset = torch.cat([l2_offset, _upsample2(l3_offset) * 2], dim=1)
        l2_offset = act(self.L2_offset_conv3(act(self.L2_offset_conv2(l2_offset))))
        l2_fea = self.L2_dcnpack(ref[1], l2_offset)
        l2_out = act(self.L2_fea_conv(torch.cat([l2_fea, _upsample2(l3_out)], dim=1)))
        # L1 (no activation on the fused features: the cascade refines them)
        l1_offset = act(self.L1_offset_conv1(torch.cat([ref_blurred[0], lr[0]], dim=1)))
        l1_offset = torch.cat([l1_offset, _upsample2(l2_offset) * 2], dim=1)
        l1_offset = act(self.L1_offset_conv3(act(self.L1_offset_conv2(l1_offset))))
        l1_fea = self.L1_dcnpack(ref[0], l1_offset)
        l1_fea = self.L1_fea_conv(torch.cat([l1_fea, _upsample2(l2_out)], dim=1))
        # Cascade
        cas_offset = act(self.cas_offset_conv1(torch.cat([l1_fea, lr[0]], dim=1)))
        cas_offset = act(self.cas_offset_conv2(cas_offset))
        l1_out = act(self.cas_fea_conv(self.cas_dcnpack(l1_fea, cas_offset)))
        return l1_out, l2_out, l3_out
