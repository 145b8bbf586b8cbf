"""`wmtool play` measured in a real browser: frames per second and key-to-frame latency.

    python recipes/bench/play_speed.py --run RUN [--run RUN ...] [--seconds 15] [--real]
        [--fps 30] [--threads 1] [--screenshot docs/img/play.png] [--record] [--json]

For each run: starts `wmtool play --run RUN --port 0`, opens the page in Debian's Chromium
driven by Playwright (`executable_path=/usr/bin/chromium`: no browser is ever downloaded),
and taps keys for `--seconds`: each key held for 150 ms, then released, alternating between
the first two keys of the page's key map. The page itself counts the frames it receives
(frames/s over the last second) and, per key message, the time until a state that used it
arrives (key-to-frame latency). Reports the median frames/s after the first second, the
latency p50/p95, and then, paused, from the same start (Restart) four single steps under
each key: whether two actions gave different frames and the same key the same frame again;
and the Chromium and
Playwright versions. `--record` writes benchmarks/results/play-DATE-COMMIT.json with the
machine (cpu capability, matmul peak). tests/test_play_browser.py runs it briefly.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# Flags for a sandboxless, offline machine: no first-run work, no background connections.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]


def chromium_major(path: str = CHROMIUM) -> int:
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    return int(re.search(r"(\d+)\.", out).group(1))


def playwright_chromium_major() -> int:
    """The Chromium major version the installed Playwright was built against."""
    import playwright

    path = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    browsers = json.loads(path.read_text())["browsers"]
    return int(next(b for b in browsers if b["name"] == "chromium")["browserVersion"]
               .split(".")[0])


def start_play(run: Path, real: bool, fps: float, threads: int) -> tuple[subprocess.Popen, str]:
    cmd = [str(Path(sys.executable).parent / "wmtool"), "play", "--run", str(run), "--port",
           "0", "--fps", str(fps), "--threads", str(threads), *(["--real"] if real else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"error: wmtool play did not start: {proc.stderr.read()[-500:]}")
    return proc, url


def described(run: Path) -> str:
    """What model a run holds, in a few words: env, observations, width."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    env, model = cfg["env"], cfg.get("model", {})
    obs = (f"pixels {env['size'][0]}x{env['size'][1]}" if env.get("obs") == "pixels"
           else env.get("obs", "state"))
    return f"{env['id']}, {obs}, {model.get('units', '?')} units"


def from_the_same_start(page, keys: list[str], steps: int = 4) -> list[int]:
    """Paused, from the same start (Restart), `steps` single steps holding the first key, the
    second, then the first again: the dream's frame hash after each. Two actions should give
    two frames, and the same keys the same frame again."""
    page.click("#pause")
    hashes = []
    for key in (keys[0], keys[1 % len(keys)], keys[0]):
        page.click("#restart")
        page.wait_for_function("playStats.state.step === 0 && playStats.state.paused")
        page.keyboard.down(key)
        for n in range(1, steps + 1):
            page.click("#step")
            page.wait_for_function(f"playStats.state.step === {n}")
        hashes.append(page.evaluate("window.playStats.dreamHash"))
        page.keyboard.up(key)
    return hashes


def measure(run: Path, seconds: float, real: bool, fps: float, threads: int,
            screenshot: Path | None) -> dict:
    from playwright.sync_api import sync_playwright

    proc, url = start_play(run, real, fps, threads)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1000, "height": 820})
            page.goto(url)
            page.wait_for_function("window.playStats.frames > 5", timeout=60_000)
            hello = page.evaluate("window.playStats.hello")
            keys = [e["keys"][-1] for e in hello["keys"]][:2]
            samples = []
            started = time.perf_counter()
            i = 0
            while time.perf_counter() - started < seconds:
                key = keys[i % len(keys)]
                page.keyboard.down(key)
                page.wait_for_timeout(150)
                page.keyboard.up(key)
                page.wait_for_timeout(60)
                if time.perf_counter() - started > 1.0:
                    samples.append(page.evaluate("window.playStats.fps"))
                i += 1
            stats = page.evaluate("window.playStats")
            if screenshot:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
            branches = from_the_same_start(page, keys)
            version = browser.version
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lat = sorted(stats["latencies"])
    pick = lambda q: round(lat[min(len(lat) - 1, int(q * (len(lat) - 1)))], 1) if lat else None
    return {"run": str(run), "model": described(run), "algo": hello["algo"],
            "world": hello["world"],
            "fps_target": fps, "fps_median": statistics.median(samples) if samples else 0,
            "frames": stats["frames"], "seconds": seconds,
            "latency_ms_p50": pick(0.5), "latency_ms_p95": pick(0.95), "latency_samples": len(lat),
            "branch_hashes": branches, "keys_differ": branches[0] != branches[1],
            "replays_identically": branches[0] == branches[2], "chromium": version,
            "real": real, "threads": threads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, action="append", required=True)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--real", action="store_true")
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--screenshot", type=Path)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--concurrent", default="nothing")
    args = ap.parse_args()
    from importlib.metadata import version

    results = [measure(run, args.seconds, args.real, args.fps, args.threads,
                       args.screenshot if i == 0 else None) for i, run in enumerate(args.run)]
    out = {"results": results, "playwright": version("playwright"),
           "chromium_major": chromium_major(),
           "playwright_chromium_major": playwright_chromium_major()}
    print(json.dumps(out, indent=1))
    if args.record:
        import torch

        from wmtool.benchmarks.record import header, save
        from wmtool.engine.bench import matmul_gflops

        command = "python recipes/bench/play_speed.py " + " ".join(sys.argv[1:])
        rec = {**header("play", command, args.concurrent, args.threads), **out,
               "matmul_gflops_fp32": round(matmul_gflops(torch.float32), 1)}
        save(rec, ROOT / "benchmarks" / "results", "play")


if __name__ == "__main__":
    main()
