"""`python -m analysis.theory`: the seed's closed-form results (study 003) against Monte Carlo measurements.

Each check is a theory value, a measured value and a tolerance fixed before
looking: Monte Carlo means and variances pass within Z standard errors (the SE
estimated from the same samples), distribution fits pass when a chi-square
goodness-of-fit test gives p >= P_MIN, BatchNorm's identities hold to float
rounding, and the deep-MLP variance factors pass within REL_TOL of the
prediction. Seeds are fixed, so the table is the same on every run. The dropout
and BatchNorm checks run PyTorch's own F.dropout / F.batch_norm, and the deep
MLP check runs the project's `mlp` model through the probe's `measure`.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats

Z = 4.0           # Monte Carlo checks pass within 4 standard errors
P_MIN = 0.001     # goodness-of-fit checks pass when the chi-square p-value is at least this
REL_TOL = 0.05    # deep-MLP per-layer variance factors pass within 5% of the prediction
BAND = 10.0       # He: every layer's pre-activation variance within this factor of the first layer's
SAMPLES = 2_000_000


@dataclass
class Check:
    name: str
    theory: float
    measured: float
    tolerance: float  # pass when |measured - theory| <= tolerance (or measured >= theory for "at least")
    margin: str
    at_least: bool = False

    @property
    def passed(self) -> bool:
        if self.at_least:
            return self.measured >= self.theory
        return abs(self.measured - self.theory) <= self.tolerance

    @property
    def rel_error(self) -> float:
        return math.nan if self.at_least or self.theory == 0 else abs(self.measured - self.theory) / abs(self.theory)


def mean_check(name: str, theory: float, x: torch.Tensor) -> Check:
    se = x.std().item() / math.sqrt(x.numel())
    return Check(name, theory, x.mean().item(), Z * se, f"{Z:g} SE (SE {se:.2g})")


def var_check(name: str, theory: float, x: torch.Tensor) -> Check:
    sq = (x - x.mean()) ** 2  # the variance is the mean of these, so its SE is theirs
    se = sq.std().item() / math.sqrt(x.numel())
    return Check(name, theory, x.var().item(), Z * se, f"{Z:g} SE (SE {se:.2g})")


def fit_check(name: str, counts: np.ndarray, pmf) -> Check:
    """Chi-square goodness of fit of integer `counts` to `pmf(k)`, merging tail bins with expected < 5."""
    n = len(counts)
    ks = np.arange(counts.max() + 2)
    expected = n * pmf(ks)
    observed = np.bincount(counts, minlength=len(ks))[: len(ks)].astype(float)
    expected[-1] = n - expected[:-1].sum()  # the last bin holds the whole upper tail
    keep = expected >= 5
    lo, hi = np.argmax(keep), len(keep) - np.argmax(keep[::-1])  # merge both sparse tails into the edge bins
    obs = np.r_[observed[:lo].sum() + observed[lo], observed[lo + 1:hi - 1], observed[hi - 1] + observed[hi:].sum()]
    exp = np.r_[expected[:lo].sum() + expected[lo], expected[lo + 1:hi - 1], expected[hi - 1] + expected[hi:].sum()]
    p = stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue
    return Check(name, P_MIN, float(p), math.nan, f"chi-square p >= {P_MIN:g} ({len(obs)} bins)", at_least=True)


def relu_checks(g: torch.Generator) -> list[Check]:
    h = F.relu(torch.randn(SAMPLES, generator=g, dtype=torch.float64))
    return [mean_check("E[ReLU(z)] = 1/sqrt(2 pi), z ~ N(0,1)", 1 / math.sqrt(2 * math.pi), h),
            var_check("Var[ReLU(z)] = 1/2 - 1/(2 pi)", 0.5 - 1 / (2 * math.pi), h)]


def dropout_checks(g: torch.Generator, ps=(0.3, 0.5)) -> list[Check]:
    out = []
    for p in ps:
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))  # F.dropout draws from the global RNG
        h = F.dropout(F.relu(torch.randn(SAMPLES, generator=g, dtype=torch.float64)), p, training=True)
        out += [mean_check(f"inverted dropout p={p}: mean unchanged, 1/sqrt(2 pi)", 1 / math.sqrt(2 * math.pi), h),
                var_check(f"inverted dropout p={p}: Var = 1/(2(1-p)) - 1/(2 pi)",
                          1 / (2 * (1 - p)) - 1 / (2 * math.pi), h)]
    return out


def kept_units(mask_rows: int, units: int, p: float) -> np.ndarray:
    """Kept units per row of `mask_rows` PyTorch dropout masks over `units` hidden units."""
    kept = F.dropout(torch.ones(mask_rows, units), p, training=True) != 0
    return kept.sum(1).numpy()


def binomial_checks(seed: int, units: int = 100, p: float = 0.3, rows: int = 50_000) -> list[Check]:
    torch.manual_seed(seed)
    k = kept_units(rows, units, p)
    t = torch.from_numpy(k).double()
    q = 1 - p
    return [mean_check(f"kept units, M={units} p={p}: mean M(1-p)", units * q, t),
            var_check(f"kept units, M={units} p={p}: var M p (1-p)", units * p * q, t),
            fit_check(f"kept units ~ Binomial({units}, {q:g})", k, lambda x: stats.binom.pmf(x, units, q))]


def poisson_limit_checks(seed: int, lam: float = 3.0) -> list[Check]:
    """Binomial(M, lam/M) -> Poisson(lam): exact total variation shrinks under Le Cam's bound lam^2/M."""
    out = []
    for m in (10, 100, 1000, 10_000):
        ks = np.arange(m + 1)
        tv = 0.5 * (np.abs(stats.binom.pmf(ks, m, lam / m) - stats.poisson.pmf(ks, lam)).sum()
                    + stats.poisson.sf(m, lam))
        out.append(Check(f"TV(Binomial(M={m}, {lam:g}/M), Poisson({lam:g}))", 0.0, float(tv), lam**2 / m,
                         "Le Cam bound lam^2/M"))
    torch.manual_seed(seed)
    m = 1000
    k = kept_units(10_000, m, 1 - lam / m)
    out.append(fit_check(f"kept of M={m} with M(1-p)={lam:g} ~ Poisson({lam:g})", k, lambda x: stats.poisson.pmf(x, lam)))
    return out


