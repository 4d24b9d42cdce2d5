"""``python tests/ddp_entry.py train ...``: activemint's command line plus ``tiny_nobn``, a CNN without BatchNorm.

For tests/test_distributed.py: without BatchNorm a torchrun run's global batch computes exactly
what one process computes (BatchNorm's per-rank batch statistics are the one intended
difference), so one- and two-process runs can be compared up to floating-point order.
"""
from __future__ import annotations

from torch import nn

from activemint.models.registry import register_arch


def _block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.ReLU())


class TinyNoBN(nn.Module):
    def __init__(self, in_chans: int, num_classes: int) -> None:
        super().__init__()
        self.block1 = _block(in_chans, 16, True)
        self.block2 = _block(16, 16, False)
        self.block3 = _block(16, 32, True)
        self.block4 = _block(32, 32, False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.fc(self.pool(x).flatten(1))


@register_arch("tiny_nobn", taps={"entry": ("block1", "block2"), "middle": ("block2", "block3"), "output": ("block3", "block4")},
               description="4-block CNN without BatchNorm (tests only)")
def tiny_nobn(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    return TinyNoBN(in_chans, num_classes)


if __name__ == "__main__":
    from activemint.cli import main

    raise SystemExit(main())
