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


# ------------------------------------------------------------------ planning for the cluster-robust test

#: (patients, questions per patient, discordance, intra-patient correlation, alternative)
PLANNED = [(20, 20, 0.35, 0.1, "two-sided"), (10, 40, 0.3, 0.05, "two-sided"), (60, 5, 0.45, 0.2, "two-sided"),
           (30, 10, 0.25, 0.0, "two-sided"), (12, 30, 0.4, 0.1, "less")]


@pytest.mark.parametrize("patients,per_patient,discordance,icc,alternative", PLANNED)
def test_the_clustered_plan_delivers_its_power(patients, per_patient, discordance, icc, alternative):
    """Data drawn as the plan assumes, at the planned minimum detectable drop: the report's cluster-robust
    test rejects in 80% of data sets (4,000 each: 3 Monte-Carlo SE = 1.9 points). Planning as if items were
    independent (exact McNemar) promises a drop that the report's test finds far less often when the items
    are correlated."""
    from volprobe.stats.power import mde_clustered
    from volprobe.stats.simulation import cluster_rejections, planned_drop_pairs

    n = patients * per_patient
    drop = mde_clustered(n, patients, discordance, icc, 0.05, 0.8, alternative)
    rng = np.random.default_rng([patients, per_patient])
    data = planned_drop_pairs(rng, 4000, patients, per_patient, discordance, drop, icc)
    assert abs(-(data.y.astype(int) - data.x).mean() - drop) < 0.01  # the data have the planned drop
    achieved = cluster_rejections(data, 0.05, alternative).mean()
    assert 0.8 - 0.035 <= achieved <= 0.8 + 0.035, achieved
    if icc >= 0.05 and per_patient >= 20:
        naive = mde_mcnemar(n, discordance, 0.05, 0.8)
        assert naive < 0.7 * drop
        naive_data = planned_drop_pairs(rng, 4000, patients, per_patient, discordance, naive, icc)
        assert cluster_rejections(naive_data, 0.05, alternative).mean() < 0.5


def test_the_clustered_plan_reduces_to_independent_items():
    """With no intra-patient correlation and many patients, the plan equals the item-level one (the t test's
    normal limit against exact McNemar); it grows with the correlation and falls with more patients."""
    from volprobe.stats.power import mde_clustered

    assert mde_clustered(4000, 1000, 0.2, 0.0) == pytest.approx(mde_mcnemar(4000, 0.2), rel=0.03)
    assert mde_clustered(400, 20, 0.2, 0.0) < mde_clustered(400, 20, 0.2, 0.05) < mde_clustered(400, 20, 0.2, 0.2)
    assert mde_clustered(800, 40, 0.2, 0.1) < mde_clustered(800, 20, 0.2, 0.1)
    assert np.isnan(mde_clustered(400, 5, 0.2, 0.1))  # the exact sign-flip test of 5 patients cannot reach 5%
    floor = mde_clustered(400, 20, 0.0, 0.1)  # no discordance expected: the drop brings its own
    assert floor > 0 and mde_clustered(400, 20, floor, 0.1) == pytest.approx(floor)
    assert mde_clustered(400, 20, 0.01, 0.1) == pytest.approx(floor)
    with pytest.raises(ValueError, match="patients"):
        mde_clustered(100, 101, 0.2, 0.1)
    with pytest.raises(ValueError, match="icc"):
        mde_clustered(100, 10, 0.2, -0.1)


@pytest.mark.parametrize("patients,per_patient,icc", [(60, 10, 0.2), (40, 15, 0.1), (30, 20, 0.05)])
def test_the_intra_patient_correlation_is_recovered(patients, per_patient, icc):
    from volprobe.stats.power import intra_patient_correlation
    from volprobe.stats.simulation import planned_drop_pairs

    data = planned_drop_pairs(np.random.default_rng(patients), 200, patients, per_patient, 0.4, 0.05, icc)
    d = data.y.astype(int) - data.x
    clusters = np.repeat(np.arange(patients), per_patient)
    estimates = [intra_patient_correlation(d[r].ravel(), clusters) for r in range(200)]
    assert np.mean(estimates) == pytest.approx(icc, abs=0.01)


def test_power_from_a_pilot_run(tmp_path):
    """probe power --pilot reads a run's records: the discordance and drop are those of the records (the
    reference against the control, item by item), the correlation is the estimator's on the per-patient
    differences, and the plan keeps the pilot's questions per patient unless told otherwise."""
    import json

    from volprobe.stats.power import intra_patient_correlation, pilot_estimate
    from volprobe.stats.synthetic import SyntheticControl, SyntheticModel, synthetic_items, write_synthetic_runs

    controls = [SyntheticControl("full", reference=True), SyntheticControl("blank", removes_image=True)]
    items = synthetic_items(600, 30, seed=4, kind_shares=(1, 1, 1, 1, 0))  # closed items only
    (run,) = write_synthetic_runs(tmp_path, [SyntheticModel("m", accuracy=0.9, patient_sd=1.2)], items, controls)
    records = [json.loads(line) for f in sorted(run.glob("records*.jsonl")) for line in f.read_text().splitlines()]
    by = {(r["control"], r["item_id"]): r for r in records if not r.get("error")}
    ids = sorted({i for c, i in by if c == "full"} & {i for c, i in by if c == "blank"})
    d = np.array([int(by["blank", i]["correct"]) - int(by["full", i]["correct"]) for i in ids])
    patients = [by["full", i]["patient"] for i in ids]

    pilot = pilot_estimate([run], "blank")
    assert (pilot.model, pilot.reference, pilot.n, pilot.patients) == ("m", "full", len(ids), len(set(patients)))
    assert pilot.discordance == pytest.approx(np.mean(d != 0)) and pilot.drop == pytest.approx(-d.mean())
    assert pilot.icc == pytest.approx(intra_patient_correlation(d, patients)) and pilot.icc > 0.02
    plan = pilot.plan(n=2 * pilot.n)
    assert plan.patients == 2 * pilot.patients and plan.icc == pilot.icc
    out = CliRunner().invoke(main, ["power", "--pilot", str(run), "--control", "blank", "--items", str(2 * pilot.n)])
    assert out.exit_code == 0, out.output
    assert "cluster-robust paired t test over patients" in out.output and f"{100 * plan.mde:.1f} points" in out.output
