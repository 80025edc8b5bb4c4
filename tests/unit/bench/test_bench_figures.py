"""The benchmarks' scoring, statistics and result writing: strict JSON results (no Infinity/NaN),
the paired statistics they report, GSM8K scoring with the same prompt for both sides, and the
code-version check that keeps a resumed eval_squad run from reporting answers of older code."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from bench import common
from bench.code_version import StaleRunError, check_run_code, code_version
from bench.stats import binomial_two_sided, bootstrap_mean_ci, mcnemar_exact, paired_summary
from bench.trainer_gsm8k import FORMAT_INSTRUCTION, paired_tests, prompt, score

# -- results are strict JSON ------------------------------------------------------------------------


def test_write_result_turns_infinite_and_nan_into_null(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    path = common.write_result(
        "zero_baseline",
        "x",
        {"value": 0.0},
        5.0,
        float("inf"),
        "t",
        True,
        nested={"p50": math.nan, "list": [1.0, float("-inf")]},
    )
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    record = json.loads(text)
    assert record["ratio"] is None
    assert record["nested"] == {"p50": None, "list": [1.0, None]}


def test_ratio_or_none_has_no_ratio_over_zero() -> None:
    assert common.ratio_or_none(3.0, 0.0) is None
    assert common.ratio_or_none(3.0, 2.0) == 1.5


# -- statistics -------------------------------------------------------------------------------------


def test_sign_test_p_values_are_exact() -> None:
    assert binomial_two_sided(0, 0) == 1.0
    assert binomial_two_sided(0, 5) == pytest.approx(2 / 32)  # 2 * (1/2)^5
    assert binomial_two_sided(5, 5) == pytest.approx(2 / 32)
    assert binomial_two_sided(1, 10) == pytest.approx(2 * 11 / 1024)
    assert binomial_two_sided(5, 10) == 1.0


def test_mcnemar_counts_only_changed_questions() -> None:
    before = [True, True, False, False, False, False, False, False, False, False]
    after = [True, False, True, True, True, True, True, True, True, False]
    test = mcnemar_exact(before, after)
    assert (test["gained"], test["lost"], test["n"]) == (7, 1, 10)
    assert test["p_value"] == pytest.approx(2 * (1 + 8) / 256)
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


def test_paired_summary_shows_two_clusters_instead_of_a_p50_between_them() -> None:
    diffs = [-300.0] * 10 + [310.0] * 10
    summary = paired_summary(diffs)
    assert summary["p10"] == -300.0 and summary["p90"] == 310.0
    assert summary["p25"] == -300.0 and summary["p75"] == 310.0
    low, high = summary["mean_ci95"]
    assert low < summary["mean"] < high
    assert low < 0 < high  # the interval shows the mean of 5 ms is not distinguishable from 0


def test_bootstrap_interval_is_seeded_and_narrows_on_constant_data() -> None:
    values = [float(x) for x in range(50)]
    assert bootstrap_mean_ci(values, seed=3) == bootstrap_mean_ci(values, seed=3)
    assert bootstrap_mean_ci([2.0] * 20) == (2.0, 2.0)


# -- GSM8K scoring ----------------------------------------------------------------------------------


def test_both_sides_get_the_format_instruction() -> None:
    assert prompt("How many apples?").endswith(FORMAT_INSTRUCTION)
    assert "####" in FORMAT_INSTRUCTION


def test_score_tells_format_from_arithmetic() -> None:
    assert score("so 3 + 4 = 7\n#### 7", "7") == {"formatted": True, "exact": True, "last_number": True}
    assert score("The answer is $1,250.", "1250") == {"formatted": False, "exact": False, "last_number": True}
    assert score("#### 8", "7") == {"formatted": True, "exact": False, "last_number": False}


def test_paired_tests_refuse_unpaired_answers() -> None:
    row = {"exact": False, "last_number": True}
    before = [{"question": "a", **row}, {"question": "b", **row}]
    after = [{"question": "a", "exact": True, "last_number": True}, {"question": "b", **row}]
    tests = paired_tests(before, after)
    assert tests["exact"]["gained"] == 1 and tests["last_number"]["gained"] == 0
    with pytest.raises(ValueError):
        paired_tests(before, list(reversed(after)))


# -- eval_squad: stale answers ----------------------------------------------------------------------


def _git_repo(path: Path) -> Path:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)

    path.mkdir()
    git("init", "-q")
    (path / "code.py").write_text("A = 1\n")
    git("add", "code.py")
    git("-c", "user.email=b@x", "-c", "user.name=b", "commit", "-qm", "one")
    return path


def test_code_version_names_commit_and_dirty_diff(tmp_path: Path) -> None:
    repo = _git_repo(tmp_path / "repo")
    clean = code_version(repo)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False and clean["diff_sha256"] is None
    (repo / "code.py").write_text("A = 2\n")
    dirty = code_version(repo)
    assert dirty["commit"] == clean["commit"] and dirty["dirty"] is True and dirty["diff_sha256"]
    (repo / "code.py").write_text("A = 3\n")
    assert code_version(repo)["diff_sha256"] != dirty["diff_sha256"]


def _answers(run_dir: Path) -> Path:
    path = run_dir / "results" / "base.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"split": "test", "id": "q1", "f1": 0.5}\n')
    return path


def test_resume_under_other_code_is_refused_or_recomputed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    v1 = {"commit": "a" * 40, "dirty": False, "diff_sha256": None}
    v2 = {"commit": "b" * 40, "dirty": False, "diff_sha256": None}
    assert check_run_code(run_dir, v1, recompute=False) == []
    answers = _answers(run_dir)
    assert check_run_code(run_dir, v1, recompute=False) == []  # same code: answers kept
    assert answers.exists()
    with pytest.raises(StaleRunError, match="other code"):
        check_run_code(run_dir, v2, recompute=False)
    assert answers.exists()
    assert check_run_code(run_dir, v2, recompute=True) == [answers]
    assert not answers.exists()
    assert json.loads((run_dir / "code-version.json").read_text()) == v2


def test_answers_without_a_recorded_version_are_stale(tmp_path: Path) -> None:
    run_dir = tmp_path / "old-run"
    _answers(run_dir)
    with pytest.raises(StaleRunError):
        check_run_code(run_dir, {"commit": "a" * 40, "dirty": False, "diff_sha256": None}, recompute=False)


def test_answers_of_unidentifiable_code_are_never_reused(tmp_path: Path) -> None:
    run_dir = tmp_path / "nogit"
    unknown = {"commit": None, "dirty": True, "diff_sha256": None}
    check_run_code(run_dir, unknown, recompute=False)
    _answers(run_dir)
    with pytest.raises(StaleRunError):
        check_run_code(run_dir, unknown, recompute=False)
