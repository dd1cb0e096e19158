"""Study 004's two plain nets, "baseline4" and "deeper7", from one builder and two layer tables.

Both are a stack of convs (each optionally followed by BatchNorm, always by the
activation, sometimes by a max-pool), then flatten, Linear(-> 300), activation,
Linear(-> classes). The source nets take 224x224 faces; on 32x32 CIFAR images
their strides and pools would shrink the map to 1x1 or less, so they are adapted:

baseline4 (source: conv 3->21 s2, 21->20 s2 +BN, 20->15 s2 p1 +BN, 15->7 k5 s2 p1 +BN;
    224 -> 111 -> 55 -> 28 -> 13, 7*13*13 = 1183 features). Here the first and the
    last conv have stride 1 and the first is padded: 32 -> 32 -> 16 -> 8 -> 6, so
    7*6*6 = 252 features reach the 300-unit layer. Two of the source's four
    halvings are dropped because the input is 7x smaller.
deeper7 (the report's "TronNet": conv 3->21, 21->30 +BN, pool, 30->35 +BN, 35->25 +BN,
    pool, 25->20 +BN, 20->15 +BN, 15->10 k5 p1 +BN). The source pools 3x3 and leaves
    the first conv unpadded; here the first conv is padded and the pools are 2x2:
    32 -> 32 -> 16 -> 8 -> 6, 10*6*6 = 360 features.
Channel counts and kernel sizes are the source's. Its last ReLU sat on the logits
(before the softmax); here the logits are left linear, as cross-entropy expects.
The source trained deeper7 with Xavier init: the sweep sets init=xavier_*.
`width`, `depth` and `bn` do not apply to these tables: setting them is an error (KEYS below).
"""
from __future__ import annotations

from functools import partial

from torch import nn

from trainables.activations import make_activation
from trainables.models.registry import ModelSpec, register

# (in, out, kernel, stride, padding, batchnorm, max-pool after)
BASELINE4 = [(3, 21, 3, 1, 1, False, 0), (21, 20, 3, 2, 1, True, 0),
             (20, 15, 3, 2, 1, True, 0), (15, 7, 5, 1, 0, True, 0)]
DEEPER7 = [(3, 21, 3, 1, 1, False, 0), (21, 30, 3, 1, 1, True, 2),
           (30, 35, 3, 1, 1, True, 0), (35, 25, 3, 1, 1, True, 2),
           (25, 20, 3, 1, 1, True, 0), (20, 15, 3, 1, 1, True, 0), (15, 10, 5, 1, 0, True, 0)]
HIDDEN = 300


def build_conv_stack(config: dict, num_classes: int, table: list[tuple], image_size: int = 32) -> nn.Sequential:
    layers: list[nn.Module] = []
    size = image_size
    for cin, cout, k, stride, pad, bn, pool in table:
        layers.append(nn.Conv2d(cin, cout, k, stride=stride, padding=pad))
        size = (size + 2 * pad - k) // stride + 1
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(make_activation(config, cout))
        if pool:
            layers.append(nn.MaxPool2d(pool))
            size //= pool
    features = table[-1][1] * size * size
    layers += [nn.Flatten(), nn.Linear(features, HIDDEN), make_activation(config, HIDDEN),
               nn.Linear(HIDDEN, num_classes)]
    return nn.Sequential(*layers)


KEYS = ("activation",)  # channel counts, depth and BN placement are fixed by the tables
register("baseline4", ModelSpec(partial(build_conv_stack, table=BASELINE4), KEYS, "conv_stack",
                                describe="study-004 baseline: 4 convs (3 with BN), FC 300, adapted to 32x32"))
register("deeper7", ModelSpec(partial(build_conv_stack, table=DEEPER7), KEYS, "conv_stack",
                              describe="study-004 deeper net: 7 convs (6 with BN), 2 max-pools, FC 300, 32x32"))
