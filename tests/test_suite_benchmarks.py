"""The held-out benchmark suite's arithmetic (issue 30): Atari 100k aggregation checked
against a case computed by hand."""
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from test_evidence import bench_module

REFERENCE = {"games": {"alpha": {"random": 0.0, "human": 100.0},
                       "bank_heist": {"random": 10.0, "human": 20.0},
                       "gamma": {"random": 0.0, "human": 10.0}}}


def record(game: str, score: float, planned: float | None = None) -> dict:
    r = {"env": f"atari:{game}", "final": {"return_mean": score}}
    if planned is not None:
        r["final_weights_eval"] = {"return_mean": planned}
    return r


def test_atari_aggregates_match_a_hand_computed_case():
    """HNS per run: alpha 0, .5, 1, 3; bank_heist .1, .2, .8, 1; gamma .5, .5, .6, .6.
    Per-game means 1.125, .525, .55: mean .7333, median .55. IQM: the 12 runs sorted, 3 cut
    from each end, leave .5 .5 .5 .6 .6 .8: 3.5 / 6."""
    agg = bench_module("atari100k_aggregate")
    records = [record("alpha", s) for s in (0, 50, 100, 300)]
    records += [record("bankheist", s) for s in (11, 12, 18, 20)]  # ALE's spelling
    records += [record("gamma", 0, planned=s) for s in (5, 5, 6, 6)]  # the final weights'
    out = agg.summarise(records, REFERENCE, reps=200, seed=1)
    assert (out["games"], out["runs"]) == (3, 12)
    assert out["per_game"]["alpha"]["hns_mean"] == pytest.approx(1.125)
    assert out["per_game"]["bankheist"]["hns_mean"] == pytest.approx(0.525)
    assert out["mean"] == pytest.approx(2.2 / 3)
    assert out["median"] == pytest.approx(0.55)
    assert out["iqm"] == pytest.approx(3.5 / 6)
    for key in ("mean", "median", "iqm"):
        lo, hi = out["ci95"][key]
        assert lo <= out[key] <= hi and lo < hi
    assert agg.summarise(records, REFERENCE, reps=200, seed=1)["ci95"] == out["ci95"]


def test_bootstrap_of_identical_runs_collapses_to_the_estimate():
    agg = bench_module("atari100k_aggregate")
    records = [record(g, s) for g, s in (("alpha", 40), ("gamma", 3)) for _ in range(3)]
    out = agg.summarise(records, REFERENCE, reps=50)
    assert out["mean"] == pytest.approx((0.4 + 0.3) / 2)
    for key in ("mean", "median", "iqm"):
        assert out["ci95"][key] == pytest.approx([out[key], out[key]])


def test_a_game_without_reference_scores_is_refused():
    agg = bench_module("atari100k_aggregate")
    with pytest.raises(SystemExit, match="no human/random scores for zork"):
        agg.summarise([record("zork", 1.0)], REFERENCE, reps=10)


def learning_record(env: str, algo: str, seed: int, score: float, env_steps: int = 48_000):
    return {"algo": algo, "env": env, "seed": seed, "final": {"return_mean": score,
            "mode": "greedy"}, "budget": {"env_steps": env_steps}, "_record": f"{env}-{seed}"}


def test_training_returns_are_binned_as_the_authors_bin_theirs():
    """Bins of 10,000 env steps labelled by their right edge, each holding the episodes that
    ended in [edge - 10,000, edge): episodes ending at 5,000 and 9,999 fall in the 10,000 bin,
    10,000 itself in the 20,000 one; the last bin also takes an episode ending on its edge,
    an episode cut short by the run's stop counts in none, and empty bins are left out."""
    curves = bench_module("curves")
    episodes = [[5_000, 10.0, 500, False], [9_999, 20.0, 500, False],
                [10_000, 30.0, 500, False], [30_000, 50.0, 500, False],
                [40_000, 70.0, 500, False], [40_500, 999.0, 50, True]]
    assert curves.authors_bins(episodes, 10_000, 40_000) == [
        (10_000, 15.0, 2), (20_000, 30.0, 1), (40_000, 60.0, 2)]
    # a budget inside a bin: the bin that holds it, [40,000, 50,000)
    assert curves.bin_at(episodes, 10_000, 48_000) == (50_000, 70.0, 1)
    assert curves.bin_at(episodes, 10_000, 25_000) is None  # no episode ended in it


