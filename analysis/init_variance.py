"""Report for study 003 (init_variance): how variances propagate through a freshly initialised network.

Figures: log-variance of the pre-activations vs layer, one line per init scheme
and one panel per activation (the signature figure of He et al. 2015), and the
same for the gradients w.r.t. each layer's input and weights. Tables: the
variance ratio between the last and first weight layers, and for ReLU the
measured per-layer factor against the closed-form prediction.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.plots import panel_lines
from analysis.document import Report
from trainables.geometry import IMAGE_SIZE, cnn_map_sides

# Closed-form per-layer factor of the pre-activation variance in a ReLU net with zero biases:
# Var(z_k) = fan_in * Var(w) * Var(z_{k-1}) / 2.
RELU_FACTOR = {"he_fan_in": lambda n: 1.0, "xavier": lambda n: 0.5, "normal_1": lambda n: n / 2,
               "normal_0_01": lambda n: n * 1e-4 / 2, "orthogonal": lambda n: 0.5}
FIGURES = (("pre_act_var", "Var of pre-activations (layer outputs)", "forward"),
           ("grad_input_var", "Var of d loss / d (layer input)", "gradient w.r.t. each layer's input"),
           ("grad_weight_var", "Var of d loss / d (layer weight)", "gradient w.r.t. each layer's weights"))


def probe_rows(tables: dict) -> pd.DataFrame:
    trials, layers = tables["trials"], tables["layers"]
    meta = trials[["trial_id", "scheme", "arch", "activation", "depth", "width", "init_batch"]]
    return layers[layers["epoch"] == 1].merge(meta, on="trial_id")


def end_ratios(rows: pd.DataFrame) -> pd.DataFrame:
    """Per trial: forward Var(last)/Var(first), gradient Var(first)/Var(last), and the per-layer factor."""
    out = []
    for (arch, act, scheme, depth), g in rows.groupby(["arch", "activation", "scheme", "depth"]):
        g = g.sort_values("layer")
        first, last = g.iloc[0], g.iloc[-1]
        fwd = last["pre_act_var"] / first["pre_act_var"]
        out.append(dict(arch=arch, activation=act, scheme=scheme, depth=depth, fwd_last_over_first=fwd,
                        per_layer_factor=fwd ** (1 / (len(g) - 1)) if fwd > 0 else np.nan,
                        grad_first_over_last=first["grad_input_var"] / last["grad_input_var"]))
    return pd.DataFrame(out)


def relu_factors(rows: pd.DataFrame) -> pd.DataFrame:
    """ReLU MLP: mean per-layer factor over the hidden width->width layers vs the prediction."""
    mlp = rows[(rows["arch"] == "mlp") & (rows["activation"] == "relu")]
    out = []
    for scheme, g in mlp.groupby("scheme"):
        var = g.sort_values("layer")["pre_act_var"].to_numpy()
        n = int(g["width"].iloc[0])
        measured = float(np.mean(var[2:-1] / var[1:-2]))  # layers 1..depth-2 are width -> width
        predicted = RELU_FACTOR[scheme](n) if scheme in RELU_FACTOR else np.nan
        out.append(dict(scheme=scheme, predicted=predicted, measured=measured,
                        rel_error=abs(measured - predicted) / predicted if not np.isnan(predicted) else np.nan))
    return pd.DataFrame(out)


def ratio_findings(wide: pd.DataFrame) -> str:
    """Per architecture and activation: the scheme whose forward variance stays closest to flat, and the one
    farthest from it (both in decades of Var(last) / Var(first))."""
    lines = []
    for column in wide.columns.drop("scheme"):
        ratios = wide.set_index("scheme")[column].dropna()
        ratios = ratios[ratios > 0]
        if not len(ratios):
            continue
        decades = np.log10(ratios).abs()
        best, worst = decades.idxmin(), decades.idxmax()
        line = f"- {column}: closest to flat: {best} (Var last / first = {ratios[best]:.3g})"
        if worst != best:
            line += f"; farthest: {worst} ({ratios[worst]:.3g})"
        lines.append(line + ".")
    if not lines:
        return "No forward variance ratios to compare."
    return "**Forward variance at init, last layer over first.**\n\n" + "\n".join(lines)


def build(report: Report, tables: dict) -> None:
    rows = probe_rows(tables)
    if not len(rows):
        report.findings("No probe rows: did the trials run with task=probe?")
        return
    report.text("No training: one forward and one backward pass (cross-entropy, float64) per trial at init. "
                "MLP: N(0, I) inputs; CNN (study 000, no BN): real normalised CIFAR images. Variances are pooled "
                "over batch, units and positions. Biases are zero and every weight layer gets the scheme.")
    ratios = end_ratios(rows)
    report.table("variance_ratios", ratios, "Variance ratios per trial",
                 "Last over first weight layer (forward), and first over last (gradient w.r.t. the layer input).")
    wide = ratios.pivot_table(index="scheme", columns=["arch", "activation"], values="fwd_last_over_first")
    wide.columns = [f"{a} {act}" for a, act in wide.columns]
    wide = wide.reset_index()
    report.table("forward_ratio", wide, "Forward variance ratio at init",
                 "Var(last layer) / Var(first layer): 1 = flat; >1 explodes; <1 vanishes.", main=True)
    report.findings(ratio_findings(wide))
    report.text("Reading the figures: He's gain sqrt(2) assumes ReLU. PReLU at its initial slope a = 0.25 passes "
                "(1 + a^2)/2 of the variance, so under He it grows by 1 + a^2 = 1.0625 per layer (x20 over 50); "
                "tanh and sigmoid are near-linear (gain 1, sigmoid with slope 1/4) at small inputs.")
    factors = relu_factors(rows)
    if len(factors):
        report.table("relu_mlp_factor", factors, "ReLU MLP: per-layer factor, measured vs closed form",
                     "Over the hidden layers; closed form: He 1, Xavier 1/2, N(0,1) n/2, N(0,0.01^2) n 1e-4/2, "
                     "orthogonal 1/2.")
        known = factors.dropna(subset=["rel_error"])
        if len(known):
            worst = known.loc[known["rel_error"].idxmax()]
            report.findings(f"ReLU MLP: the measured per-layer factor is within {worst['rel_error']:.1%} of the "
                            f"closed form for all {len(known)} scheme(s) that have one "
                            f"(largest gap: {worst['scheme']}).")
    cnn = rows[rows["arch"] == "cnn"]
    if len(cnn):
        sides = cnn_map_sides(int(cnn["depth"].max()), IMAGE_SIZE)
        if 1 in sides:  # the pooling rule is the model's own (trainables/geometry.py)
            report.text(f"CNN note: the study-000 CNN pools every second block until the map is 1x1 (after "
                        f"{sides.index(1) + 1} convs). A zero-padded 3x3 conv on a 1x1 map sees only its centre tap, "
                        "1/9 of the fan-in the init assumed, so from there on the variance shrinks by ~9x per layer "
                        "even under He.")
    for arch, part in rows.groupby("arch"):
        for column, ylabel, what in FIGURES:
            report.figure(f"{column}_{arch}", panel_lines(
                part, ["activation"], "scheme", "layer", column, ylabel=ylabel, logy=True,
                xlabel="layer (0 = input layer)", title=f"{arch}: {what} at init, one line per init"),
                f"{arch}: {what} vs layer", "Log scale; one panel per activation, one line per init.",
                main=column == "pre_act_var" and arch == rows["arch"].min())
