"""`make mutate`: mutation testing of the loss and target functions (docs/mutation.md).

mutmut (pinned in pyproject.toml's dev extras, configured in its [tool.mutmut] table) copies
wmtool/ into mutants/, writes every mutant of the files it is told to mutate, learns which
fast test touches which function, then runs each mutant against those tests only. This script
asks it for the mutants of TARGETS alone (the loss and target functions and the helpers their
values and gradients pass through), with one worker and one torch thread, from a fresh
mutants/, and then reports (`--report`: again, from the results in mutants/):

- the counts (mutants / killed / survived / timeout / no tests / other), wall time, machine;
- every mutant that was not killed, with file:line and the mutated line, marked with the
  reason when EQUIVALENT lists it (a mutation that cannot change any value).

Exit status 1 when a mutant of TARGETS survives (or has no test) without being listed as
equivalent: then write a test that kills it, or, if no test can, list it with its reason here
and in docs/mutation.md. Retest single mutants with `.venv/bin/mutmut run NAME` (a named
mutant is always rerun) and look at one with `.venv/bin/mutmut show NAME`.
"""
from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# file -> functions ("name" or "Class.method") whose mutants are tested
TARGETS = {
    "wmtool/behavior/actor_critic.py": [  # Dreamer V1/V2/V3 behaviour: returns, actor, critic
        "lambda_return", "ReturnNorm.update", "ReturnNorm.scale", "ActorCritic.imagine",
        "ActorCritic.value", "ActorCritic.loss", "ActorCritic.update_slow_critic"],
    "wmtool/models/dreamer.py": [  # Dreamer/PlaNet world-model loss
        "DreamerModel.loss", "DreamerModel.predict_reward", "DreamerModel.predict_cont"],
    "wmtool/models/rssm.py": ["RSSM.kl", "RSSM.kl_loss"],  # KL balancing and free bits
    "wmtool/nets/dists.py": [  # the shared maths: symlog, twohot, KLs, actor densities
        "symlog", "symexp", "TwoHot._neighbours", "TwoHot.encode", "TwoHot.mean",
        "TwoHot.loss", "MSE.mean", "MSE.loss", "unimix_probs", "straight_through",
        "OneHot.__init__", "OneHot.log_prob", "OneHot.entropy", "categorical_kl",
        "gaussian_kl", "BoundedNormal.__init__", "BoundedNormal.sample",
        "BoundedNormal.log_prob", "BoundedNormal.entropy", "TanhNormal.__init__",
        "TanhNormal.sample", "TanhNormal.log_prob", "TanhNormal.entropy",
        "TruncNormal.__init__", "TruncNormal.sample", "TruncNormal.log_prob",
        "TruncNormal.entropy", "_normal_cdf", "bernoulli_nll"],
    "wmtool/models/tdmpc2.py": [  # TD-MPC2: the three-term loss, Q targets, their discount
        "TDMPC2Model.loss", "TDMPC2Model.q_value", "TDMPC2Model.after_update",
        "TDMPC2Model.note_episode"],
    "wmtool/behavior/mppi.py": [  # TD-MPC2's policy prior loss
        "PolicyPrior.forward", "RunningScale.update", "MPPIPlanner.loss"],
    "wmtool/models/worldmodels.py": [  # World Models: V's and M's losses
        "vae_kl", "reparameterise", "WorldModelsModel._vae_loss",
        "WorldModelsModel._mdnrnn_loss", "_masked_mean"],
    "wmtool/nets/mdn.py": ["MDN.__init__", "MDN.log_prob", "MDN.nll"],
    "wmtool/models/genie.py": [  # Genie: tokenizer, latent action model, dynamics losses
        "Tokenizer.loss", "LatentActionModel.loss", "cosine_mask_ratio",
        "MaskGITDynamics.loss", "GenieModel.loss"],
    "wmtool/nets/vq.py": ["VectorQuantizer.nearest", "VectorQuantizer.forward"],
}

# Survivors that no test can kill: (function, the mutated line as mutmut writes it) -> why
# the mutation cannot change any value. Keep docs/mutation.md's table in step.
CPU = ("device only: on the CPU the tests run on, None (the default) is the tensor's device; "
       "on a GPU the mutant fails on mixed devices or still computes the same value")
ALWAYS_AVERAGE = 'q_value averages its two heads for every kind but "min"'
UNUSED_PHASE = "a single-phase model never reads `phase`"
TWOHOT_GUARD = ("x is already clamped to [bins[0], bins[-1]], `above` to [1, len(bins) - 1] and "
                "the weight to [0, 1]: each guard is redundant given the other two")
