"""The study-002 training protocol, shared by its three search-space files.

CIFAR-100 fine labels, 2,500 stratified validation images taken from the 50,000
training images (47,500 / 2,500 / 10,000), Adam + cosine annealing over 100
epochs, batch 100, LeakyReLU (carried by the vgg* model presets), no weight
decay unless a sweep says so (Adam's L2 term). The study used PyTorch's default
Adam and its course code's cosine floor of 2e-5, and PyTorch's default layer
init, which is what makes the plain VGG38's signal (and gradient) vanish.

On the shared CIFAR-10 subset: `--set dataset=cifar10` (the subset has no
CIFAR-100 folder); everything else stays as the study had it.
"""
PROTOCOL = dict(
    dataset="cifar100", val_size=2500, augment=True,
    optimizer="adam", lr=1e-3, schedule="cosine", lr_min=2e-5, weight_decay=0.0,
    epochs=100, batch_size=100, init="default",
    # A 100-epoch trial saves its state every epoch (a few MB, milliseconds), so a crash
    # retried through --max-failures loses at most one epoch.
    checkpoint_every=1,
)

# --smoke: one epoch on a few hundred images; the validation split shrinks with them.
SMOKE = dict(epochs=1, train_subset=384, test_subset=256, val_size=100)