def test_a_published_point_counts_only_within_ten_percent_of_the_budget():
    curves = bench_module("curves")
    dense, sparse = [[40_000, 4.0], [50_000, 5.0]], [[0, 0.0], [100_000, 9.0]]
    assert curves.measured_point(dense, 48_000) == (50_000, 5.0)
    assert curves.measured_point(dense, 45_000) is None  # 5,000 away either side: over 10%
    assert curves.measured_point(sparse, 26_000) is None
    assert curves.nearest_points(sparse, 26_000) == [(0, 0.0), (100_000, 9.0)]
    assert curves.nearest_points(sparse, 200_000) == [(100_000, 9.0)]


def episodes_until(env_steps: int, value: float, length: int = 1000) -> list:
    """Training episodes of `length` env steps up to `env_steps`, each returning `value`."""
    return [[end, value, length // 2, False] for end in range(length, env_steps + 1, length)]


def test_suite_table_compares_training_returns_with_the_authors_training_returns():
    """DreamerV3's published curve is training-episode returns, so the ratio uses the runs'
    training episodes in the same bin ([40,000, 50,000) for a 48,000 budget) against the
    authors' 50,000 point: swingup (300 + 500) / 2 = 400 vs 400 is 1.00, walker 100 vs 50 is
    2.00. The greedy final evaluation is its own column and enters no ratio. Seeds below 100
    on a suite task are tuning-era and left out; cartpole-balance runs form the labelled
    tuning table. A random policy's 350 on swingup is below its mean but above seed 100's."""
    suite = bench_module("suite_table")
    reference = {"dreamerv3": {
        "compare": {"with": "training_episodes", "bin": 10_000},
        "tasks": {"dmc:cartpole-swingup": {"curve": [[40_000, 200], [50_000, 400]]},
                  "dmc:walker-walk": {"curve": [[40_000, 100], [50_000, 50]]}}}}
    records = []
    for env, seed, greedy, trained in (("dmc:cartpole-swingup", 100, 700, 300),
                                       ("dmc:cartpole-swingup", 101, 900, 500),
                                       ("dmc:cartpole-swingup", 1, 900, 900),
                                       ("dmc:walker-walk", 100, 100, 100),
                                       ("dmc:cartpole-balance", 0, 700, 700)):
        r = learning_record(env, "dreamerv3", seed, greedy)
        r["training_episodes"] = episodes_until(48_000, trained)
        records.append(r)
    pixels = learning_record("dmc:cartpole-swingup", "dreamerv3", 102, 5.0)  # another suite
    pixels["config"] = {"env": {"obs": "pixels"}}
    records.append(pixels)
    records += [{"kind": "random", "env": "dmc:cartpole-swingup", "return_mean": 350.0},
                {"kind": "random", "env": "dmc:walker-walk", "return_mean": 200.0}]
    text = "\n".join(suite.suite_lines(records, reference))
    assert ("| 800.0 ± 100.0 (700 / 900) [greedy] | 400.0 ± 100.0 (300 / 500) in [40,000, "
            "50,000), 18 episodes | 400 at 50,000 | 1.00 |") in text
    summary = next(line for line in text.splitlines() if line.startswith("- dreamerv3"))
    assert "per task: cartpole-swingup 1.00, walker-walk 2.00; median 1.50" in summary
    assert "over 2 of 2 tasks" in summary and "above the random policy on 1 tasks" in summary
    held, tuning = text.split("Tuning curves")
    assert "| 1 |" not in held and "dmc:cartpole-balance" in tuning
    assert "| dmc:cartpole-swingup | dreamerv3 | 100, 101 |" in held  # not the pixel run
    # a record without training episodes gets no ratio, and the summary says why
    for r in records[:4]:
        r.pop("training_episodes")
    text = "\n".join(suite.suite_lines(records, reference))
    assert "| not recorded | 400 at 50,000 | - |" in text
    assert "no ratio: 2 task(s) whose records lack what the published protocol measures" in text


def test_pixel_runs_form_their_own_suite_with_their_own_reference():
    """Runs from pixels are the pixel suite's (issue 42), compared with the dmc_vision curve
    passed for it, and never enter the state suite's table; Dreamer V1 is one of its
    algorithms, TD-MPC2 is not; its tuning task is cartpole-balance alone."""
    suite = bench_module("suite_table")
    vision = {"dreamerv3": {"compare": {"with": "training_episodes", "bin": 10_000},
                            "tasks": {"dmc:cartpole-swingup": {"curve": [[50_000, 250]]}}}}
    records = []
    for algo, env, seed in (("dreamerv3", "dmc:cartpole-swingup", 100),
                            ("dreamerv1", "dmc:cartpole-swingup", 100),
                            ("tdmpc2", "dmc:cartpole-swingup", 100),
                            ("dreamerv3", "dmc:cartpole-balance", 0)):
        r = learning_record(env, algo, seed, 600)
        r["training_episodes"] = episodes_until(48_000, 500)
        r["config"] = {"env": {"obs": "pixels"}}
        records.append(r)
    text = "\n".join(suite.suite_lines(records, vision, "img/v.png", suite.VISION))
    assert "## Held-out suite (DMC from pixels)" in text and "(img/v.png)" in text
    held, tuning = text.split("Tuning curves (cartpole-balance; seeds 0-2; not results)")
    assert "| dmc:cartpole-swingup | dreamerv3 | 100 |" in held
    assert "| 250 at 50,000 | 2.00 |" in held
    assert "| dmc:cartpole-swingup | dreamerv1 | 100 |" in held and "tdmpc2" not in held
    assert "dmc:cartpole-balance | dreamerv3 | 0 |" in tuning
    assert suite.suite_lines(records, vision, None, suite.STATE) == []
    assert suite.VISION.slug == "heldout-dmc-vision"


def test_the_page_at_a_glance_has_one_short_row_per_task_and_links_the_rest():
    """docs/benchmarks.md: per suite its picture and one six-column row per task and
    algorithm (mean ± std, the like-for-like ratio, the random policy), no record names;
    everything else is on the page of all tables it links."""
    tables = bench_module("tables")
    reference = {"dreamerv3": {"compare": {"with": "training_episodes", "bin": 10_000},
                               "tasks": {"dmc:walker-walk": {"curve": [[50_000, 200]]}}}}
    records = []
    for seed, score in ((100, 300), (101, 500)):
        r = learning_record("dmc:walker-walk", "dreamerv3", seed, score)
        r.update(status="finished", training_episodes=episodes_until(48_000, 300))
        records.append(r)
    records.append({"kind": "random", "env": "dmc:walker-walk", "return_mean": 41.0})
    page = tables.glance(records, {"dmc_proprio.json": reference},
                         {"heldout-dmc-proprio": "img/p.png"})
    assert "![Held-out suite (DMC from state) learning curves](img/p.png)" in page
    assert "| walker-walk | dreamerv3 | 2 | 400 ± 100 | 1.50 | 41 |" in page
    assert "dmc:walker-walk-100" not in page  # record names stay on the page of all tables
    assert f"]({tables.ALL_TABLES})" in page


def test_without_a_measured_point_near_the_budget_the_points_either_side_are_shown():
    """TD-MPC2 publishes planning evaluations every 100,000 env steps: at a 26,000 budget
    there is no ratio (no straight line drawn between 0 and 100,000), only both points."""
    suite = bench_module("suite_table")
    reference = {"tdmpc2": {"compare": {"with": "final_evaluation"},
                            "tasks": {"dmc:walker-walk": {"curve": [[0, 0], [100_000, 1000]]}}}}
    records = [learning_record("dmc:walker-walk", "tdmpc2", 100, 500, env_steps=26_000)]
    lines = suite.suite_lines(records, reference)
    assert any("| none within 10% of 26,000 (measured: 0 at 0; 1000 at 100,000) | - |" in line
               for line in lines)
    summary = next(line for line in lines if line.startswith("- tdmpc2"))
    assert "no ratio: 1 task(s) without a published point within 10% of the budget" in summary


def test_one_final_evaluation_per_run_labelled_where_it_differs():
    """A record's final evaluation is its separate scoring of the final weights when it has
    one, else its final row; the label names TD-MPC2's greedy mode planning, the episodes,
    and a seed other than the run's evaluation seed (run seed + 2^30)."""
    suite = bench_module("suite_table")
    run = learning_record("dmc:walker-walk", "tdmpc2", 100, 500)
    run["final"].update(episodes=10, seed=100 + 2**30)
    assert suite.final_evaluation(run) == (500, "planning, 10 episodes")
    legacy = {**run, "final": {**run["final"], "mode": "prior"},
              "final_weights_eval": {"mode": "greedy", "return_mean": 600, "episodes": 5,
                                     "seed": 12345}}
    assert suite.final_evaluation(legacy) == (600, "planning, 5 episodes, seed 12345")
    dreamer = learning_record("dmc:walker-walk", "dreamerv3", 100, 300)
    assert suite.final_evaluation(dreamer) == (300, "greedy")


def timed(record: dict, wall: float, concurrent: str) -> dict:
    record["final"]["wall_minutes"] = wall
    record["machine"] = {"cores": 2, "concurrent": concurrent}
    return record


def test_run_minutes_are_counted_in_minutes_of_one_core():
    """Three one-thread runs on 2 cores get 2/3 of a core each: 90 wall minutes are 60 of
    one core, 93 are 62 (over the hour); two runs on 2 cores get a core each (45 -> 45), and
    so does one run alone (a one-thread run uses one core). A record that does not say how
    many ran at once is not converted."""
    suite = bench_module("suite_table")
    three = "3 run(s) at a time, 1 thread(s) each; pytest beside them"
    runs = [timed(learning_record("dmc:walker-walk", "tdmpc2", 100, 300), 90.0, three),
            timed(learning_record("dmc:walker-walk", "tdmpc2", 101, 300), 93.0, three),
            timed(learning_record("dmc:finger-spin", "tdmpc2", 100, 300), 45.0,
                  "up to 2 run(s) at a time, 1 thread each")]
    assert [round(suite.core_minutes(r), 6) for r in runs] == [60.0, 62.0, 45.0]
    alone = timed(learning_record("dmc:walker-walk", "tdmpc2", 0, 1), 50.0, "1 run at a time")
    assert suite.core_minutes(alone) == 50.0
    assert suite.core_minutes(timed(learning_record("dmc:walker-walk", "tdmpc2", 0, 1), 9.0,
                                    "nothing (alternating with the baseline runs)")) is None
    reference = {"tdmpc2": {"tasks": {t: {"curve": [[0, 0], [100_000, 1000]]}
                                      for t in ("dmc:walker-walk", "dmc:finger-spin")}}}
    text = "\n".join(suite.suite_lines(runs, reference))
    assert "| 90-93 (60-62) |" in text and "| 45 (45) |" in text
    assert "2 of 3 timed runs within 60 minutes of one core" in text


def test_suite_plot_draws_the_seed_mean_of_the_recorded_evaluations(tmp_path):
    """Seeds evaluated at the same env steps (100, 300 then 300, 500) plot as their mean
    (200, 400); the published curve and the random policy are drawn beside them; records
    outside the suite draw nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot = bench_module("suite_plot")
    records = []
    for seed, returns in ((100, (100, 300)), (101, (300, 500))):
        r = learning_record("dmc:walker-walk", "dreamerv3", seed, returns[-1])
        r["evaluations"] = [{"env_steps": s, "return_mean": v}
                            for s, v in zip((24_000, 48_000), returns)]
        records.append(r)
    reference = {"dreamerv3": {"tasks": {"dmc:walker-walk": {"curve": [[0, 0], [50_000, 500]]}}}}
    fig, ax = plt.subplots()
    plot._panel(ax, "dmc:walker-walk", {"dreamerv3": records}, reference,
                {"return_mean": 40.0})
    ours, final, published, random = ax.lines[:4]
    assert list(ours.get_xdata()) == [24_000, 48_000] and list(ours.get_ydata()) == [200, 400]
    assert list(final.get_ydata()) == [400]
    # published points are markers, never a line drawn between them
    assert list(published.get_ydata()) == [0, 500] and published.get_linestyle() == "None"
    assert list(random.get_ydata()) == [40, 40]
    plt.close(fig)
    assert plot.plot(records, reference, tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    records[0]["env"] = records[1]["env"] = "dmc:hopper-hop"
    assert plot.plot(records, reference, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


SUITE_SCRIPT = Path(__file__).resolve().parents[1] / "recipes/bench/heldout_suite.sh"


def run_suite_script(tmp_path, stop_at: str) -> subprocess.CompletedProcess:
    # PYTHON=true stands in for the engine: only the script's own STOP_AT handling is under test
    env = {**os.environ, "STOP_AT": stop_at, "PYTHON": "true", "OUT": str(tmp_path / "out"),
           "RECORDS": str(tmp_path / "records")}
    return subprocess.run(["bash", str(SUITE_SCRIPT)], env=env, capture_output=True, text=True)


def test_stop_at_a_time_already_past_today_means_that_time_tomorrow(tmp_path):
    two_minutes_ago = (datetime.now() - timedelta(minutes=2)).strftime("%H:%M")
    done = run_suite_script(tmp_path, two_minutes_ago)
    assert done.returncode == 0, done.stderr


def test_stop_at_that_is_not_a_time_is_refused_with_the_fix(tmp_path):
    done = run_suite_script(tmp_path, "half past six")
    assert done.returncode == 2
    assert "STOP_AT=half past six is not a time; give HH:MM" in done.stderr


# -- guarded runs ------------------------------------------------------------------------------
def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_guard_refuses_uncommitted_code_or_recipes(tmp_path):
    """A clean tree passes and is described by its commit; a changed or untracked file under
    wmtool/ or recipes/ is refused with the file named and the fix; a wmtool imported from
    another tree is refused too. Changes elsewhere (docs) do not matter."""
    guard = bench_module("guard")
    tree = tmp_path / "tree"
    (tree / "wmtool").mkdir(parents=True)
    (tree / "recipes").mkdir()
    (tree / "wmtool" / "__init__.py").write_text("")
    (tree / "recipes" / "r.yaml").write_text("a: 1\n")
    git(tree, "init", "-q")
    git(tree, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(tree, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    head = git(tree, "rev-parse", "HEAD")
    assert guard.check(tree, tree / "wmtool") == head[:12]
    (tree / "docs.md").write_text("notes")
    assert guard.check(tree) == head[:12]
    (tree / "recipes" / "r.yaml").write_text("a: 2\n")
    with pytest.raises(SystemExit, match=r"uncommitted changes in .* \(recipes/r.yaml\).*"
                                         r"commit them, or run from a clean checkout"):
        guard.check(tree)
    git(tree, "checkout", "-q", "recipes/r.yaml")
    (tree / "wmtool" / "new.py").write_text("x = 1\n")
    with pytest.raises(SystemExit, match=r"wmtool/new.py"):
        guard.check(tree)
    (tree / "wmtool" / "new.py").unlink()
    with pytest.raises(SystemExit, match="imports wmtool from .*; run with PYTHONPATH="):
        guard.check(tree, tmp_path / "elsewhere" / "wmtool")


def test_every_started_run_leaves_a_record_and_tables_refuse_two_results(tmp_path):
    """A sweep with a finished, an interrupted, a failed-at-start and a pending run: three
    records (the pending run never started), each with its status; the tables list the two
    that did not finish apart from the results; a second finished record of one experiment
    stops `make tables` with both names and the fix."""
    import json

    from test_evidence import short_run

    sweep_records, tables = bench_module("sweep_records"), bench_module("tables")
    root = tmp_path / "sweep"
    session, _ = short_run(root / "done", seed=7)
    session.close()
    interrupted = root / "cut"
    import shutil

    shutil.copytree(root / "done", interrupted)
    meta = json.loads((interrupted / "run.json").read_text())
    (interrupted / "run.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    (root / "broken.log").write_text("Error: train.eval_mode=dream is not a mode\n")
    runs = [{"name": "done", "seed": 7, "sets": [], "status": "finished", "exit_code": 0,
             "resumed": 0},
            {"name": "cut", "seed": 7, "sets": ["env.id=gym:CartPole-v1"],
             "status": "interrupted", "exit_code": 143, "resumed": 1},
            {"name": "broken", "seed": 8, "sets": [], "status": "failed", "exit_code": 1,
             "resumed": 0},
            {"name": "later", "seed": 9, "sets": [], "status": "pending", "exit_code": None,
             "resumed": 0}]
    (root / "sweep.json").write_text(json.dumps({"algo": "dreamerv3", "env": "gym:CartPole-v1",
                                                 "train_args": [], "runs": runs}))
    out = tmp_path / "records"
    written = sweep_records.write(root, "heldout_suite.sh", "abc", "abc123", "1 run", out)
    recs = {r["run"].rsplit("/", 1)[-1]: r for r in
            ({**json.loads(p.read_text()), "_record": p.stem} for p in written)}
    assert sorted(recs) == ["broken", "cut", "done"]
    assert [recs[n]["status"] for n in ("done", "cut", "broken")] == \
        ["finished", "interrupted", "failed"]
    assert recs["done"]["final"] and recs["cut"]["final"] is None
    assert recs["done"]["describe"]["started"] == "abc123"
    assert recs["done"]["training_episodes"] and recs["done"]["sweep"]["status"] == "finished"
    assert recs["broken"]["log_tail"] == ["Error: train.eval_mode=dream is not a mode"]
    # recording again leaves the finished record alone and adds nothing
    assert len(sweep_records.write(root, "x", "abc", "abc123", "1 run", out)) == 2
    text = tables.markdown(list(recs.values()))
    results, trace = text.split("## Runs that did not finish")
    assert recs["done"]["_record"] in results and recs["cut"]["_record"] not in results
    assert recs["cut"]["_record"] in trace and "| failed |" in trace
    # a rerun that also finished: the tables refuse to choose between the two
    (out / "rerun.json").write_text(json.dumps({**recs["done"], "run": "rerun"}))
    done = subprocess.run([sys.executable, str(SUITE_SCRIPT.parent / "tables.py"), "--results",
                           str(out), "--out", str(tmp_path / "t.md")], capture_output=True,
                          text=True)
    assert done.returncode == 1 and "dreamerv3 gym:CartPole-v1 from state seed 7:" in done.stderr
    assert "move the other to" in done.stderr and not (tmp_path / "t.md").exists()
    # the same run from pixels is another experiment, not a second result of this one
    rerun = json.loads((out / "rerun.json").read_text())
    rerun["config"]["env"]["obs"] = "pixels"
    (out / "rerun.json").write_text(json.dumps(rerun))
    assert tables.duplicates([recs["done"], rerun]) == []


def test_a_reference_curve_bins_each_seed_then_averages_the_seeds(tmp_path):
    reference_curve = bench_module("reference_curve")
    assert reference_curve.wmtool_task("dmc_ball_in_cup_catch") == "dmc:ball_in_cup-catch"
    assert reference_curve.wmtool_task("dmc_cartpole_swingup") == "dmc:cartpole-swingup"
    runs = [  # seed 0: two episodes in [0, 10k), one in [10k, 20k); seed 1: one in each
        {"task": "dmc_cartpole_swingup", "method": "m", "seed": 0,
         "xs": [4000, 8000, 12000], "ys": [10.0, 30.0, 100.0]},
        {"task": "dmc_cartpole_swingup", "method": "m", "seed": 1,
         "xs": [9999, 10000], "ys": [40.0, 300.0]},
        {"task": "dmc_walker_walk", "method": "m", "seed": 0, "xs": [5000], "ys": [1.0]}]
    out = reference_curve.reference(runs, ["cartpole-swingup"], 10_000, 20_000)
    assert list(out) == ["dmc:cartpole-swingup"] and out["dmc:cartpole-swingup"]["seeds"] == 2
    # bin 10k: mean of (20, 40); bin 20k: mean of (100, 300), the episode at 10,000 included
    assert out["dmc:cartpole-swingup"]["curve"] == [[10000, 30.0], [20000, 200.0]]


def test_dreamer_v1_and_planet_are_shown_beside_their_published_points_never_as_ratios():
    """Issue 42, item 3: the shipped pixel reference holds Dreamer V1's released points (5K,
    105K, ... env steps) and PlaNet's 1M value. A 50,000-step run of either gets no ratio,
    only the measured points around its budget, and never a value between them."""
    import json

    suite = bench_module("suite_table")
    root = Path(__file__).resolve().parents[1]
    vision = json.loads((root / "benchmarks/reference/dmc_vision.json").read_text())
    records = []
    for algo in ("dreamerv1", "planet"):
        r = learning_record("dmc:cartpole-swingup", algo, 100, 200.0, env_steps=50_000)
        r["config"] = {"env": {"obs": "pixels"}}
        records.append(r)
    text = "\n".join(suite.suite_lines(records, vision, None, suite.VISION))
    v1 = next(line for line in text.splitlines() if "| dreamerv1 |" in line)
    planet = next(line for line in text.splitlines() if "| planet |" in line)
    assert "none within 10% of 50,000 (measured: 75 at 5,000; 139 at 105,000) | - |" in v1
    assert "none within 10% of 50,000 (measured: 821 at 1,000,000) | - |" in planet


def test_a_reference_of_measured_points_or_of_one_baseline_value_takes_them_as_they_are():
    """`--points`: each x is a measurement, averaged over the seeds that made it (no bins);
    `--baseline`: {task: {key: value}} becomes one point per task at the given env steps."""
    reference_curve = bench_module("reference_curve")
    runs = [{"task": "dmc_cup_catch", "method": "dreamer", "seed": "0",
             "xs": [5000.0, 105000.0, 205000.0], "ys": [10.0, 100.0, 999.0]},
            {"task": "dmc_cup_catch", "method": "dreamer", "seed": "1",
             "xs": [5000.0, 105000.0], "ys": [20.0, 300.0]}]
    out = reference_curve.reference(runs, None, 10_000, 200_000, points=True)
    assert out == {"dmc:ball_in_cup-catch": {"seeds": 2, "source_task": "dmc_cup_catch",
                                             "curve": [[5000, 15.0], [105000, 200.0]]}}
    table = {"dmc_cheetah_run": {"planet_1e6": 662, "d4pg_100m": 523.8},
             "dmc_hopper_hop": {"d4pg_100m": 1.0}}
    assert reference_curve.baseline(table, "planet_1e6", 1_000_000, None) == {
        "dmc:cheetah-run": {"source_task": "dmc_cheetah_run", "curve": [[1_000_000, 662.0]]}}


def test_world_models_controllers_sit_beside_the_random_policy_and_the_paper_never_a_ratio():
    """Issue 42, item 4: World Models' final controllers per variant over their seeds (the
    paper's 100 episodes each), the random policy's record and the paper's 906 ± 21 labelled
    as another scale; a controller on another env stays out."""
    tables = bench_module("tables")
    records = []
    for seed, score in ((100, 300.0), (101, 500.0)):
        r = learning_record("gym:CarRacing-v3", "worldmodels", seed, score)
        r["final"].update(episodes=100, wall_minutes=60.0)
        r.update(variant="C by CMA-ES in the real env", status="finished", evaluations=[],
                 config={"env": {"action_repeat": 1}}, best=None)
        records.append(r)
    other = learning_record("gym:Pendulum-v1", "worldmodels", 102, 9.0)
    records.append({**other, "status": "finished", "evaluations": [], "best": None,
                    "config": {"env": {"action_repeat": 1}}})
    records.append({"kind": "random", "env": "gym:CarRacing-v3", "return_mean": -55.0,
                    "return_std": 10.0, "episodes": 100, "_record": "random-carracing"})
    reference = {"worldmodels": {"label": "paper, full scale", "source": "Ha & Schmidhuber",
                                 "return_mean": 906, "return_std": 21, "episodes": 100}}
    page = tables.markdown(records, {"carracing.json": reference})
    section = page.split("## World Models on CarRacing")[1].split("\n## ")[0]
    assert ("| C by CMA-ES in the real env | 100, 101 | 100 | 400.0 ± 100.0 (300.0 / 500.0) | "
            "60.0 ± 0.0 (60.0 / 60.0) |") in section
    assert "Pendulum" not in section
    assert "Random policy (`random-carracing`): -55.0 ± 10.0 over 100 episodes." in section
    assert "Published, at another scale (never a ratio): paper, full scale: 906 ± 21" in section


def test_genie_rows_put_each_seed_beside_its_chance_level():
    """Issue 42, item 4: per game, PSNR and ΔPSNR at t = 4 over the seeds, and each seed's
    latent-vs-true-action NMI and accuracy beside the chance levels its evaluation measured."""
    tables = bench_module("tables")

    def heldout(psnr, nmi):
        agree = {"nmi": nmi, "accuracy": 0.5,
                 "chance": {"nmi": 0.01, "accuracy": 0.2, "majority": 0.3}}
        return {"tokenizer_psnr": psnr, "delta_psnr_t4": 1.5,
                "actions": {**agree, "previous": {**agree, "nmi": nmi / 2}}}
    records = []
    for seed, psnr, nmi in ((100, 30.0, 0.2), (101, 32.0, 0.4)):
        r = learning_record("atari:breakout", "genie", seed, 0.0)
        r.update(variant="20 random episodes", status="finished", evaluations=[], best=None,
                 config={"env": {"action_repeat": 4}}, measurements={"heldout": heldout(psnr, nmi)})
        records.append(r)
    page = tables.markdown(records)
    row = next(line for line in page.splitlines() if line.startswith("| breakout |"))
    assert "| 100, 101 | 31.00 ± 1.00 (30.00 / 32.00) | 1.50 ± 0.00 (1.50 / 1.50) |" in row
    assert "| 0.200 (0.010); 0.400 (0.010) |" in row
    assert "| 0.500 (0.200 / 0.300); 0.500 (0.200 / 0.300) |" in row
    assert "| 0.100 (0.010); 0.200 (0.010) |" in row