def thinning_checks(seed: int, lam: float = 20.0, p: float = 0.3, rows: int = 100_000) -> list[Check]:
    """M ~ Poisson(lam) units, each kept with prob 1-p (a dropout mask over the first M): kept ~ Poisson((1-p) lam)."""
    rng = np.random.default_rng(seed)
    m = rng.poisson(lam, rows)
    keep = rng.random((rows, m.max())) < 1 - p
    k = (keep & (np.arange(m.max()) < m[:, None])).sum(1)
    t, mu = torch.from_numpy(k).double(), (1 - p) * lam
    return [mean_check(f"M ~ Poisson({lam:g}), p={p}: kept mean (1-p) lam", mu, t),
            var_check(f"M ~ Poisson({lam:g}), p={p}: kept var (1-p) lam", mu, t),
            fit_check(f"kept ~ Poisson({mu:g})", k, lambda x: stats.poisson.pmf(x, mu))]


def batchnorm_checks(g: torch.Generator, batch: int = 512, features: int = 64) -> list[Check]:
    """Per feature, BN's output has batch mean beta and (biased) variance gamma^2 (eps << the input variance)."""
    y = torch.randn(batch, features, generator=g, dtype=torch.float64) * torch.linspace(1, 10, features, dtype=torch.float64) + 5
    gamma = torch.rand(features, generator=g, dtype=torch.float64) * 2 + 0.5
    beta = torch.randn(features, generator=g, dtype=torch.float64)
    out = F.batch_norm(y, None, None, gamma, beta, training=True, eps=1e-5)
    mean_err = (out.mean(0) - beta).abs()
    var_rel = (out.var(0, unbiased=False) / gamma**2 - 1).abs()
    j, i = int(mean_err.argmax()), int(var_rel.argmax())
    return [Check(f"BN mean = beta (worst of {features} features)", beta[j].item(), out[:, j].mean().item(),
                  1e-9, "float64 rounding"),
            Check(f"BN var = gamma^2 (worst of {features} features)", gamma[i].item() ** 2,
                  out[:, i].var(unbiased=False).item(), 1e-4 * gamma[i].item() ** 2, "eps/Var(y) <= 1e-5, rel 1e-4")]


