"""The ``communipute`` command (docs/sdk.md, "The command line").

Exit codes, for scripts:

====  ========================================================================
0     done; for a command that waited on a job (``run --follow``/``--wait``,
      ``wait``, ``logs -f``): the job succeeded
1     the job failed (its script exited non-zero, or it could not run)
2     usage: bad arguments, a file that isn't there, no server or token configured
3     the server refused (an API error: its code is printed) or could not be reached
4     the job ended without succeeding otherwise: timed out, cancelled, or stopped
      at its cost cap (budget_exhausted)
5     gave up waiting (``--timeout``): the job goes on
130   interrupted (Ctrl-C): a job already submitted goes on
====  ========================================================================

``--json`` on every command that reads prints the server's JSON on stdout (and nothing else
there: logs that ``run --follow --json`` streams go to stderr).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from communipute._version import __version__
from communipute.client import Client
from communipute.config import URL_ENV, stored
from communipute.errors import (
    ApiError,
    AuthenticationFailed,
    ConfigError,
    ConnectionFailed,
    JobWaitTimeout,
    UploadFailed,
)
from communipute.files import FileSpec
from communipute.jobs import Job
from communipute.login import login
from communipute.models import JobInfo
from communipute.money import micros_text

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_JOB_STOPPED = 4
EXIT_WAIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130

DEFAULT_URL = "http://127.0.0.1:8000"  # make demo's


def outcome_exit(info: JobInfo) -> int:
    """The exit code that follows a finished job's outcome (see the module's table)."""
    if info.status == "succeeded":
        return EXIT_OK
    if info.status == "failed":
        return EXIT_JOB_FAILED
    if info.is_finished:
        return EXIT_JOB_STOPPED
    return EXIT_WAIT_TIMEOUT


def _print_json(value: Any, out: TextIO | None = None) -> None:
    print(json.dumps(value, indent=2, sort_keys=True), file=out or sys.stdout)


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _cost(micros: int) -> str:
    return f"{micros_text(micros)} cr"


def _summary(info: JobInfo) -> str:
    text = f"job {info.id} {info.status}"
    if info.exit_code is not None:
        text += f" (exit {info.exit_code})"
    if info.status_reason and info.status != "succeeded":
        text += f": {info.status_reason}"
    return text + f"; cost {_cost(info.cost_micros)}"


# --- commands ---------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get(URL_ENV) or stored().get("url") or DEFAULT_URL
    username = args.username or input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {username} at {url}: ")
    path = login(url, username, password, token_name=args.token_name)
    _say(f"Logged in to {url} as {username}; the API token is in {path}")
    return EXIT_OK


def _input_spec(text: str) -> FileSpec:
    local, sep, remote = text.partition("=")
    return (local, remote) if sep else local


def cmd_run(args: argparse.Namespace) -> int:
    requirements: list[str] = []
    for path in args.requirements or ():
        requirements += Path(path).read_text(encoding="utf-8").splitlines()
    disk = {
        name: value
        for name, value in (
            ("work_mb", args.work_mb),
            ("outputs_mb", args.outputs_mb),
            ("tmp_mb", args.tmp_mb),
        )
        if value is not None
    }
    with Client(args.url) as client:
        job = client.run(
            args.script,
            requirements=requirements,
            inputs=[_input_spec(text) for text in args.input or ()],
            files=[_input_spec(text) for text in args.file or ()],
            archive=args.archive,
            cpus=args.cpus,
            memory_mb=args.memory_mb,
            gpus=args.gpus,
            timeout_seconds=args.timeout,
            max_cost=args.max_cost,
            max_cost_micros=args.max_cost_micros,
            host=args.host,
            disk=disk or None,
            name=args.name,
        )
        if not (args.follow or args.wait):
            if args.json:
                _print_json(job.info.raw)
            else:
                print(f"job {job.id} {job.status}")
            return EXIT_OK
        _say(f"job {job.id} {job.status}")
        return _finish(job, follow=args.follow, as_json=args.json, timeout=args.wait_timeout)


def _finish(job: Job, *, follow: bool, as_json: bool, timeout: float | None) -> int:
    """Stream the log (``follow``), wait for the end, report it; the outcome's exit code."""
    if follow:
        out = sys.stderr if as_json else sys.stdout
        for text in job.logs(follow=True):
            out.write(text)
            out.flush()
    info = job.wait(timeout=timeout)
    if as_json:
        _print_json(info.raw)
    _say(_summary(info))
    return outcome_exit(info)


