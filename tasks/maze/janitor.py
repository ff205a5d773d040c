"""The janitor of one maze engine server (``engine.Janitor``), run as a script by a bare interpreter
(``python -S janitor.py FD WORKDIR``: the standard library only, started in a few milliseconds).

It forks once and lets its first process exit, so that it no longer belongs to the server's process tree
(which loky kills whole when a run is interrupted). It reads the engines and files the server notes on the
pipe ``FD`` until the pipe closes, which the kernel does however the server ends, SIGKILL included; then it
kills the engines still running (only processes whose command line names the server's folder ``WORKDIR``,
never a reused pid) and removes their shared memory and the folder. After a clean close it finds nothing
left to do.
"""

import os
import shutil
import signal
import sys
import time


def _ours(pid: int, workdir: str) -> bool:
    """Whether ``pid`` runs and is an engine of this server (its command line names the server's folder)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return workdir.encode() in fh.read()
    except OSError:
        return False


def main(fd: int, workdir: str) -> None:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    notes = [line.partition(" ") for line in data.decode(errors="replace").splitlines()]
    left = [int(value) for kind, _, value in notes if kind == "engine" and _ours(int(value), workdir)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 5.0  # SIGKILL is delivered asynchronously
    while any(_ours(pid, workdir) for pid in left) and time.monotonic() < deadline:
        time.sleep(0.01)
    for path in [value for kind, _, value in notes if kind == "path"] + [workdir]:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


if __name__ == "__main__":
    if os.fork():  # out of the server's process tree: its first process exits at once
        os._exit(0)
    os.setsid()
    main(int(sys.argv[1]), sys.argv[2])
