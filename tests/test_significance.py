"""The tests between groups of `nnexp compare` against published values and scipy.stats."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from nnexp.compare.significance import (PAIRED, WELCH, against_reference, hedges_g, holm, pairs_by_seed, paired,
                                        power, seeds_needed, summarize_values, welch)

# Welch's t-test, worked example (Wikipedia, "Welch's t-test", example 1): t = -2.46, df = 24.99, p = 0.021
A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]

# Student's sleep data (Cushny and Peebles; R's `sleep`): extra hours of sleep of ten patients under two drugs.
# R, t.test(extra ~ group, data = sleep, paired = TRUE): t = -4.0621, df = 9, p-value = 0.002833,
#   95 percent confidence interval: -2.4598858 -0.7001142, mean difference -1.58
# R, t.test(extra ~ group, data = sleep) (Welch): t = -1.8608, df = 17.776, p-value = 0.07939,
#   95 percent confidence interval: -3.3654832 0.2054832
DRUG1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_welch_matches_the_worked_example_and_scipy():
    r = welch(A1, A2)
    assert r.test == WELCH
    assert r.diff / ((r.high - r.low) / 2 / stats.t.ppf(0.975, r.df)) == pytest.approx(-2.46, abs=0.005)
    assert r.df == pytest.approx(24.99, abs=0.005) and r.p == pytest.approx(0.021, abs=0.0005)
    ref = stats.ttest_ind(A1, A2, equal_var=False)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-10) and r.df == pytest.approx(ref.df, rel=1e-12)
    low, high = ref.confidence_interval()
    assert (r.low, r.high) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))


def test_paired_and_welch_on_the_sleep_data_match_r():
    p = paired(DRUG1, DRUG2)
    assert p.test == PAIRED and p.df == 9 and p.n == 10
    assert p.diff == pytest.approx(-1.58)
    assert p.p == pytest.approx(0.002833, abs=5e-7)
    assert (p.low, p.high) == (pytest.approx(-2.4598858, abs=1e-7), pytest.approx(-0.7001142, abs=1e-7))
    assert p.effect == pytest.approx(-1.58 / stats.tstd([x - y for x, y in zip(DRUG1, DRUG2)]))  # d_z
    w = welch(DRUG1, DRUG2)
    assert w.df == pytest.approx(17.776, abs=5e-4) and w.p == pytest.approx(0.07939, abs=5e-6)
    assert (w.low, w.high) == (pytest.approx(-3.3654832, abs=1e-7), pytest.approx(0.2054832, abs=1e-7))
    # pairing removes the patient-to-patient spread: the same difference becomes clear
    assert p.p < 0.01 < 0.05 < w.p
    rel = stats.ttest_rel(DRUG1, DRUG2)
    assert p.p == pytest.approx(rel.pvalue, rel=1e-10)


def test_hedges_g_is_cohens_d_with_the_small_sample_correction():
    a, b = summarize_values(DRUG1), summarize_values(DRUG2)
    pooled = math.sqrt((a.std ** 2 + b.std ** 2) / 2)  # equal group sizes
    d = (a.mean - b.mean) / pooled
    g = hedges_g(a, b)
    assert g == pytest.approx(d * (1 - 3 / (4 * 18 - 1)), rel=1e-3)  # Hedges' approximation of J(18)
    assert abs(g) < abs(d)
    # three seeds per group: J(4) = 0.7979, a fifth off d
    three = hedges_g(summarize_values([1.0, 2.0, 3.0]), summarize_values([2.0, 3.0, 4.0]))
    assert three == pytest.approx(-1.0 * math.gamma(2) / (math.sqrt(2) * math.gamma(1.5)), rel=1e-12)


def test_t_quantile_matches_the_tables():
    # t(0.975; df) for 95% intervals, tabulated: 12.706 (1), 4.303 (2), 2.776 (4), 2.262 (9), 2.045 (29)
    for n, table in ((2, 12.706), (3, 4.303), (5, 2.776), (10, 2.262), (30, 2.045)):
        s = summarize_values([0.0] * (n - 1) + [1.0])
        assert s.ci95 / (s.std / math.sqrt(n)) == pytest.approx(table, abs=5e-4)


def test_holm_on_the_textbook_example():
    # Holm-Bonferroni (Wikipedia): p = 0.01, 0.04, 0.03, 0.005 at alpha 0.05 rejects H1 and H4 only.
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> made monotone: 0.06 for both.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p <= 0.05 for p in holm([0.01, 0.04, 0.03, 0.005])] == [True, False, False, True]
    adjusted = holm([0.5, math.nan, 0.9])
    assert math.isnan(adjusted[1]) and adjusted[0] == 1.0 and adjusted[2] == 1.0  # capped, NaN left alone


@pytest.mark.parametrize("effect, paired_test, n", [
    (0.8, False, 26), (0.5, False, 64), (0.2, False, 394),  # Cohen's table 2.4.1 (393 for 0.2) and G*Power
    (-0.8, False, 26), (0.5, True, 34),  # the sign does not matter; paired: G*Power gives 34 pairs for d_z 0.5
])
def test_seeds_needed_for_80_percent_power_match_power_tables(effect, paired_test, n):
    assert seeds_needed(effect, paired_test) == n
    assert power(effect, n, paired_test) >= 0.8 > power(effect, n - 1, paired_test)


@pytest.mark.parametrize("effect", [0.0, math.nan, None, math.inf])
def test_seeds_needed_is_none_without_an_effect(effect):
    assert seeds_needed(effect, False) is None


def test_huge_effects_need_two_seeds():
    assert seeds_needed(25.0, False) == 2 and seeds_needed(25.0, True) == 2


def test_groups_are_paired_only_when_they_ran_the_same_seeds():
    assert pairs_by_seed([(0, 1.0), (1, 2.0)], [(1, 5.0), (0, 4.0)]) == ([1.0, 2.0], [4.0, 5.0])
    assert pairs_by_seed([(0, 1.0), (1, 2.0)], [(0, 4.0), (2, 5.0)]) is None  # different seeds
    assert pairs_by_seed([(0, 1.0), (1, math.nan)], [(0, 4.0), (1, 5.0)]) is None  # a value missing
    assert pairs_by_seed([(0, 1.0), (0, 2.0)], [(0, 4.0), (1, 5.0)]) is None  # a seed twice
    assert pairs_by_seed([(None, 1.0), (None, 2.0)], [(None, 4.0), (None, 5.0)]) is None  # no seeds known


def test_every_group_against_the_reference():
    groups = [
        [(0, 0.95), (1, 0.96), (2, 0.97)],  # the reference
        [(0, 0.90), (1, 0.92), (2, 0.94)],  # same seeds: paired
        [(5, 0.93), (6, 0.96), (7, 0.94), (8, 0.955)],  # other seeds: Welch
        [(0, 0.5)],  # one run: nothing to test
    ]
    out = against_reference(groups, 0)
    assert out[0] is None and out[3] is None
    assert out[1]["test"] == PAIRED and out[1]["diff"] == pytest.approx(-0.04)
    ref = stats.ttest_rel([0.90, 0.92, 0.94], [0.95, 0.96, 0.97])
    assert out[1]["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert out[2]["test"] == WELCH
    ref = stats.ttest_ind([0.93, 0.96, 0.94, 0.955], [0.95, 0.96, 0.97], equal_var=False)
    assert out[2]["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert [out[1]["p_holm"], out[2]["p_holm"]] == pytest.approx(holm([out[1]["p"], out[2]["p"]]))
    assert out[1]["seeds_80"] == seeds_needed(out[1]["effect"], True)


def test_groups_without_spread_have_no_p_value():
    out = against_reference([[(0, 1.0), (1, 1.0)], [(2, 0.5), (3, 0.5)]], 0)
    assert out[1]["diff"] == -0.5 and math.isnan(out[1]["p"]) and out[1]["seeds_80"] is None
    assert math.isnan(out[1]["p_holm"])


def test_each_test_refuses_samples_it_cannot_compare():
    with pytest.raises(ValueError, match="at least two values"):
        welch([0.9, 0.8, 0.7], [0.5])
    with pytest.raises(ValueError, match="at least two values"):
        welch([0.9], [0.5, 0.6, 0.7])
    with pytest.raises(ValueError, match="same length"):
        paired([0.9, 0.8, 0.7], [0.5, 0.6])
    with pytest.raises(ValueError, match="same length"):
        paired([0.9, 0.8], [0.5, 0.6, 0.7])


def test_runs_without_a_known_seed_are_never_paired():
    nan_seeds = [(math.nan, 1.0), (0, 2.0)], [(math.nan, 4.0), (0, 5.0)]
    assert pairs_by_seed(*nan_seeds) is None
    out = against_reference([nan_seeds[1], nan_seeds[0]], 0)
    assert out[1]["test"] == WELCH


def test_a_value_that_is_not_a_number_is_left_out_of_its_group():
    # a run whose metric was recorded as text ("diverged") counts as missing, not as a value
    groups = [[(0, 0.95), (1, 0.96), (2, 0.97)], [(0, 0.90), (1, 0.92), (2, "diverged")],
              [(0, 0.90), (1, "diverged")]]
    out = against_reference(groups, 0)
    assert out[2] is None  # one value left: nothing to test
    ref = stats.ttest_ind([0.90, 0.92], [0.95, 0.96, 0.97], equal_var=False)
    assert out[1]["test"] == WELCH and out[1]["n"] == 2
    assert out[1]["p"] == pytest.approx(ref.pvalue, rel=1e-9)