def cmd_jobs(args: argparse.Namespace) -> int:
    statuses = [s for text in args.status or () for s in text.split(",") if s] or None
    with Client(args.url) as client:
        jobs = client.jobs(status=statuses, limit=args.limit)
    if args.json:
        _print_json([job.info.raw for job in jobs])
        return EXIT_OK
    rows = [("ID", "STATUS", "NAME", "COST", "CREATED")]
    for job in jobs:
        created = job.info.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.info.created_at else ""
        rows.append((str(job.id), job.status, job.info.name, _cost(job.cost_micros), created))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    with Client(args.url) as client:
        info = client.job(args.id).info
    if args.json:
        _print_json(info.raw)
    else:
        print(_summary(info))
        if info.waiting_reason:
            print(f"  {info.waiting_reason}")
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    with Client(args.url) as client:
        return _finish(client.job(args.id), follow=False, as_json=args.json, timeout=args.timeout)


def cmd_logs(args: argparse.Namespace) -> int:
    with Client(args.url) as client:
        job = client.job(args.id)
        if args.json:
            for page in job.log_pages(follow=args.follow):
                print(json.dumps(page.raw, sort_keys=True), flush=True)
        else:
            for text in job.logs(follow=args.follow):
                sys.stdout.write(text)
                sys.stdout.flush()
        if not args.follow:
            return EXIT_OK
        info = job.wait()
    _say(_summary(info))
    return outcome_exit(info)


def cmd_cancel(args: argparse.Namespace) -> int:
    with Client(args.url) as client:
        info = client.job(args.id).cancel()
    if args.json:
        _print_json(info.raw)
    elif info.is_finished:
        print(f"job {info.id} {info.status}")
    else:
        print(f"job {info.id}: cancel requested; its host stops it")
    return EXIT_OK


def cmd_outputs(args: argparse.Namespace) -> int:
    with Client(args.url) as client:
        job = client.job(args.id)
        outputs = job.outputs()
        saved = []
        if args.download:
            folder = Path(args.download)
            folder.mkdir(parents=True, exist_ok=True)
            saved = [job.download(output, folder) for output in outputs]
    if args.json:
        rows = [dict(output.raw) for output in outputs]
        for row, path in zip(rows, saved, strict=False):  # saved: empty without --download
            row["saved_to"] = str(path)
        _print_json(rows)
        return EXIT_OK
    for index, output in enumerate(outputs):
        where = f"  -> {saved[index]}" if saved else ""
        print(f"{output.name}  {output.size} bytes  sha256 {output.sha256}{where}")
    return EXIT_OK


def cmd_receipt(args: argparse.Namespace) -> int:
    with Client(args.url) as client:
        receipt = client.job(args.id).receipt()
    if args.json:
        _print_json(receipt.raw)
        return EXIT_OK
    print(f"job {receipt.job_id} {receipt.job_name} {receipt.status}")
    for attempt in receipt.attempts:
        print(
            f"  attempt {attempt.attempt} on host {attempt.host_id} ({attempt.status}): "
            f"{attempt.wall_seconds} s, charged {_cost(attempt.charged_micros)}"
        )
    totals = receipt.totals
    print(
        f"  charged {_cost(totals.charged_micros)} (host {_cost(totals.host_net_micros)}, "
        f"fee {_cost(totals.fee_micros)}); held {_cost(receipt.hold_micros)}, "
        f"returned {_cost(receipt.refund_micros)}"
        + ("" if receipt.is_settled else f"; still held {_cost(receipt.held_micros)}")
    )
    return EXIT_OK


def cmd_wallet(args: argparse.Namespace) -> int:
    with Client(args.url) as client:
        wallet = client.wallet()
    if args.json:
        _print_json(wallet.raw)
    else:
        print(
            f"available {_cost(wallet.available_micros)}, held {_cost(wallet.held_micros)}, "
            f"balance {_cost(wallet.balance_micros)}"
        )
    return EXIT_OK