def deep_mlp_variances(init: dict, width: int = 256, depth: int = 50, batch: int = 64, seeds=(0, 1, 2)) -> np.ndarray:
    """Pre-activation variance per layer (seeds x layers) of the project's ReLU `mlp` on N(0, I) inputs, float64."""
    from trainables.config import resolve
    from trainables.inits import apply_init
    from trainables.models import build_model
    from trainables.probe import measure

    out = []
    for seed in seeds:
        config = resolve(dict(model="mlp", width=width, depth=depth, activation="relu", init_targets="all",
                              init_bias="zero", seed=seed, **init))
        torch.manual_seed(seed)
        model = apply_init(build_model(config, 10), config).double()
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        _, rows = measure(model, x, torch.zeros(batch, dtype=torch.long), backward=False)
        out.append([r["pre_act_var"] for r in rows])
    return np.array(out)


def deep_mlp_checks(width: int = 256, depth: int = 50) -> list[Check]:
    """Per-layer factor Var(z_k) / Var(z_{k-1}) over the hidden width->width layers (1..depth-2)."""
    cases = [("He (fan_in)", dict(init="he_normal", init_mode="fan_in"), 1.0),
             ("Xavier", dict(init="xavier_normal"), 0.5),
             ("N(0,1)", dict(init="normal", init_std=1.0), width / 2)]
    out = []
    for label, init, predicted in cases:
        var = deep_mlp_variances(init, width, depth)
        ratios = var[:, 1:depth - 1] / var[:, : depth - 2]
        out.append(Check(f"ReLU MLP n={width}, {label}: per-layer Var factor", predicted, float(ratios.mean()),
                         REL_TOL * predicted, f"{REL_TOL:.0%} of prediction"))
        if label.startswith("He"):
            rel = (var[:, : depth - 1] / var[:, :1]).mean(0)  # seed-averaged Var(z_k) / Var(z_0)
            spread = float(max(rel.max(), 1 / rel.min()))
            out.append(Check(f"ReLU MLP n={width}, He: max band of Var(z_k)/Var(z_1) over {depth - 1} layers",
                             1.0, spread, BAND - 1, f"within x{BAND:g} (Xavier: 2^-{depth - 2}, N(0,1): {width // 2}^{depth - 2})"))
    return out


def run_checks(seed: int = 0) -> list[Check]:
    g = torch.Generator().manual_seed(seed)
    return (relu_checks(g) + dropout_checks(g) + binomial_checks(seed) + poisson_limit_checks(seed)
            + thinning_checks(seed) + batchnorm_checks(g) + deep_mlp_checks())


def table(checks: list[Check]) -> pd.DataFrame:
    return pd.DataFrame([dict(check=c.name, theory=c.theory, measured=c.measured, rel_error=c.rel_error,
                              margin=c.margin, result="pass" if c.passed else "FAIL") for c in checks])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    checks = run_checks(args.seed)
    with pd.option_context("display.max_colwidth", 80, "display.width", 250, "display.float_format", "{:.6g}".format):
        print(table(checks).to_string(index=False))
    failed = [c.name for c in checks if not c.passed]
    print(f"\n{len(checks) - len(failed)}/{len(checks)} checks pass")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
