"""Corruption robustness aggregates: hand-computed values on small tables of round numbers,
an independent route (plain loops and a pandas groupby over a long table), the identities
(a model against itself, AlexNet against AlexNet), subsets, and the input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cutmix_eval.corruptions import ALL, BENCHMARK, GROUPS, SEVERITIES
from cutmix_eval.metrics.corruption import (ALEXNET_ERRORS, CorruptionReference, corruption_errors, corruption_summary,
                                            describe_severities, error_table, group_mean_errors, mce,
                                            mean_corruption_error, relative_corruption_errors, relative_mce,
                                            severity_scope)

# two corruptions, round numbers: sums over severities 1.5 and 1.5
MODEL = {"gaussian_noise": [0.1, 0.2, 0.3, 0.4, 0.5], "fog": [0.3, 0.3, 0.3, 0.3, 0.3]}
MODEL_CLEAN = 0.1
# reference: sums 2.5 and 2.0, clean error 0.3 (5 x clean = 1.5)
REFERENCE = CorruptionReference.from_table({"gaussian_noise": [0.5] * 5, "fog": [0.2, 0.3, 0.4, 0.5, 0.6]},
                                           clean_error=0.3, name="baseline")


def random_table(rng: np.random.Generator, names=ALL) -> dict[str, np.ndarray]:
    return {name: rng.uniform(0.05, 0.95, 5) for name in names}


# ------------------------------------------------------------------------------------ by hand

def test_hand_computed_values():
    assert mean_corruption_error(MODEL) == pytest.approx((1.5 + 1.5) / 10)
    assert group_mean_errors(MODEL) == pytest.approx({"noise": 0.3, "weather": 0.3})
    # CE: 1.5 / 2.5 = 0.6 and 1.5 / 2.0 = 0.75
    assert corruption_errors(MODEL, REFERENCE) == pytest.approx({"gaussian_noise": 0.6, "fog": 0.75})
    assert mce(MODEL, REFERENCE) == pytest.approx(0.675)
    # relCE: (1.5 - 0.5) / (2.5 - 1.5) = 1 and (1.5 - 0.5) / (2.0 - 1.5) = 2
    assert relative_corruption_errors(MODEL, MODEL_CLEAN, REFERENCE) == pytest.approx({"gaussian_noise": 1.0,
                                                                                      "fog": 2.0})
    assert relative_mce(MODEL, MODEL_CLEAN, REFERENCE) == pytest.approx(1.5)


def test_alexnet_numbers_and_the_sum_over_severities_convention():
    assert list(ALEXNET_ERRORS.mean_errors) == list(BENCHMARK) and ALEXNET_ERRORS.clean_error == 0.4348
    assert ALEXNET_ERRORS.mean_errors["gaussian_noise"] == 0.886428
    assert ALEXNET_ERRORS.mean_errors["jpeg_compression"] == 0.6065
    # a model erring 0.443214 (half of AlexNet's mean) at every severity of gaussian_noise: CE = 5 x 0.443214 /
    # (5 x 0.886428) = 0.5; brightness at 0.564592 everywhere: CE = 1
    errors = {"gaussian_noise": [0.443214] * 5, "brightness": [0.564592] * 5}
    assert corruption_errors(errors) == pytest.approx({"gaussian_noise": 0.5, "brightness": 1.0})
    # relCE of brightness with clean 0.4348: (0.564592 - 0.4348) / (0.564592 - 0.4348) = 1
    assert relative_corruption_errors(errors, 0.4348)["brightness"] == pytest.approx(1.0)
    with pytest.raises(TypeError):
        ALEXNET_ERRORS.mean_errors["fog"] = 0.0  # read-only


def test_alexnet_against_itself_is_100_percent():
    spread = np.array([-0.04, -0.02, 0.0, 0.02, 0.04])  # severities differ, their mean is AlexNet's
    alexnet = {c: mean + spread for c, mean in ALEXNET_ERRORS.mean_errors.items()}
    assert corruption_errors(alexnet) == pytest.approx({c: 1.0 for c in BENCHMARK})
    assert mce(alexnet) == pytest.approx(1.0)
    assert relative_mce(alexnet, ALEXNET_ERRORS.clean_error) == pytest.approx(1.0)


def test_a_model_against_itself_is_one():
    errors = random_table(np.random.default_rng(0), BENCHMARK)
    itself = CorruptionReference.from_table(errors, clean_error=0.04)
    assert mce(errors, itself) == pytest.approx(1.0) and mce(errors, errors) == pytest.approx(1.0)
    assert relative_mce(errors, 0.04, itself) == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in relative_corruption_errors(errors, 0.04, itself).values())


# --------------------------------------------------------------------------------- independent route

def long_frame(table: dict[str, np.ndarray]) -> pd.DataFrame:
    group_of = {c: g for g, members in GROUPS.items() for c in members}
    return pd.DataFrame([{"corruption": c, "group": group_of[c], "severity": s + 1, "error": e}
                         for c, row in table.items() for s, e in enumerate(row)])


@pytest.mark.parametrize("seed", range(3))
def test_against_pandas_and_plain_loops(seed):
    rng = np.random.default_rng(seed)
    table, ref_table = random_table(rng), random_table(rng, BENCHMARK)
    frame = long_frame(table)
    benchmark = frame[frame["corruption"].isin(BENCHMARK)]
    assert mean_corruption_error(table) == pytest.approx(benchmark["error"].mean())
    assert group_mean_errors(table) == pytest.approx(frame.groupby("group")["error"].mean().to_dict())

    clean, ref_clean = 0.02, 0.01
    ref_sums = {c: sum(ref_table[c]) for c in BENCHMARK}
    expected_ce, expected_rel = {}, {}
    for c in BENCHMARK:
        model_sum = benchmark.loc[benchmark["corruption"] == c, "error"].sum()
        expected_ce[c] = model_sum / ref_sums[c]
        expected_rel[c] = (model_sum - 5 * clean) / (ref_sums[c] - 5 * ref_clean)
    reference = CorruptionReference.from_table(ref_table, clean_error=ref_clean)
    assert corruption_errors(table, reference) == pytest.approx(expected_ce)
    assert corruption_errors(table, ref_table) == pytest.approx(expected_ce)  # a full table as the reference
    assert mce(table, reference) == pytest.approx(sum(expected_ce.values()) / 15)
    assert relative_corruption_errors(table, clean, reference) == pytest.approx(expected_rel)
    assert relative_mce(table, clean, reference) == pytest.approx(sum(expected_rel.values()) / 15)


def test_cifar_mean_is_the_plain_mean_of_a_15_by_5_table_in_any_input_form():
    array = np.random.default_rng(1).uniform(0, 1, (19, 5))
    assert mean_corruption_error(array[:15], names=BENCHMARK) == pytest.approx(array[:15].mean())
    assert mean_corruption_error(array, names=ALL) == pytest.approx(array[:15].mean())  # extras left out
    assert mean_corruption_error(array, names=ALL, corruptions=ALL) == pytest.approx(array.mean())
    shuffled = list(reversed(ALL))
    as_mapping = dict(zip(shuffled, array[::-1].tolist()))
    assert mean_corruption_error(as_mapping) == pytest.approx(array[:15].mean())
    assert list(error_table(as_mapping)) == list(ALL)  # table order whatever the input order
    assert np.array_equal(error_table(array, names=ALL)["saturate"], array[18])


# ----------------------------------------------------------------------------------------- subsets

def test_subsets_average_what_is_there_and_the_summary_says_so():
    table = random_table(np.random.default_rng(2), GROUPS["noise"] + GROUPS["extra"])
    noise = np.mean([table[c] for c in GROUPS["noise"]])
    assert mean_corruption_error(table) == pytest.approx(noise)
    assert group_mean_errors(table) == pytest.approx({"noise": noise,
                                                      "extra": np.mean([table[c] for c in GROUPS["extra"]])})
    assert list(corruption_errors(table)) == list(GROUPS["noise"])
    assert mean_corruption_error(table, corruptions=["speckle_noise"]) == pytest.approx(table["speckle_noise"].mean())
    summary = corruption_summary(table, 0.1, ALEXNET_ERRORS)
    assert summary.corruptions == GROUPS["noise"]
    assert "3 of the 15 benchmark corruptions (gaussian_noise, shot_noise, impulse_noise)" in summary.note
    assert "not comparable" in summary.note and "AlexNet" in summary.note
    assert summary.metrics["mce"] == pytest.approx(mce(table))
    assert set(summary.metrics) == {"mean_error", "group/noise", "group/extra", "clean_error", "mce",
                                    "relative_mce"} | {f"{k}/{c}" for k in ("ce", "relative_ce")
                                                       for c in GROUPS["noise"]}


def test_summary_of_a_full_table_and_of_a_chosen_list():
    table = random_table(np.random.default_rng(3))
    full = corruption_summary(table)
    assert full.corruptions == BENCHMARK and full.note == "means over all 15 benchmark corruptions x 5 severities"
    assert set(full.metrics) == {"mean_error"} | {f"group/{g}" for g in GROUPS}
    reference = CorruptionReference.from_table(table, name="baseline")  # no clean error: no relative numbers
    chosen = corruption_summary(table, 0.05, reference, corruptions=["fog", "speckle_noise"])
    assert chosen.corruptions == ("fog", "speckle_noise")
    assert chosen.note.startswith("means over 2 corruptions (fog, speckle_noise) x 5 severities, not the 15-corr")
    reordered = corruption_summary(table, corruptions=list(reversed(BENCHMARK)))
    assert reordered.note == full.note and reordered.corruptions == BENCHMARK  # table order
    assert list(corruption_errors(table, table, corruptions=["snow", "fog", "snow"])) == ["snow", "fog"]
    assert chosen.metrics["mce"] == pytest.approx(1.0) and "relative_mce" not in chosen.metrics
    assert chosen.metrics["mean_error"] == pytest.approx(np.mean([table["fog"], table["speckle_noise"]]))


# ------------------------------------------------------------------------------- partial severities

SUBSETS = [(3,), (3, 4, 5), (1, 3, 5), (1, 2, 3, 4, 5)]  # one, a run, a non-contiguous set, all five


def test_partial_severities_by_hand():
    # severities 3-5 of MODEL and of the reference: gaussian_noise 0.3 + 0.4 + 0.5 = 1.2 over 0.5 x 3 = 1.5,
    # fog 0.9 over 0.4 + 0.5 + 0.6 = 1.5
    model = {c: row[2:] for c, row in MODEL.items()}
    reference = CorruptionReference.from_table({"gaussian_noise": [0.5] * 3, "fog": [0.4, 0.5, 0.6]},
                                               clean_error=0.3, name="baseline", severities=[3, 4, 5])
    assert reference.mean_errors == {"gaussian_noise": 0.5, "fog": 0.5} and reference.severities == (3, 4, 5)
    assert mean_corruption_error(model, severities=[3, 4, 5]) == pytest.approx((1.2 + 0.9) / 6)
    assert corruption_errors(model, reference, severities=[3, 4, 5]) == pytest.approx({"gaussian_noise": 0.8,
                                                                                       "fog": 0.6})
    # relCE: (1.2 - 0.3) / (1.5 - 0.9) = 1.5 and (0.9 - 0.3) / (1.5 - 0.9) = 1
    assert relative_mce(model, MODEL_CLEAN, reference, severities=[3, 4, 5]) == pytest.approx(1.25)
    one = CorruptionReference.from_table({"gaussian_noise": [0.5], "fog": [0.6]}, name="baseline", severities=[5])
    assert mce({"gaussian_noise": [0.5], "fog": [0.3]}, one, severities=[5]) == pytest.approx((1.0 + 0.5) / 2)


@pytest.mark.parametrize("levels", SUBSETS)
def test_partial_severities_are_the_formulas_over_the_columns_evaluated(levels):
    rng = np.random.default_rng(sum(levels))
    full, ref_full = random_table(rng), random_table(rng)
    columns = [s - 1 for s in levels]
    table, ref_table = ({c: row[columns] for c, row in t.items()} for t in (full, ref_full))
    clean, ref_clean = 0.02, 0.01
    reference = CorruptionReference.from_table(ref_table, ref_clean, name="baseline", severities=levels)
    benchmark = np.array([table[c] for c in BENCHMARK])  # 15 x |S|
    ref_sums = np.array([ref_table[c].sum() for c in BENCHMARK])
    expected_ce = benchmark.sum(axis=1) / ref_sums
    expected_rel = (benchmark - clean).sum(axis=1) / (ref_sums - len(levels) * ref_clean)

    summary = corruption_summary(table, clean, reference, severities=levels)
    m = summary.metrics
    assert m["mean_error"] == pytest.approx(benchmark.mean())
    for group, members in GROUPS.items():
        assert m[f"group/{group}"] == pytest.approx(np.mean([table[c] for c in members]))
    assert [m[f"ce/{c}"] for c in BENCHMARK] == pytest.approx(expected_ce)
    assert m["mce"] == pytest.approx(expected_ce.mean()) and m["relative_mce"] == pytest.approx(expected_rel.mean())
    assert [m[f"relative_ce/{c}"] for c in BENCHMARK] == pytest.approx(expected_rel)
    assert summary.severities == levels
    if levels == (1, 2, 3, 4, 5):  # the published convention, said as before; the default
        assert summary.note == "means over all 15 benchmark corruptions x 5 severities; CE normalized by baseline"
        assert corruption_summary(full, clean, ref_full).metrics["mce"] == pytest.approx(m["mce"])
    else:
        assert summary.note.startswith(f"means over all 15 benchmark corruptions x {describe_severities(levels)}, "
                                       "not comparable with full-benchmark numbers")
        with pytest.raises(ValueError, match="one error per evaluated severity"):
            mean_corruption_error(full, severities=levels)  # 5 columns are not these severities


def test_severities_in_words():
    assert describe_severities([3]) == "severity 3" and describe_severities([3, 4, 5]) == "severities 3-5"
    assert describe_severities([1, 3, 5]) == "severities 1, 3, 5" and describe_severities(SEVERITIES) == \
        "severities 1-5"
    assert severity_scope(SEVERITIES) == "" and severity_scope([3, 4, 5]) == " over severities 3-5"
    assert severity_scope([2], " ({} only)") == " (severity 2 only)"


def test_alexnet_normalizes_five_severities_only():
    spread = np.array([-0.04, -0.02, 0.0, 0.02, 0.04])
    alexnet = {c: (mean + spread)[2:] for c, mean in ALEXNET_ERRORS.mean_errors.items()}  # at severities 3-5
    for call in (lambda: mce(alexnet, severities=[3, 4, 5]),
                 lambda: relative_mce(alexnet, 0.4348, severities=[3, 4, 5]),
                 lambda: corruption_summary(alexnet, 0.4, ALEXNET_ERRORS, severities=[3, 4, 5])):
        with pytest.raises(ValueError, match="reference AlexNet's errors are means over severities 1-5, so CE over "
                                             "severities 3-5 cannot be computed from them"):
            call()
    five = CorruptionReference.from_table(random_table(np.random.default_rng(0)), name="baseline")
    with pytest.raises(ValueError, match="baseline's errors are means over severities 1-5, so CE over severity 2"):
        mce({"fog": [0.2]}, five, severities=[2])


# ------------------------------------------------------------------------------------------ checks

@pytest.mark.parametrize("errors,names,message", [
    ({"fog": [0.1, 0.2, 0.3, 0.4]}, None,
     "errors['fog'] has shape (4,); expected one error per evaluated severity (severities 1-5: 5 values)"),
    (np.full((15, 4), 0.1), BENCHMARK, "has shape (4,)"),
    ({"fog": [10, 20, 30, 40, 50]}, None, "outside [0, 1] (e.g. 10); errors are fractions, not percentages"),
    ({"fog": [0.1, -0.2, 0.3, 0.4, 0.5]}, None, "1 values outside [0, 1]"),
    ({"fog": [0.1, np.nan, 0.3, 0.4, 0.5]}, None, "errors['fog'] contains 1 NaN/infinite values"),
    ({"fog": ["a"] * 5}, None, "real numbers"),
    ({"fgo": [0.1] * 5}, None, "unknown corruption 'fgo'"),
    ({}, None, "empty"),
    (np.full((2, 5), 0.1), ["fog"], "one corruption name per row; got shape (2, 5) and 1 names"),
    (np.full(5, 0.1), None, "got shape (5,) and no names"),
    (np.full((2, 5), 0.1), ["fog", "fog"], "'fog' appears twice"),
    ({"fog": [0.1] * 5}, ["fog"], "names go with a C x S array"),
])
def test_bad_error_tables(errors, names, message):
    with pytest.raises(ValueError) as err:
        mean_corruption_error(errors, names=names)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_selections_references_and_clean_errors():
    extras = {"speckle_noise": [0.1] * 5}
    with pytest.raises(ValueError, match="none of the 15 benchmark corruptions .* pass corruptions"):
        mean_corruption_error(extras)
    with pytest.raises(ValueError, match="corruptions snow requested but the error table has gaussian_noise, fog"):
        mean_corruption_error(MODEL, corruptions=["snow"])
    with pytest.raises(ValueError, match="list of names"):
        mean_corruption_error(MODEL, corruptions="fog")
    with pytest.raises(ValueError, match="reference AlexNet has no error for 'speckle_noise'"):
        mce(extras, corruptions=["speckle_noise"])
    with pytest.raises(ValueError, match="reference baseline has no error for 'snow'"):
        corruption_errors(MODEL | {"snow": [0.2] * 5}, REFERENCE)
    with pytest.raises(ValueError, match="reference reference has no clean error"):
        relative_mce(MODEL, 0.1, {"gaussian_noise": [0.5] * 5, "fog": [0.5] * 5})
    with pytest.raises(ValueError, match="clean_error holds 1 values outside"):
        relative_mce(MODEL, 1.5, REFERENCE)
    with pytest.raises(ValueError, match="clean_error contains 1 NaN"):
        relative_mce(MODEL, float("nan"), REFERENCE)
    with pytest.raises(ValueError, match="single number"):
        relative_mce(MODEL, [0.1, 0.2], REFERENCE)
    flat = CorruptionReference("flat", {"gaussian_noise": 0.3, "fog": 0.0}, clean_error=0.3)
    with pytest.raises(ValueError, match=r"relative CE of 'gaussian_noise' is undefined: .* \(0.3\) is not above"):
        relative_mce(MODEL, 0.1, flat)
    with pytest.raises(ValueError, match="CE of 'fog' is undefined: reference flat's error under it is 0"):
        mce(MODEL, flat)
    with pytest.raises(ValueError, match="reference bad error of 'fog' holds 1 values outside"):
        CorruptionReference("bad", {"fog": 85.0})
    with pytest.raises(ValueError, match="reference bad: unknown corruption 'fgo'"):
        CorruptionReference("bad", {"fgo": 0.5})
    with pytest.raises(ValueError, match="reference baseline errors\\['fog'\\] has shape \\(3,\\)"):
        CorruptionReference.from_table({"fog": [0.1, 0.2, 0.3]}, name="baseline")
    for bad in ([5, 3], [0, 1], [], [3, 3], [6]):
        with pytest.raises(ValueError, match="severities must be ascending, distinct levels among 1-5"):
            mean_corruption_error({"fog": [0.1] * len(bad)}, severities=bad)