EQUIVALENT: dict[tuple[str, str], str] = {
    # Dreamer
    ("ActorCritic.loss", "cont = torch.cat([start_cont[None], wm.predict_cont(feat[1:])], )"):
        "torch.cat's default axis is 0",
    ("ActorCritic.loss",
     "with torch.no_grad() if (self.reinforce) and False else frozen(self.critic):"):
        "REINFORCE detaches its actions, so the imagined features carry no gradient and the "
        "values none either way",
    ("ActorCritic.loss", "scale = torch.ones((), device=None)"): CPU,
    ("ActorCritic.loss", "scale = torch.ones((), )"): CPU,
    ("ReturnNorm.update", "lo, hi = torch.quantile(values, self.q.to(None))"): CPU,
    ("ReturnNorm.update", "self.count += 2"): "`count` is only ever compared with 0",
    ("ReturnNorm.update", "self.count = 1"): "`count` is only ever compared with 0",
    ("DreamerModel.loss",
     'def loss(self, batch: dict, state: State | None = None, phase: str = "XXjointXX"):'):
        UNUSED_PHASE,
    ("DreamerModel.loss",
     'def loss(self, batch: dict, state: State | None = None, phase: str = "JOINT"):'):
        UNUSED_PHASE,
    ("unimix_probs", "if unimix >= 0:"): "with unimix 0 the mix (1 - 0) p + 0 / n is p",
    ("TwoHot._neighbours", "x = x.clamp(bins[0], )"): TWOHOT_GUARD,
    ("TwoHot._neighbours", "x = x.clamp(bins[0], None)"): TWOHOT_GUARD,
    ("TwoHot._neighbours", "x = x.clamp(None, bins[-1])"): TWOHOT_GUARD,
    ("TwoHot._neighbours",
     "above = torch.searchsorted(bins, x.contiguous(), right=True).clamp(None, len(bins) - 1)"):
        TWOHOT_GUARD,
    ("TwoHot._neighbours", "return below, above, ((x - lo) / (hi - lo)).clamp(None, 1)"):
        TWOHOT_GUARD,
    ("TwoHot._neighbours", "return below, above, ((x - lo) / (hi - lo)).clamp(0, None)"):
        TWOHOT_GUARD,
    ("TwoHot._neighbours", "return below, above, ((x - lo) / (hi - lo)).clamp(0, )"):
        TWOHOT_GUARD,
    ("TwoHot._neighbours", "return below, above, ((x - lo) / (hi - lo)).clamp(0, 2)"):
        TWOHOT_GUARD,
    ("TwoHot._neighbours",
     "above = torch.searchsorted(bins, x.contiguous(), ).clamp(1, len(bins) - 1)"):
        "left or right search differ only for a value exactly on a bin, which both encode "
        "as weight 1 on that bin",
    ("TwoHot._neighbours",
     "above = torch.searchsorted(bins, x.contiguous(), right=False).clamp(1, len(bins) - 1)"):
        "left or right search differ only for a value exactly on a bin, which both encode "
        "as weight 1 on that bin",
    ("TwoHot.encode", "out = torch.zeros(*y.shape, len(self.bins), device=None, dtype=y.dtype)"):
        CPU,
    ("TwoHot.encode", "out = torch.zeros(*y.shape, len(self.bins), dtype=y.dtype)"): CPU,
    # TD-MPC2
    ("TDMPC2Model.loss",
     'def loss(self, batch: dict, state: State | None = None, phase: str = "XXjointXX"):'):
        UNUSED_PHASE,
    ("TDMPC2Model.loss",
     'def loss(self, batch: dict, state: State | None = None, phase: str = "JOINT"):'):
        UNUSED_PHASE,
    ("TDMPC2Model.loss",
     "rho = c.rho ** torch.arange(h, device=None, dtype=z_all.dtype)"): CPU,
    ("TDMPC2Model.loss", "rho = c.rho ** torch.arange(h, dtype=z_all.dtype)"): CPU,
    ("TDMPC2Model.loss", "rho = c.rho ** torch.arange(h, device=z_all.device, dtype=None)"):
        "rho (a float) to an integer range gives the same float32 powers",
    ("TDMPC2Model.loss", "rho = c.rho ** torch.arange(h, device=z_all.device, )"):
        "rho (a float) to an integer range gives the same float32 powers",
    ("TDMPC2Model.loss", "consistency.append(((z - targets[:, t]) ** 2).mean(+1))"):
        "z - targets[:, t] is (batch, latent): axis 1 is the last axis",
    ("TDMPC2Model.loss", "h + 1, dtype=seen.dtype)}"): CPU,
    ("TDMPC2Model.loss", "h + 1, device=seen.device, dtype=None)}"):
        "rho (a float) to an integer range gives the same float32 powers",
    ("TDMPC2Model.loss", "h + 1, device=seen.device, )}"):
        "rho (a float) to an integer range gives the same float32 powers",
    ("TDMPC2Model.loss", "h + 1, device=None, dtype=seen.dtype)}"): CPU,
    ("TDMPC2Model.q_value",
     'def q_value(self, z: torch.Tensor, action: torch.Tensor, kind: str = "XXavgXX",'):
        ALWAYS_AVERAGE,
    ("TDMPC2Model.q_value",
     'def q_value(self, z: torch.Tensor, action: torch.Tensor, kind: str = "AVG",'):
        ALWAYS_AVERAGE,
    ("TDMPC2Model.q_value", "pair = torch.randperm(net.members, )[:2]"): CPU,
    ("TDMPC2Model.q_value", "pair = torch.randperm(net.members, device=None)[:2]"): CPU,
    ("TDMPC2Model.note_episode", "if length < int(self.longest_episode):"):
        "an episode as long as the longest recomputes and stores the same discount",
    ("TDMPC2Model.note_episode",
     "gamma = (frac - 1) / frac if (frac > 0) or True else c.discount_min"):
        "frac = L / 5 > 0 for every L that gets there (L > the longest so far >= 0)",
    ("TDMPC2Model.note_episode", "gamma = (frac - 1) / frac if frac >= 0 else c.discount_min"):
        "frac = L / 5 > 0 for every L that gets there (L > the longest so far >= 0)",
    ("TDMPC2Model.note_episode", "gamma = (frac - 1) / frac if frac > 1 else c.discount_min"):
        "for 0 < frac <= 1, (frac - 1) / frac <= 0 is clipped up to discount_min as well",
    ("RunningScale.update", "lo, hi = torch.quantile(values, self.q.to(None))"): CPU,
    ("MPPIPlanner.loss", "q = wm.q_value(z, action, None)"): ALWAYS_AVERAGE,
    ("MPPIPlanner.loss", "q = wm.q_value(z, action, )"): ALWAYS_AVERAGE,
    ("MPPIPlanner.loss", 'q = wm.q_value(z, action, "XXavgXX")'): ALWAYS_AVERAGE,
    ("MPPIPlanner.loss", 'q = wm.q_value(z, action, "AVG")'): ALWAYS_AVERAGE,
    # Genie
    ("MaskGITDynamics.loss", "ratio = cosine_mask_ratio(parallel.rand((b, t, 1), None))"): CPU,
    ("MaskGITDynamics.loss", "hidden = parallel.rand((b, t, n), None) < ratio"): CPU,
    ("GenieModel.loss", "device=None)"): CPU,
    ("GenieModel.loss", ")"): CPU + " (the dropped argument is `device=frames.device`)",
    ("GenieModel.loss",
     "return total, [phase], None, {k: torch.as_tensor(v, device=None).detach()"): CPU,
    ("GenieModel.loss", "return total, [phase], None, {k: torch.as_tensor(v, ).detach()"): CPU,
    ("VectorQuantizer.nearest",
     "distance = (flat.pow(3).sum(1, keepdim=True) - 2 * flat @ book.t()"):
        "the first term is the same for every code of a row, so the nearest code (argmin) "
        "does not change",
    ("VectorQuantizer.forward",
     "self.usage -= torch.bincount(index.flatten(), minlength=self.codes).float()"):
        "restart() only asks whether a code's count is zero, which negative counts answer "
        "the same",
}

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
          None: "not checked"}


