"""How a benchmark reports: the machine, the date, the command, what else ran, and the
marked sections of BENCHMARKS.md that each benchmark replaces with its latest table.
"""
from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path

from loadtest.workload import ROOT

BENCHMARKS = ROOT / "BENCHMARKS.md"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def other_activity(seconds: float = 2.0) -> str:
    """What else runs on the machine: other tritonservers, and processes busy over `seconds`."""
    try:
        import psutil
    except ImportError:
        return "unknown"
    mine = {os.getpid()}
    procs = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            proc.cpu_percent(None)
            procs.append(proc)
        except psutil.Error:
            continue
    time.sleep(seconds)
    busy, servers = [], 0
    for proc in procs:
        try:
            if proc.pid in mine:
                continue
            servers += proc.info["name"] == "tritonserver"
            cpu = proc.cpu_percent(None)
            if cpu >= 10:
                name = next((a.split("/")[-2] for a in proc.info["cmdline"] or [] if a.endswith("/model.py")), proc.info["name"])
                busy.append(f"{name} {cpu:.0f}%")
        except (psutil.Error, IndexError):
            continue
    return f"{servers} other tritonserver(s) running; busy over {seconds:g} s: {', '.join(busy) or 'nothing above 10% CPU'}"


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}, CPU only"


def record(section: str, body: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) one marked section of BENCHMARKS.md."""
    begin, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures measured by `loadtest/`; compare ratios within one run.\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def report_header(title: str, module: str, argv: list[str] | None = None) -> str:
    """A BENCHMARKS.md section's title and its machine, date and command lines."""
    command = f"python -m {module} " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    return (f"## {title}\n\n- machine: {machine_line()}\n- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"- command: `{command.strip()}`\n")


def publish(section: str, title: str, module: str, argv: list[str] | None, about: str, table: str,
            write: bool) -> None:
    """Print a standalone benchmark's report (header, what was run, its table); with --write,
    record it as `section` of BENCHMARKS.md."""
    report = report_header(title, module, argv) + f"- {about}\n\n" + table
    print(report)
    if write:
        record(section, report)


def header(title: str, load_before: str | None = None, activity: str | None = None) -> str:
    load = f"before {load_before}, after {load_average()}" if load_before else load_average()
    return (report_header(title, "loadtest.bench") + f"- load average (1/5/15 min): {load}\n"
            + (f"- also on the machine at the start: {activity}\n" if activity else ""))
