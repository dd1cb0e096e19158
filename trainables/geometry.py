"""Shapes without torch: the images, the classes per data set, and where the study-000 CNN pools.

The CNN builder (trainables/models/cnn.py) places its pools from `cnn_map_sides`, and the reports read the
same function and the same class counts, so a report never keeps a copy of the model's arithmetic that could
drift from the model. Nothing here imports torch: analysis imports this module and must load without it.
"""
from __future__ import annotations

IMAGE_SIZE = 32  # CIFAR-10/100 and the synthetic set: 32 x 32 RGB images
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "synthetic": 10}


def cnn_map_sides(depth: int, image_size: int = IMAGE_SIZE) -> list[int]:
    """Side of the square feature map leaving each of the study-000 CNN's `depth` convs, after the pool that may
    follow it: [0] is the first conv (never pooled), [b] block b. A 2x2 max-pool follows every second block
    (b = 2, 4, ...) until the map is 1x1, so depths past the seed's 12 still build; the classifier flattens
    the last side."""
    sides = [image_size]
    for block in range(1, int(depth)):
        side = sides[-1]
        sides.append(side // 2 if block % 2 == 0 and side > 1 else side)
    return sides


def cnn_pools(depth: int, image_size: int = IMAGE_SIZE) -> int:
    """How many 2x2 max-pools the CNN of this depth has."""
    sides = cnn_map_sides(depth, image_size)
    return sum(after < before for before, after in zip(sides, sides[1:]))


def cnn_convs_on_1x1(depth: int, image_size: int = IMAGE_SIZE) -> int:
    """Convs that read a 1x1 map: there a zero-padded 3x3 kernel sees only its centre tap (a 1x1 conv)."""
    sides = cnn_map_sides(depth, image_size)
    return sum(side == 1 for side in [image_size, *sides[:-1]])  # conv 0 reads the image, conv b block b-1's map
