"""Statistics for `nnexp compare` against hand-computed and tabulated values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nnexp.compare.significance import t_quantile
from nnexp.compare.stats import group_summary, importance, summarize
from nnexp.errors import ConfigError

# ------------------------------------------------------------------ t quantile

# Student-t 0.975 quantiles, tabulated to 6 decimals (the values) and to 13
# significant digits (standard tables; df = inf is the normal quantile).
TABLE = [(1, 12.706205, 12.70620473617471), (2, 4.302653, 4.302652729749464),
         (3, 3.182446, 3.182446305284263), (4, 2.776445, 2.776445105197793),
         (9, 2.262157, 2.262157162798204), (29, 2.045230, 2.045229642132703),
         (100, 1.983972, 1.983971518523552), (math.inf, 1.959964, 1.959963984540054)]


@pytest.mark.parametrize("df, six_digits, precise", TABLE)
def test_t_quantile_matches_tables(df, six_digits, precise):
    assert abs(t_quantile(0.975, df) - six_digits) < 1e-6
    assert t_quantile(0.975, df) == pytest.approx(precise, rel=1e-11)
    assert t_quantile(0.025, df) == pytest.approx(-precise, rel=1e-11)  # symmetric


@pytest.mark.parametrize("df", [1e3, 1e5, 1e7, 1e12])
def test_t_quantile_tends_to_the_normal(df):
    # t(0.975; df) - z(0.975) ~ (z^3 + z) / (4 df) = 2.37 / df
    assert t_quantile(0.975, df) > 1.959963984540054  # heavier tails than the normal, always
    assert t_quantile(0.975, df) - 1.959963984540054 == pytest.approx(2.3707 / df, rel=2e-3)
    if df >= 1e7:
        assert abs(t_quantile(0.975, df) - 1.959964) < 1e-6


@pytest.mark.parametrize("p, df, expected", [
    # many degrees of freedom, where lgamma's cancellation would cost digits
    # (reference values computed with 40-digit arithmetic)
    (0.975, 10_000, 1.960201239890626), (0.9, 10_000, 1.281636229730478),
    (0.6, 30_000, 0.2533493498820412), (0.9, 99_999, 1.281560031534021),
])
def test_t_quantile_with_many_degrees_of_freedom(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("p", [1e-12, 0.001, 0.1, 0.3, 0.5, 0.6, 0.9, 0.999, 1 - 1e-9])
def test_t_quantile_closed_forms(p):
    # df = 1 is the Cauchy distribution: tan(pi (p - 1/2)) = -1 / tan(pi p), written with
    # the smaller tail so that the closed form itself keeps its digits;
    # df = 2: (2p - 1) / sqrt(2 p (1 - p))
    cauchy = -1 / math.tan(math.pi * p) if p < 0.5 else 1 / math.tan(math.pi * (1 - p))
    assert t_quantile(p, 1) == pytest.approx(cauchy, rel=1e-9, abs=1e-15)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9, abs=1e-15)


def test_t_quantile_fractional_df_lies_between_its_neighbours():
    assert t_quantile(0.975, 3) < t_quantile(0.975, 2.5) < t_quantile(0.975, 2)
    assert t_quantile(0.5, 7.3) == 0.0


def test_t_quantile_is_monotone_in_p():
    ps = np.linspace(0.001, 0.999, 101)
    qs = [t_quantile(float(p), 5) for p in ps]
    assert all(a < b for a, b in zip(qs, qs[1:]))


@pytest.mark.parametrize("p, df", [(0, 3), (1, 3), (-0.1, 3), (1.5, 3), (math.nan, 3), ("0.9", 3),
                                   (0.9, 0), (0.9, -1), (0.9, math.nan), (0.9, None), (True, 3)])
def test_t_quantile_rejects_bad_arguments(p, df):
    with pytest.raises(ValueError, match="t_quantile"):
        t_quantile(p, df)


# ------------------------------------------------------------------ summarize


def test_summarize_four_values():
    # mean 2.5; std = sqrt((1.5^2 + 0.5^2 + 0.5^2 + 1.5^2) / 3) = sqrt(5/3) = 1.290994;
    # ci95 = t(0.975; 3) * std / sqrt(4) = 3.182446 * 1.290994 / 2 = 2.054260
    s = summarize([1, 2, 3, 4])
    assert s["n"] == 4
    assert s["mean"] == pytest.approx(2.5)
    assert s["std"] == pytest.approx(1.290994, abs=1e-6)
    assert s["ci95"] == pytest.approx(2.054260, abs=1e-6)
    assert (s["ci_low"], s["ci_high"]) == (pytest.approx(2.5 - 2.054260, abs=1e-6),
                                           pytest.approx(2.5 + 2.054260, abs=1e-6))


def test_summarize_drops_nan_and_none():
    # [1, 3] remain: mean 2, std sqrt(2), ci95 = 12.706205 * sqrt(2) / sqrt(2) = 12.706205
    s = summarize([1.0, math.nan, None, 3.0])
    assert s["n"] == 2 and s["mean"] == 2.0
    assert s["std"] == pytest.approx(math.sqrt(2))
    assert s["ci95"] == pytest.approx(12.706205, abs=1e-6)


def test_summarize_one_and_zero_values():
    one = summarize(np.array([0.98]))
    assert one["n"] == 1 and one["mean"] == 0.98
    assert math.isnan(one["std"]) and math.isnan(one["ci95"]) and math.isnan(one["ci_low"])
    none = summarize([math.nan])
    assert none["n"] == 0 and math.isnan(none["mean"]) and math.isnan(none["std"])


def test_summarize_equal_values_have_zero_spread():
    s = summarize(pd.Series([0.5, 0.5, 0.5]))
    assert (s["mean"], s["std"], s["ci95"]) == (0.5, 0.0, 0.0)


def test_summarize_rejects_text():
    with pytest.raises(ValueError, match="must be numbers"):
        summarize(["a", "b"])


# ------------------------------------------------------------------ group_summary


def runs_frame():
    return pd.DataFrame({
        "opt": ["adam", "adam", "sgd", "adam", None, math.nan, "sgd"],
        "layers": [[512, 10], [512, 10], [10], [512, 10], [10], [10], [10]],
        "seed": [0, 1, 0, 2, 0, 1, 1],
        "acc": [0.90, 0.92, 0.80, 0.94, 0.50, 0.60, math.nan],
        "loss": [0.3, 0.2, 0.9, 0.1, 2.0, 1.0, 5.0],
    })


def test_group_summary_by_one_column():
    g = group_summary(runs_frame(), ["opt"], ["acc"])
    assert list(g.columns) == ["opt", "runs", "acc", "acc std", "acc ci95", "acc n"]
    # groups in order of first appearance; None and NaN keys are one group of their own
    assert g["opt"].tolist()[:2] == ["adam", "sgd"] and pd.isna(g["opt"].iloc[2])
    assert g["runs"].tolist() == [3, 2, 2]
    adam = g.iloc[0]
    # acc 0.90, 0.92, 0.94: mean 0.92, std 0.02, ci95 = t(0.975; 2) * 0.02 / sqrt(3) = 0.049682...
    assert adam["acc"] == pytest.approx(0.92)
    assert adam["acc std"] == pytest.approx(0.02)
    assert adam["acc ci95"] == pytest.approx(4.302652729749464 * 0.02 / math.sqrt(3))
    assert adam["acc n"] == 3
    sgd = g.iloc[1]  # 0.80 and a NaN: n = 1, no spread
    assert sgd["acc"] == pytest.approx(0.80) and sgd["acc n"] == 1 and math.isnan(sgd["acc std"])
    missing = g.iloc[2]  # 0.50 and 0.60
    assert missing["acc"] == pytest.approx(0.55) and missing["acc n"] == 2


def test_group_summary_by_unhashable_values_and_several_metrics():
    g = group_summary(runs_frame(), ["layers"], ["acc", "loss"])
    assert g["layers"].tolist() == [[512, 10], [10]]
    assert g["runs"].tolist() == [3, 4]
    assert g["loss"].tolist() == [pytest.approx(0.2), pytest.approx((0.9 + 2.0 + 1.0 + 5.0) / 4)]
    assert g["loss n"].tolist() == [3, 4]
    assert list(g.columns)[-4:] == ["loss", "loss std", "loss ci95", "loss n"]


def test_group_summary_by_two_columns_and_by_none():
    g = group_summary(runs_frame(), ["opt", "layers"], ["acc"])
    assert g["runs"].tolist() == [3, 2, 2]
    everything = group_summary(runs_frame(), [], ["acc"])
    assert len(everything) == 1 and everything["runs"].iloc[0] == 7 and everything["acc n"].iloc[0] == 6


def test_group_summary_keeps_true_apart_from_one():
    df = pd.DataFrame({"flag": [True, 1, 1.0, False, 0], "m": [1.0, 2.0, 3.0, 4.0, 5.0]})
    g = group_summary(df, ["flag"], ["m"])
    assert g["runs"].tolist() == [1, 2, 1, 1]  # True | 1 and 1.0 | False | 0


def test_group_summary_of_an_empty_frame():
    g = group_summary(runs_frame().iloc[:0], ["opt"], ["acc"])
    assert len(g) == 0 and list(g.columns) == ["opt", "runs", "acc", "acc std", "acc ci95", "acc n"]


def test_group_summary_names_an_unknown_column():
    with pytest.raises(ConfigError, match="unknown metric column 'accc' \\(did you mean 'acc'\\?\\)"):
        group_summary(runs_frame(), ["opt"], ["accc"])
    with pytest.raises(ConfigError, match="unknown group-by column 'optimizer'"):
        group_summary(runs_frame(), ["optimizer"], ["acc"])


# ------------------------------------------------------------------ importance


def test_importance_by_hand():
    # y = 1, 3, 5, 7: mean 4, SS_total = 9 + 1 + 1 + 9 = 20.
    # opt a,a,b,b: group means 2 and 6, SS_between = 2*(2-4)^2 + 2*(6-4)^2 = 16 -> 0.8
    # bs 1,2,1,2: group means 3 and 5, SS_between = 2*1 + 2*1 = 4 -> 0.2
    # momentum 0.9, 0.9, missing, missing: missing is a group of its own -> 0.8 (like opt)
    # const: one value -> 0. The NaN-metric row is dropped before anything is computed.
    df = pd.DataFrame({
        "opt": ["a", "a", "b", "b", "c"],
        "bs": [1, 2, 1, 2, 3],
        "momentum": [0.9, 0.9, None, math.nan, 0.5],
        "const": ["x", "x", "x", "x", "y"],
        "y": [1.0, 3.0, 5.0, 7.0, math.nan],
    })
    imp = importance(df, ["const", "bs", "opt", "momentum"], "y")
    assert imp.to_dict() == {"opt": pytest.approx(0.8), "momentum": pytest.approx(0.8),
                             "bs": pytest.approx(0.2), "const": 0.0}
    assert list(imp.index) == ["opt", "momentum", "bs", "const"]  # descending, ties in given order
    assert imp.name == "y"


def test_importance_bins_numeric_parameters():
    # 10 distinct values, bins=2: split at the median into {1..5} and {6..10}.
    # y = x: mean 5.5, SS_total = sum (i - 5.5)^2 = 82.5; bin means 3 and 8,
    # SS_between = 5 * 2.5^2 * 2 = 62.5 -> 62.5 / 82.5 = 0.757576
    x = np.arange(1, 11)
    df = pd.DataFrame({"x": x, "y": x.astype(float)})
    assert importance(df, ["x"], "y", bins=2)["x"] == pytest.approx(62.5 / 82.5)
    # unbinned (10 <= bins) every value is its own group and explains everything
    assert importance(df, ["x"], "y", bins=10)["x"] == pytest.approx(1.0)


def test_importance_bins_log_spaced_values_on_a_log_scale():
    # learning rates 1e-6 .. 1e-1 (five decades), bins=2: {1e-6, 1e-5, 1e-4} and {1e-3, 1e-2, 1e-1}
    lr = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    df = pd.DataFrame({"lr": lr, "y": [0.1, 0.1, 0.1, 0.9, 0.9, 0.9]})
    assert importance(df, ["lr"], "y", bins=2)["lr"] == pytest.approx(1.0)


def test_importance_without_variance_is_zero():
    df = pd.DataFrame({"opt": ["a", "b", "c"], "y": [0.1, 0.1, 0.1]})
    assert importance(df, ["opt"], "y").to_dict() == {"opt": 0.0}
    empty = pd.DataFrame({"opt": [], "lr": [], "y": []})
    assert importance(empty, ["opt", "lr"], "y").to_dict() == {"opt": 0.0, "lr": 0.0}
    all_nan = pd.DataFrame({"opt": ["a", "b"], "y": [math.nan, math.nan]})
    assert importance(all_nan, ["opt"], "y").to_dict() == {"opt": 0.0}


def test_importance_handles_lists_bools_and_mixed_values():
    df = pd.DataFrame({"layers": [[1], [1], [2], [2]], "flag": [True, True, False, False],
                       "mixed": [1, "a", 1, "a"], "y": [1.0, 3.0, 5.0, 7.0]})
    imp = importance(df, ["layers", "flag", "mixed"], "y")
    assert imp["layers"] == pytest.approx(0.8) and imp["flag"] == pytest.approx(0.8)
    assert imp["mixed"] == pytest.approx(0.2)
    assert ((imp >= 0) & (imp <= 1)).all()


def test_importance_validates_its_arguments():
    df = pd.DataFrame({"opt": ["a", "b"], "y": [1.0, 2.0]})
    with pytest.raises(ConfigError, match="unknown parameter column 'optt'"):
        importance(df, ["optt"], "y")
    with pytest.raises(ConfigError, match="unknown metric column 'z'"):
        importance(df, ["opt"], "z")
    with pytest.raises(ValueError, match="bins must be an integer >= 2, got 1"):
        importance(df, ["opt"], "y", bins=1)


def test_group_summary_groups_dict_values_whatever_their_key_order():
    df = pd.DataFrame({"opt": [{"name": "adam", "lr": 0.1}, {"lr": 0.1, "name": "adam"}, {"name": "sgd", "lr": 0.1}],
                       "acc": [0.8, 0.9, 0.5]})
    g = group_summary(df, ["opt"], ["acc"])
    assert g["runs"].tolist() == [2, 1]
    assert g["acc"].tolist() == [pytest.approx(0.85), pytest.approx(0.5)]


def test_importance_of_a_numeric_parameter_depends_only_on_the_order_of_its_values():
    # binning goes by quantiles, so any increasing map of a parameter's values (ranks, a shift
    # below zero, weight decays with several runs at 0, five decades) groups the runs alike
    ranks = np.array([1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = [0.3, 0.1, 0.2, 0.8, 0.5, 0.9, 0.7, 0.6]
    expected = importance(pd.DataFrame({"p": ranks, "y": y}), ["p"], "y", bins=3)["p"]
    assert 0.0 < expected < 1.0
    decays = np.r_[0.0, 0.0, 0.0, 10.0 ** np.arange(-5.0, 0.0)]
    for values in (ranks - 100.0, decays, 10.0 ** (ranks - 7.0)):
        got = importance(pd.DataFrame({"p": values, "y": y}), ["p"], "y", bins=3)["p"]
        assert got == pytest.approx(expected), values


def test_importance_refuses_a_bins_that_is_not_an_integer():
    df = pd.DataFrame({"opt": ["a", "b"], "y": [1.0, 2.0]})
    for bins in (2.5, 3.0, True):
        with pytest.raises(ValueError, match="bins must be an integer >= 2"):
            importance(df, ["opt"], "y", bins=bins)