def mangled(function: str) -> str:
    """mutmut's name for a function: x_name, or xǁClassǁmethod."""
    if "." in function:
        cls, name = function.split(".")
        return f"x\u01c1{cls}\u01c1{name}"
    return f"x_{function}"


def patterns() -> dict[str, tuple[str, str]]:
    """mutant-name pattern -> (file, function)."""
    out = {}
    for path, functions in TARGETS.items():
        module = path[:-3].replace("/", ".")
        for function in functions:
            out[f"{module}.{mangled(function)}__mutmut_*"] = (path, function)
    return out


def spans(path: str) -> dict[str, tuple[int, int]]:
    """'name' / 'Class.method' -> (first, last) line of its definition in the source file."""
    tree = ast.parse((ROOT / path).read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = (node.lineno, node.end_lineno)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    out[f"{node.name}.{item.name}"] = (item.lineno, item.end_lineno)
    return out


def mutation(name: str, path: str, function: str) -> tuple[int, str, str]:
    """(file line, original line, mutated line) of one mutant, from `mutmut show`."""
    diff = subprocess.run([str(BIN / "mutmut"), "show", name], cwd=ROOT, capture_output=True,
                          text=True).stdout.splitlines()
    old, new, line = [], [], None
    offset = 0
    for text in diff:
        if text.startswith("@@"):
            offset = int(re.match(r"@@ -(\d+)", text).group(1))
        elif text.startswith("---") or text.startswith("+++") or text.startswith("#"):
            continue
        elif text.startswith("-"):
            line = line or offset
            old.append(text[1:].strip())
            offset += 1
        elif text.startswith("+"):
            new.append(text[1:].strip())
        elif text.startswith(" "):
            offset += 1
    # the source line that holds the first changed line, nearest to where the hunk puts it
    first, last = spans(path)[function]
    source = (ROOT / path).read_text().splitlines()
    guess = first + (line or 1) - 1
    found = [n for n in range(first, last + 1) if old and source[n - 1].strip() == old[0]]
    where = min(found, key=lambda n: abs(n - guess)) if found else guess
    return where, " / ".join(old), " / ".join(new)


def machine() -> str:
    import torch

    return (f"nproc {os.cpu_count()} (available {len(os.sched_getaffinity(0))}), "
            f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true",
                        help="only report on the results already in mutants/ (no run)")
    args = parser.parse_args()
    os.chdir(ROOT)
    wanted = patterns()
    if args.report:
        wall = json.loads(Path("mutants/summary.json").read_text())["wall_seconds"]
    else:
        shutil.rmtree("mutants", ignore_errors=True)  # a whole run: every mutant, every test
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        started = time.time()
        run = subprocess.run([str(BIN / "mutmut"), "run", "--max-children", "1", *wanted],
                             env=env)
        wall = time.time() - started
        if run.returncode != 0:
            print(f"mutmut run failed (exit {run.returncode})", file=sys.stderr)
            return run.returncode

    results: dict[str, tuple[int | None, str, str]] = {}  # mutant -> (exit code, file, fn)
    for path in TARGETS:
        meta = json.loads(Path(f"mutants/{path}.meta").read_text())
        for name, code in meta["exit_code_by_key"].items():
            for pattern, (file, function) in wanted.items():
                if fnmatch.fnmatchcase(name, pattern):
                    results[name] = (code, file, function)
    counts: dict[str, int] = {}
    for code, _, _ in results.values():
        status = STATUS.get(code, "suspicious")
        counts[status] = counts.get(status, 0) + 1

    rows, unexplained = [], 0
    for name, (code, path, function) in sorted(results.items()):
        status = STATUS.get(code, "suspicious")
        if status in ("killed", "timeout"):
            continue
        line, old, new = mutation(name, path, function)
        reason = EQUIVALENT.get((function, new))
        if reason is None:
            unexplained += 1
        rows.append({"mutant": name.rsplit(".", 1)[1], "status": status,
                     "where": f"{path}:{line}", "function": function, "old": old, "new": new,
                     "equivalent": reason})

    summary = {"mutants": len(results), **{k: counts.get(k, 0) for k in
               ("killed", "survived", "timeout", "no tests")},
               "other": sum(v for k, v in counts.items()
                            if k not in ("killed", "survived", "timeout", "no tests")),
               "wall_seconds": round(wall), "machine": machine(), "not_killed": rows}
    Path("mutants/summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    print()
    print(f"mutants {summary['mutants']}: killed {summary['killed']}, survived "
          f"{summary['survived']}, timeout {summary['timeout']}, no tests "
          f"{summary['no tests']}, other {summary['other']}; {wall / 60:.1f} min wall")
    print(f"machine: {summary['machine']}")
    for row in rows:
        mark = "equivalent: " + row["equivalent"] if row["equivalent"] else "NOT EXPLAINED"
        print(f"\n{row['status']}  {row['where']}  {row['function']}  ({row['mutant']})\n"
              f"    - {row['old']}\n    + {row['new']}\n    {mark}")
    print(f"\n{unexplained} surviving mutants are not listed as equivalent"
          + (": kill them with a test, or list them (scripts/mutate.py EQUIVALENT)"
             if unexplained else ""))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
