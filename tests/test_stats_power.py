"""Power and minimum detectable effects: exact power agrees with simulation and the normal approximation."""

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from volprobe.cli import main
from volprobe.stats.paired import mcnemar_pvalues
from volprobe.stats.power import binomial_power, mcnemar_power, mde_binomial, mde_mcnemar, minimum_detectable_drop


def _simulated_mcnemar_power(n, discordance, drop, reps, rng):
    psi = max(discordance, drop)
    u = rng.random((reps, n))
    lost = (u < (psi + drop) / 2).sum(axis=1)
    gained = ((u >= (psi + drop) / 2) & (u < psi)).sum(axis=1)
    return np.mean(mcnemar_pvalues(lost, gained) <= 0.05)


@pytest.mark.parametrize("n,discordance", [(300, 0.2), (60, 0.05), (40, 0.0)])
def test_power_at_the_mde_is_80_percent_in_simulation(n, discordance):
    mde = mde_mcnemar(n, discordance)
    assert np.isclose(mcnemar_power(n, discordance, mde), 0.8, atol=1e-4)
    reps = 6000
    sim = _simulated_mcnemar_power(n, discordance, mde, reps, np.random.default_rng(n))
    assert abs(sim - 0.8) < 3 * np.sqrt(0.8 * 0.2 / reps) + 0.005


def test_mde_agrees_with_connors_normal_approximation_for_large_n():
    n, psi = 5000, 0.2
    za, zb = stats.norm.isf(0.025), stats.norm.ppf(0.8)
    connor = lambda d: (za * np.sqrt(psi) + zb * np.sqrt(psi - d * d)) ** 2 / d ** 2 - n  # noqa: E731
    from scipy.optimize import brentq
    approx = brentq(connor, 1e-4, psi)
    assert mde_mcnemar(n, psi) == pytest.approx(approx, rel=0.03)


def test_mde_shrinks_with_more_items_and_is_nan_when_unreachable():
    values = [mde_mcnemar(n, 0.2) for n in (100, 400, 1600)]
    assert values[0] > values[1] > values[2]
    assert values[1] / values[2] == pytest.approx(2, rel=0.15)  # ~ 1/sqrt(n)
    assert np.isnan(mde_mcnemar(3, 0.5))  # three pairs can never reach p <= 0.05
    assert mde_mcnemar(300, 0.2, alternative="greater") < mde_mcnemar(300, 0.2)


def test_zero_discordance_needs_the_drop_itself_as_discordance():
    # with no discordance observed, a drop d means at least d·n one-directional changes
    mde = mde_mcnemar(200, 0.0)
    assert mde == pytest.approx(mde_mcnemar(200, mde), rel=1e-3)
    assert 0 < mde < 0.1


def test_binomial_mde_and_power():
    n, p0 = 150, 0.3
    for alternative in ("greater", "two-sided"):
        mde = mde_binomial(n, p0, alternative=alternative)
        assert binomial_power(n, p0, p0 + mde, alternative=alternative) == pytest.approx(0.8, abs=1e-4)
    below = mde_binomial(n, p0, alternative="less")
    assert binomial_power(n, p0, p0 - below, alternative="less") == pytest.approx(0.8, abs=1e-4)
    rng = np.random.default_rng(1)  # one-sided exact test: simulate it
    mde = mde_binomial(n, p0)
    k = rng.binomial(n, p0 + mde, 20000)
    assert np.mean(stats.binom.sf(k - 1, n, p0) <= 0.05) == pytest.approx(0.8, abs=0.015)


def test_mde_at_least_a_floor_is_the_larger_of_the_two():
    """The report's paired MDE: max(exact McNemar MDE, the cluster test's), without solving when the floor
    already has the power."""
    plain = mde_mcnemar(400, 0.2, 0.001)
    assert mde_mcnemar(400, 0.2, 0.001, at_least=plain / 2) == pytest.approx(plain, abs=2e-5)
    assert mde_mcnemar(400, 0.2, 0.001, at_least=1.5 * plain) == 1.5 * plain
    assert np.isnan(mde_mcnemar(5, 0.2, 0.001, at_least=0.1))  # unreachable stays unreachable


def test_power_result_and_cli():
    res = minimum_detectable_drop(1304, 0.2)
    assert "3.5 points" in str(res) and res.mde == pytest.approx(0.0353, abs=5e-4)
    out = CliRunner().invoke(main, ["power", "--items", "1304", "--discordance", "0.2"])
    assert out.exit_code == 0 and "minimum detectable drop = 3.5 points" in out.output
    with pytest.raises(ValueError, match="discordance"):
        minimum_detectable_drop(10, 1.5)
