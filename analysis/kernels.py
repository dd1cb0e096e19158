"""Pictures of learned conv kernels, from a trial's checkpoint (study 004's kernel figures).

    python -m analysis.kernels <storage>/<name> <trial_id> [--layers 0,2] [--init]

The first conv layer (3 input channels) is drawn as one RGB picture per filter;
deeper layers as one grey picture per (filter, input channel), a row per filter,
as the source's figures did. Each picture is min-max scaled on its own, so the
pattern shows whatever the weight scale. Trials keep the weights at init in
their last checkpoint when run with `weight_snapshots=true`; `--init` draws those.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

STATE_FILE = "state.pt"


def find_checkpoint(sweep_path: str | Path, trial_id: str) -> Path | None:
    """The latest checkpoint file Ray kept for `trial_id` under <sweep>/tune/, or None."""
    found = sorted(Path(sweep_path).glob(f"tune/*{trial_id}*/checkpoint_*/{STATE_FILE}"))
    return found[-1] if found else None


def load_state(path: str | Path) -> dict:
    # Our own checkpoints hold optimizer and RNG state too, hence weights_only=False: only open trusted files.
    return torch.load(path, map_location="cpu", weights_only=False)


def conv_weights(state_dict: dict) -> list[tuple[str, torch.Tensor]]:
    """(name, weight) of every conv layer (4-D weight) in state_dict order, i.e. forward order."""
    return [(k, v.float()) for k, v in state_dict.items() if k.endswith("weight") and v.ndim == 4]


def _scaled(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.full_like(a, 0.5)


def draw_rgb(ax_grid, weight: torch.Tensor) -> None:
    """One RGB tile per output filter of a 3-input-channel conv."""
    tiles = weight.numpy().transpose(0, 2, 3, 1)  # out, k, k, rgb
    for i, ax in enumerate(ax_grid):
        if i < len(tiles):
            ax.imshow(_scaled(tiles[i]), interpolation="nearest")
        ax.axis("off")


def kernel_figure(weight: torch.Tensor, title: str, max_out: int = 16, max_in: int = 16):
    """A figure of one conv layer's kernels: RGB tiles for 3 input channels, else filter x input-channel grid."""
    out_ch, in_ch = weight.shape[:2]
    if in_ch == 3:
        cols = min(8, out_ch)
        rows = math.ceil(out_ch / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9 + 0.5), squeeze=False)
        draw_rgb(list(axes.flat), weight)
    else:
        rows, cols = min(out_ch, max_out), min(in_ch, max_in)
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.6, rows * 0.6 + 0.5), squeeze=False)
        for r in range(rows):
            for c in range(cols):
                axes[r, c].imshow(_scaled(weight[r, c].numpy()), cmap="gray", interpolation="nearest")
                axes[r, c].axis("off")
        title += f" (filters x input channels, first {rows} x {cols} of {out_ch} x {in_ch})"
    fig.suptitle(title, fontsize=9)
    return fig


def init_vs_final(rows: list[tuple[str, torch.Tensor, torch.Tensor]]):
    """First-layer kernels at init (left) and after training (right), one row per labelled trial."""
    cols = 8
    tiles = [max(1, math.ceil(w.shape[0] / cols)) for _, w, _ in rows]
    fig = plt.figure(figsize=(2 * cols * 0.55 + 0.6, sum(tiles) * 0.6 + 0.3 * len(rows)))
    grid = fig.add_gridspec(len(rows), 2, height_ratios=tiles, hspace=0.25, wspace=0.08)
    for r, (label, init, final) in enumerate(rows):
        for c, (weight, when) in enumerate(((init, "at init"), (final, "after training"))):
            sub = grid[r, c].subgridspec(tiles[r], cols, wspace=0.05, hspace=0.05)
            axes = [fig.add_subplot(sub[i // cols, i % cols]) for i in range(tiles[r] * cols)]
            draw_rgb(axes, weight)
            axes[0].set_title(f"{label}: {when}", fontsize=8, loc="left")
    return fig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="<storage>/<name> of a sweep")
    p.add_argument("trial_id")
    p.add_argument("--layers", default="0", help="conv layer indices, 0-based, comma-separated (default 0)")
    p.add_argument("--init", action="store_true", help="draw the weights at init instead of the final ones")
    p.add_argument("--out", default=None, help="output folder (default <path>/report/kernels)")
    args = p.parse_args(argv)
    ckpt = find_checkpoint(args.path, args.trial_id)
    if ckpt is None:
        print(f"error: no checkpoint for trial {args.trial_id} under {args.path}/tune "
              "(run with weight_snapshots=true or checkpoint_every)")
        return 2
    state = load_state(ckpt)
    if args.init and "init_model" not in state:
        print(f"error: {ckpt} holds no weights at init (run with weight_snapshots=true)")
        return 2
    convs = conv_weights(state["init_model" if args.init else "model"])
    out = Path(args.out or Path(args.path) / "report" / "kernels")
    out.mkdir(parents=True, exist_ok=True)
    for text in args.layers.split(","):
        k = int(text)
        if not 0 <= k < len(convs):
            print(f"error: --layers {k}: this model has conv layers 0..{len(convs) - 1}")
            return 2
        name, weight = convs[k]
        fig = kernel_figure(weight, f"{args.trial_id} conv {k} ({name}){' at init' if args.init else ''}")
        target = out / f"{args.trial_id}-conv{k}{'-init' if args.init else ''}.png"
        fig.savefig(target, dpi=110, bbox_inches="tight")
        plt.close(fig)
        print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
