"""Run every benchmark and write ``benchmarks/results.md``.

Each ``benchmarks/bench_*.py`` runs as its own subprocess of this Python (so one
benchmark's memory, threads and caches do not affect the next), in name order, with
``--quick`` passed through. Each prints a Markdown section and, as its last line,
``BENCH-SUMMARY {json}`` (see ``_common.print_summary``); this runner strips that line,
builds the summary table at the top of the results (one row per comparison: both
figures, the ratio, the target, met or not) and writes the file atomically (temporary
file + ``os.replace``). A benchmark that exits non-zero, prints no summary line or runs
past ``--timeout`` is reported as FAILED (with the tail of its stderr) and makes this
runner exit with status 1, but the other sections are still written.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME ...] [--output PATH]

With ``--only``, the results go to ``benchmarks/results-only.md`` unless ``--output``
says otherwise, so a partial run never replaces the full results.
    make bench [BENCH_ARGS=--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SUMMARY_PREFIX = "BENCH-SUMMARY "  # as in _common.py (not imported: the runner needs no torch to work)
STDERR_TAIL_LINES = 30
#: CPU cores other processes may use during a benchmark before its figures are flagged as noisy
NOISY_CORES = 0.25


def discover(only: list[str] | None) -> list[Path]:
    scripts = sorted(HERE.glob("bench_*.py"))
    if not only:
        return scripts
    by_name = {p.stem.removeprefix("bench_"): p for p in scripts}
    wanted = [name.removesuffix(".py").removeprefix("benchmarks/").removeprefix("bench_") for name in only]
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[name] for name in dict.fromkeys(wanted)]


def run_one(script: Path, quick: bool, timeout: float) -> dict:
    """Run one benchmark; its section (Markdown), comparisons, wall time and failure, if any."""
    command = [sys.executable, str(script)] + (["--quick"] if quick else [])
    busy_before, ours_before = busy_cpu_seconds(), children_cpu_seconds()
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
        failure = f"exit status {code}" if code else None
    except subprocess.TimeoutExpired as exc:
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        stdout, stderr = text(exc.stdout), text(exc.stderr)
        failure = f"timed out after {timeout:g} s"
    wall = time.perf_counter() - start
    busy_after, ours_after = busy_cpu_seconds(), children_cpu_seconds()
    # CPU time the rest of the machine used meanwhile, in cores (0 on a quiet machine): the noise indicator
    others = (None if busy_before is None or busy_after is None
              else max(0.0, (busy_after - busy_before) - (ours_after - ours_before)) / wall)
    lines = stdout.rstrip("\n").splitlines()
    comparisons: list[dict] = []
    section_lines = []
    for line in lines:
        if line.startswith(SUMMARY_PREFIX):
            try:
                comparisons.extend(json.loads(line[len(SUMMARY_PREFIX):])["comparisons"])
            except (ValueError, KeyError, TypeError) as exc:
                failure = failure or f"unreadable summary line ({exc})"
        else:
            section_lines.append(line)
    if failure is None and not comparisons:
        failure = f"no {SUMMARY_PREFIX.strip()} line in its output"
    return {"name": script.stem.removeprefix("bench_"), "wall": wall, "others": others, "failure": failure,
            "comparisons": comparisons, "section": "\n".join(section_lines).strip(), "stderr": stderr}


def demote(markdown: str) -> str:
    """Headings one level down, so each benchmark's ``# Title`` nests under the file's title."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def figure(value: float) -> str:
    """About three significant digits, trailing zeros kept (1.00, 0.888, 12.5, 1,234)."""
    size = abs(value)
    if size == 0:
        return "0"
    spec = (",.0f" if size >= 100 else ".1f" if size >= 10 else ".2f" if size >= 1
            else "#.3g" if size >= 0.001 else ".2e")
    return format(value, spec)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:  # versions and threads as the benchmarks see them (in a subprocess: the runner stays light)
        probe = subprocess.run([sys.executable, "-c", "import torch, numpy; print(torch.__version__, "
                                "torch.get_num_threads(), torch.get_num_interop_threads(), numpy.__version__)"],
                               capture_output=True, text=True, timeout=120, check=True).stdout.split()
        libs = f"torch {probe[0]} ({probe[1]} intra-op / {probe[2]} inter-op threads), numpy {probe[3]}"
    except (subprocess.SubprocessError, IndexError):
        libs = "torch: not importable"
    return (f"{cpu}; {os.cpu_count()} CPUs ({usable} usable); {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; {libs}")


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have used since boot (Linux ``/proc/stat``), ``None`` elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None


def children_cpu_seconds() -> float:
    """CPU seconds of this runner's finished children (the benchmarks run so far)."""
    try:
        import resource
    except ImportError:  # not on Unix: busy_cpu_seconds() is None there anyway
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def python_command() -> str:
    try:
        return str(Path(sys.executable).relative_to(ROOT))
    except ValueError:
        return Path(sys.executable).name


def others_text(results: list[dict]) -> str:
    measured = [r for r in results if r["others"] is not None]
    if not measured:
        return "not measured (needs Linux /proc/stat)"
    noisy = [r["name"] for r in measured if r["others"] > NOISY_CORES]
    worst = max(measured, key=lambda r: r["others"])
    return (f"at most {worst['others']:.2f} cores ({worst['name']}); "
            + (f"**noisy** (over {NOISY_CORES} cores): {', '.join(noisy)}" if noisy else "quiet throughout"))


