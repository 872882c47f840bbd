"""Runs ``openstack`` commands by forking a Python process that has already imported the CLI.

Started once per pytest process by ``conftest.osc_run``. Importing python-openstackclient and
its plugins takes about 1.3 s of CPU, which every ``openstack`` command would otherwise pay
again; here each command is ``openstackclient.shell.main(argv)`` in a child forked from this
warm process, with its own environment, working directory and output files, so it runs the
same code as the ``openstack`` script, only without the start-up.

Protocol, one JSON object per line on stdin: ``{"argv", "env", "stdout", "stderr"}``. For
each, two lines are written to stdout: ``{"pid": N}`` when the child starts (so the caller can
kill it on a timeout), then ``{"rc": N}`` when it ends (negative: killed by that signal).
"""

import importlib.metadata
import json
import os
import sys

import openstackclient.shell


def warm_up() -> None:
    """Imports every command module the CLI could load (the plugins' entry points)."""
    for group in importlib.metadata.entry_points().groups:
        if not group.startswith("openstack."):
            continue
        for entry in importlib.metadata.entry_points(group=group):
            try:
                entry.load()
            except Exception:  # a broken plugin fails in the child as it would in the script
                pass


def run_child(request: dict) -> None:
    """In the forked child: becomes the ``openstack`` process of ``request``; never returns."""
    code = 1
    try:
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        sys.argv = ["openstack", *request["argv"]]
        code = openstackclient.shell.main(request["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def main() -> None:
    warm_up()
    answers = sys.stdout
    print(json.dumps({"ready": True}), file=answers, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run_child(request)
        print(json.dumps({"pid": pid}), file=answers, flush=True)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        print(json.dumps({"rc": rc}), file=answers, flush=True)


if __name__ == "__main__":
    main()
