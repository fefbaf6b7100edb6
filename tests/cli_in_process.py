"""The CLI called in the test's own process (click's CliRunner), for tests about what a command
answers: its exit code, what it prints, the files it leaves. Tests about the process itself (signals,
a kill mid-run, the environment at start) still start a real one."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Optional

from click.testing import CliRunner


def run_cli(*args, env: Optional[dict] = None, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """`mlflow-catalog ARGS` as a finished process would answer: returncode, stdout, stderr.
    `env` is laid over this process's environment for the call (as a subprocess's `env=` would be
    when given the whole environment)."""
    from connector import cli

    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    kept = cli._redactor, cli._report_file  # the CLI's per-process globals, as a new process starts
    before = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(cli.main, [str(a) for a in args], env=env)
    finally:
        os.chdir(before)
        for signum, handler in handlers.items():  # `ingest` installs its own
            signal.signal(signum, handler)
        cli._redactor, cli._report_file = kept
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback the real CLI would not have printed: a bug, shown as one
    return subprocess.CompletedProcess(["mlflow-catalog", *map(str, args)], result.exit_code,
                                       result.stdout, result.stderr)