def render(results: list[dict], quick: bool, selection: list[str] | None, total: float, when: str,
           host: str, load_at_start: float | None) -> str:
    failed = [r for r in results if r["failure"]]
    missed = [c for r in results for c in r["comparisons"] if c.get("met") is False]
    out = ["# Benchmark results", "",
           f"- Date: {when}",
           f"- Machine: {host}",
           f"- Mode: {'quick (--quick: fewer rounds, smaller inputs)' if quick else 'full'}"
           + (f"; only {', '.join(selection)}" if selection else ""),
           f"- Total wall time: {total:.0f} s ({total / 60:.1f} min) for {len(results)} benchmarks",
           "- Load average (1 min) before the run: " + ("n/a" if load_at_start is None else f"{load_at_start:.2f}")
           + f"; other processes' CPU use during the run: {others_text(results)}",
           f"- Command: `{python_command()} benchmarks/run_all.py"
           + (" --quick" if quick else "") + (" --only " + " ".join(selection) if selection else "") + "`",
           f"- Outcome: {sum(1 for r in results for c in r['comparisons'] if c.get('met'))} targets met, "
           f"{len(missed)} missed, {len(failed)} benchmark(s) failed",
           "", "Medians of alternating rounds within one process per benchmark (ours and the reference "
           "interleaved, so the machine's drift cancels). Ratio: what the target is about (a speed ratio, "
           "ours / reference, where the target says `>=`; a cost ratio, our time / the reference's, "
           "where it says `<=`). Timings depend on the machine and its load (torch's threads slow down badly when "
           "other processes compete for the cores: see the other-processes column below); they are never asserted "
           "in tests.",
           "", "## Summary", "",
           "| benchmark | comparison | ours | reference | unit | ratio | target | result |",
           "|---|---|---:|---:|---|---:|---|---|"]
    for r in results:
        for c in r["comparisons"]:
            result = {True: "met", False: "**NOT met**", None: "(info)"}[c.get("met")]
            out.append(f"| {r['name']} | {cell(c['comparison'])} | {figure(c['ours'])} | {figure(c['reference'])} "
                       f"| {cell(c['unit'])} | {figure(c['ratio'])} | {cell(c['target'])} | {result} |")
        if r["failure"]:
            out.append(f"| {r['name']} | (whole benchmark) | | | | | | **FAILED**: {cell(r['failure'])} |")
    out += ["", "| benchmark | wall time (s) | other processes (cores) | status |", "|---|---:|---:|---|"]
    out += [f"| {r['name']} | {r['wall']:.1f} | {'n/a' if r['others'] is None else format(r['others'], '.2f')} | "
            + ("FAILED: " + cell(r["failure"]) if r["failure"] else "ok")
            + (" (noisy)" if r["others"] is not None and r["others"] > NOISY_CORES else "") + " |"
            for r in results]
    for r in results:
        out += ["", f"<!-- bench_{r['name']}.py: {r['wall']:.1f} s -->"]
        if r["section"]:
            out += [demote(r["section"])]
        else:
            out += [f"## {r['name']}"]
        if r["failure"]:
            tail = r["stderr"].rstrip().splitlines()[-STDERR_TAIL_LINES:]
            out += ["", f"**FAILED: {r['failure']}.** " + (f"Last {len(tail)} lines of its stderr:" if tail
                                                           else "Nothing on its stderr.")]
            if tail:
                out += ["", "```text", *tail, "```"]
    return "\n".join(out) + "\n"


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; results.md is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark (about 2-3 min)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these (e.g. cam ood_metrics)")
    parser.add_argument("--output", type=Path, help="default: benchmarks/results.md, or benchmarks/results-only.md "
                        "with --only (so a partial run never replaces the full results)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds per benchmark before it counts as failed, to catch a hang (default 1800; "
                        "a full benchmark takes 1-3 min on 2 quiet cores, several times that on a busy machine)")
    args = parser.parse_args()
    args.output = args.output or HERE / ("results-only.md" if args.only else "results.md")
    scripts = discover(args.only)
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_at_start = load_average()
    host = machine()
    print(f"{len(scripts)} benchmarks, {'quick' if args.quick else 'full'} mode; {host}; load average "
          + ("n/a" if load_at_start is None else f"{load_at_start:.2f}"), file=sys.stderr)
    start = time.perf_counter()
    results = []
    for k, script in enumerate(scripts, 1):
        print(f"[{k}/{len(scripts)}] {script.name} ...", end=" ", file=sys.stderr, flush=True)
        result = run_one(script, args.quick, args.timeout)
        missed = sum(c.get("met") is False for c in result["comparisons"])
        others = "" if result["others"] is None else f" (other processes: {result['others']:.2f} cores)"
        print(f"{result['wall']:.1f} s{others}, " + (f"FAILED ({result['failure']})" if result["failure"] else
              f"{len(result['comparisons'])} comparisons, {missed} missed"), file=sys.stderr, flush=True)
        results.append(result)
    total = time.perf_counter() - start
    text = render(results, args.quick, args.only, total, when, host, load_at_start)
    write_atomically(args.output, text)
    summary = text.split("\n## Summary\n", 1)[1].split("\n<!--", 1)[0]
    print(f"\nWrote {args.output} ({total:.0f} s in all)\n{summary.rstrip()}")
    return 1 if any(r["failure"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