# --- the parser -------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the server (default: ${URL_ENV}, or what login kept)")
    reads = argparse.ArgumentParser(add_help=False)
    reads.add_argument("--json", action="store_true", help="print the server's JSON")

    top = argparse.ArgumentParser(
        prog="communipute",
        description="Run Python scripts on CommuniPute's hosts (docs/sdk.md).",
        epilog="exit codes: 0 done/succeeded, 1 the job failed, 2 usage, 3 API error, "
        "4 timed out/cancelled/budget exhausted, 5 gave up waiting, 130 interrupted",
    )
    top.add_argument("--version", action="version", version=f"communipute {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        text: str,
        *parents: argparse.ArgumentParser,
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text, parents=[common, *parents])
        sub.set_defaults(handler=handler)
        return sub

    sub = add("login", cmd_login, "log in with a password and keep an API token")
    sub.add_argument("--username")
    sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sub.add_argument("--token-name", help="what to call the token (default: after this machine)")

    sub = add("run", cmd_run, "run a script as a job", reads)
    sub.add_argument("script", help="the .py file (with --archive: its path in the archive)")
    sub.add_argument(
        "-r",
        "--requirements",
        action="append",
        metavar="FILE",
        help="a requirements.txt (plain specifiers)",
    )
    sub.add_argument(
        "--input",
        action="append",
        metavar="PATH[=IN_JOB]",
        help="a file or folder for /inputs (uploaded); repeat for more",
    )
    sub.add_argument(
        "--file",
        action="append",
        metavar="PATH[=IN_JOB]",
        help="a code file or folder beside the script; repeat for more",
    )
    sub.add_argument("--archive", metavar="ZIP_OR_FOLDER", help="the code as one zip (uploaded)")
    cap = sub.add_mutually_exclusive_group(required=True)
    cap.add_argument("--max-cost", metavar="CREDITS", help="the cost cap, in credits")
    cap.add_argument("--max-cost-micros", type=int, metavar="MICROS", help="... in micro-credits")
    sub.add_argument("--cpus")
    sub.add_argument("--memory-mb", type=int)
    sub.add_argument("--gpus", type=int)
    sub.add_argument("--timeout", type=int, metavar="SECONDS", help="the job's time limit")
    sub.add_argument("--host", type=int, metavar="ID", help="a host (default: placed for you)")
    sub.add_argument("--name")
    sub.add_argument("--work-mb", type=int)
    sub.add_argument("--outputs-mb", type=int)
    sub.add_argument("--tmp-mb", type=int)
    sub.add_argument("-f", "--follow", action="store_true", help="stream the log, then wait")
    sub.add_argument("--wait", action="store_true", help="wait for the job to end")
    sub.add_argument(
        "--wait-timeout",
        type=float,
        metavar="SECONDS",
        help="with --follow/--wait: give up after this long (exit 5)",
    )

    sub = add("jobs", cmd_jobs, "list your jobs, newest first", reads)
    sub.add_argument("--status", action="append", help="only these statuses (a,b or repeat)")
    sub.add_argument("--limit", type=int, default=20)

    sub = add("show", cmd_show, "one job's state", reads)
    sub.add_argument("id", type=int)

    sub = add("wait", cmd_wait, "wait for a job to end; exit by its outcome", reads)
    sub.add_argument("id", type=int)
    sub.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after (exit 5)")

    sub = add("logs", cmd_logs, "a job's log", reads)
    sub.add_argument("id", type=int)
    sub.add_argument("-f", "--follow", action="store_true", help="follow it until the job ends")

    sub = add("cancel", cmd_cancel, "cancel a job", reads)
    sub.add_argument("id", type=int)

    sub = add("outputs", cmd_outputs, "a job's output files", reads)
    sub.add_argument("id", type=int)
    sub.add_argument("--download", metavar="DIR", help="save them all under DIR")

    sub = add("receipt", cmd_receipt, "what a job cost", reads)
    sub.add_argument("id", type=int)

    add("wallet", cmd_wallet, "your credits", reads)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        _say("communipute: interrupted (a job already submitted goes on)")
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        _say(f"communipute: {exc}")
        return EXIT_USAGE
    except JobWaitTimeout as exc:
        _say(f"communipute: {exc}")
        return EXIT_WAIT_TIMEOUT
    except AuthenticationFailed as exc:
        _say(f"communipute: {exc}\n(log in again: communipute login)")
        return EXIT_API
    except ApiError as exc:
        _say(f"communipute: the server refused: {exc}")
        return EXIT_API
    except (ConnectionFailed, UploadFailed) as exc:
        _say(f"communipute: {exc}")
        return EXIT_API
    except (OSError, ValueError, TypeError) as exc:
        _say(f"communipute: {exc}")
        return EXIT_USAGE
