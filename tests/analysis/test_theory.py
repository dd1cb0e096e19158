"""The seed's closed-form results (study 003) against Monte Carlo, as `python -m analysis.theory` prints them.

Margins (fixed in analysis/theory.py, before looking at the numbers): Monte Carlo
means and variances within Z = 4 standard errors estimated from the same
samples; distribution fits at chi-square p >= 0.001; BatchNorm identities to
float64 rounding (variance: relative 1e-4, which covers eps / Var); deep ReLU
MLP per-layer variance factors within 5% of 1 (He), 1/2 (Xavier) and n/2
(N(0,1)), and under He every layer within a factor 10 of the first.
Seeds are fixed, so each run sees the same samples.
"""
import math

import pytest
import torch

from analysis import theory

pytestmark = pytest.mark.numerics  # computed numbers compared: CI runs these again under ATEN_CPU_CAPABILITY=default


def assert_all_pass(checks):
    assert checks, "no checks ran"
    failed = [f"{c.name}: theory {c.theory:.6g} measured {c.measured:.6g} ({c.margin})" for c in checks if not c.passed]
    assert not failed, "\n".join(failed)


def test_relu_mean_and_variance():
    checks = theory.relu_checks(torch.Generator().manual_seed(0))
    assert_all_pass(checks)
    assert all(c.rel_error < 0.01 for c in checks)


def test_inverted_dropout_keeps_mean_and_sets_variance():
    assert_all_pass(theory.dropout_checks(torch.Generator().manual_seed(1)))


def test_the_non_inverted_variance_formula_would_fail():
    """The checks can fail: plain ReLU variance is not the variance after dropout with p = 0.5."""
    g = torch.Generator().manual_seed(1)
    h = torch.nn.functional.dropout(torch.relu(torch.randn(theory.SAMPLES, generator=g, dtype=torch.float64)), 0.5)
    assert not theory.var_check("wrong", 0.5 - 1 / (2 * math.pi), h).passed


def test_kept_units_are_binomial():
    assert_all_pass(theory.binomial_checks(seed=2))


def test_binomial_goodness_of_fit_rejects_a_wrong_distribution():
    k = theory.kept_units(50_000, 100, 0.3)
    assert not theory.fit_check("wrong p", k, lambda x: theory.stats.binom.pmf(x, 100, 0.65)).passed


def test_poisson_limit():
    checks = theory.poisson_limit_checks(seed=3)
    assert_all_pass(checks)
    tvs = [c.measured for c in checks if c.name.startswith("TV")]
    assert tvs == sorted(tvs, reverse=True)  # the distance shrinks as M grows


def test_poisson_thinning():
    assert_all_pass(theory.thinning_checks(seed=4))


def test_batchnorm_mean_beta_variance_gamma_squared():
    assert_all_pass(theory.batchnorm_checks(torch.Generator().manual_seed(5)))


def test_deep_relu_mlp_variance_factors():
    checks = theory.deep_mlp_checks()
    assert_all_pass(checks)
    assert {c.theory for c in checks} >= {1.0, 0.5, 128.0}


def test_cli_prints_the_table(capsys, monkeypatch):
    monkeypatch.setattr(theory, "deep_mlp_checks", lambda: [])  # covered above; keep this test fast
    assert theory.main([]) == 0
    out = capsys.readouterr().out
    assert "Var[ReLU(z)] = 1/2 - 1/(2 pi)" in out and "pass" in out and "FAIL" not in out
