"""``communipute-agent``: enroll this machine, run the agent, see its status, drain it.

    communipute-agent enroll --server https://cp.example.org --token cpe_…
    communipute-agent run
    communipute-agent status [--json]
    communipute-agent drain [--exit | --cancel] [--wait]

Settings come from the config file, then the environment, then flags (see agent/config.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import re
import socket
import ssl
import stat
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import (
    AgentConfig,
    ConfigError,
    config_install_id_ensure,
    config_load,
    config_save_enrollment,
)
from agent.control import DrainMode, agent_is_running, drain_request, state_read

logger = logging.getLogger("agent")

EXIT_USAGE = 2
EXIT_FAILED = 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = config_load(getattr(args, "config", None), overrides=_overrides(args))
    except ConfigError as exc:
        print(f"communipute-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _logging_setup(config.log_level)
    command: Any = args.command_function
    return int(command(args, config))


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="config file (default $COMMUNIPUTE_AGENT_CONFIG or ~/.config/communipute/agent.json)",
    )
    common.add_argument("--log-level", dest="log_level", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="communipute-agent", description="The CommuniPute host agent.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(required=True, metavar="command")

    enroll = commands.add_parser("enroll", parents=[common], help="register this machine")
    enroll.add_argument("--server", required=True, help="e.g. https://cp.example.org")
    enroll.add_argument("--token", required=True, help="the enrollment token from the web app")
    enroll.add_argument("--name", default=socket.gethostname(), help="host name shown to you")
    enroll.add_argument("--ca-bundle", dest="ca_bundle", default=argparse.SUPPRESS)
    enroll.add_argument("--force", action="store_true", help="replace an existing enrollment")
    enroll.set_defaults(command_function=command_enroll)

    run = commands.add_parser("run", parents=[common], help="connect and take work")
    run.add_argument("--server", default=argparse.SUPPRESS)
    run.add_argument("--work-dir", dest="work_dir", default=argparse.SUPPRESS)
    run.add_argument("--runner-image", dest="runner_image", default=argparse.SUPPRESS)
    run.add_argument("--pip-index-url", dest="pip_index_url", default=argparse.SUPPRESS)
    run.add_argument(
        "--pip-cert",
        dest="pip_cert",
        default=argparse.SUPPRESS,
        help="CA bundle for pip inside jobs' install step (PIP_CERT)",
    )
    run.add_argument(
        "--slots",
        "--max-jobs",
        dest="slots",
        type=int,
        default=argparse.SUPPRESS,
        help="jobs side by side, 1-64 (default: from the cores and the memory)",
    )
    run.add_argument("--ca-bundle", dest="ca_bundle", default=argparse.SUPPRESS)
    run.add_argument("--job-manager", dest="job_manager", default=argparse.SUPPRESS)
    run.set_defaults(command_function=command_run)

    status = commands.add_parser("status", parents=[common], help="show enrollment and state")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(command_function=command_status)

    drain = commands.add_parser("drain", parents=[common], help="stop taking new work")
    mode = drain.add_mutually_exclusive_group()
    mode.add_argument("--exit", action="store_true", help="and exit once no job runs")
    mode.add_argument("--cancel", action="store_true", help="take new work again")
    drain.add_argument("--wait", action="store_true", help="wait until no job runs")
    drain.add_argument("--timeout", type=float, default=0, help="give up waiting after N s")
    drain.set_defaults(command_function=command_drain)
    return parser


_SETTING_FLAGS = (
    "server",
    "work_dir",
    "runner_image",
    "pip_index_url",
    "pip_cert",
    "slots",
    "ca_bundle",
    "job_manager",
    "log_level",
)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = {name: getattr(args, name) for name in _SETTING_FLAGS if hasattr(args, name)}
    if args.command_function is command_enroll:
        overrides.pop("server", None)  # enroll's --server is the new enrollment, not an override
    return overrides


class SecretRedactor(logging.Filter):
    """Blanks bearer secrets in log lines: at DEBUG, websockets logs the handshake's headers,
    ``Authorization: Bearer <host credential>`` included, and debug logs get pasted into bug
    reports."""

    PATTERN = re.compile(r"(?i)\b(bearer|token)(\s+)\S+|\bcp[a-z]_[A-Za-z0-9_-]{8,}")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.PATTERN.sub(_redacted, message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _redacted(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2)}[redacted]" if match.group(1) else "[redacted]"


def _logging_setup(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in ("websockets.client", "agent"):
        logging.getLogger(name).addFilter(SecretRedactor())
    if level.upper() != "DEBUG":
        logging.getLogger("websockets").setLevel(logging.WARNING)


# --- enroll -----------------------------------------------------------------------------------


def command_enroll(args: argparse.Namespace, config: AgentConfig) -> int:
    if config.is_enrolled and not args.force:
        print(
            f"already enrolled as host {config.host_id} at {config.server} ({config.path}); "
            "use --force to enroll again",
            file=sys.stderr,
        )
        return EXIT_FAILED
    server = args.server.rstrip("/")
    if not server.startswith(("http://", "https://")):
        print("--server must be an http:// or https:// URL", file=sys.stderr)
        return EXIT_USAGE
    from agent.specs import specs_collect

    body = {
        "enrollment_token": args.token,
        "specs": specs_collect(config.work_dir),
        "name": args.name[:100],
    }
    try:
        result = _post_json(f"{server}/api/v1/agent/register/", body, config.ca_bundle)
    except _RequestFailed as exc:
        print(f"enrollment failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    config = config_save_enrollment(
        config, server=server, host_id=int(result["host_id"]), credential=str(result["credential"])
    )
    print(f"enrolled as host {config.host_id}; credential saved to {config.path}")
    print("start the agent with: communipute-agent run")
    return 0


class _RequestFailed(Exception):
    pass


def _post_json(url: str, body: Any, ca_bundle: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked: http or https)
        url,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"communipute-agent/{__version__} ({platform.system()})",
        },
        method="POST",
    )
    context = (
        ssl.create_default_context(cafile=ca_bundle or None) if url.startswith("https") else None
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
            result = json.load(response)
    except urllib.error.HTTPError as exc:
        raise _RequestFailed(_error_text(exc)) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _RequestFailed(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
    if not isinstance(result, dict) or "host_id" not in result or "credential" not in result:
        raise _RequestFailed("the server's answer is not an enrollment")
    return result


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        error = json.load(exc)["error"]
        return f"{error['message']} ({error['code']}, HTTP {exc.code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code} {exc.reason}"


# --- run --------------------------------------------------------------------------------------


def command_run(args: argparse.Namespace, config: AgentConfig) -> int:
    if not config.is_enrolled:
        print(
            f"not enrolled ({config.path}): run `communipute-agent enroll` first", file=sys.stderr
        )
        return EXIT_FAILED
    mode = config.path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("%s is readable by others; it holds a secret: chmod 600 it", config.path)
    from agent.client import AgentClient
    from agent.job_manager_protocol import job_manager_build

    config = config_install_id_ensure(config)  # an enrollment older than install ids
    try:
        job_manager = job_manager_build(config)
    except ConfigError as exc:
        print(f"communipute-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logger.info("communipute-agent %s starting for host %s", __version__, config.host_id)
    return asyncio.run(AgentClient(config, job_manager=job_manager).run())


# --- status -----------------------------------------------------------------------------------


def command_status(args: argparse.Namespace, config: AgentConfig) -> int:
    state = state_read(config.state_path)
    running = agent_is_running(state)
    report = {
        "config": str(config.path),
        "enrolled": config.is_enrolled,
        "server": config.server,
        "host_id": config.host_id,
        "agent_running": running,
        "state": state if running else None,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if running else EXIT_FAILED
    if not config.is_enrolled:
        print(f"not enrolled (config {config.path})")
        return EXIT_FAILED
    print(f"host {config.host_id} at {config.server} (config {config.path})")
    if not running or state is None:
        print("agent: not running")
        return EXIT_FAILED
    print(
        f"agent: running (pid {state['pid']}), "
        + ("connected" if state["connected"] else f"disconnected: {state['last_error']}")
    )
    availability = (
        "available" if state["is_available"] else f"unavailable ({state['unavailable_reason']})"
    )
    draining = state["drain"] or ("by the owner" if state["is_server_draining"] else "no")
    print(f"availability: {availability}; draining: {draining}")
    jobs, unacknowledged = len(state["running_jobs"]), state["unacknowledged"]
    slots = f" of {state['slots']} slots" if state.get("slots") else ""
    print(f"running jobs: {jobs}{slots}; unacknowledged messages: {unacknowledged}")
    readiness = state.get("readiness")
    if isinstance(readiness, dict):
        verdict = "yes" if readiness.get("ready") else f"no ({readiness.get('reason', '')})"
        print(f"ready: {verdict}; isolation: {readiness.get('isolation', '?')}")
    return 0


# --- drain ------------------------------------------------------------------------------------


def command_drain(args: argparse.Namespace, config: AgentConfig) -> int:
    mode: DrainMode | None = None if args.cancel else "exit" if args.exit else "drain"
    drain_request(config.control_path, mode)
    if mode is None:
        print("drain withdrawn: the agent takes new work again")
        return 0
    if not agent_is_running(state_read(config.state_path)):
        if mode == "exit":
            drain_request(config.control_path, None)
            print("no agent is running")
        else:
            print("no agent is running; it will take no new work when it starts")
        return 0
    print("the agent takes no new work" + ("; it exits once no job runs" if args.exit else ""))
    if args.wait:
        return _drain_wait(config, args.timeout)
    return 0


def _drain_wait(config: AgentConfig, timeout: float) -> int:
    deadline = time.monotonic() + timeout if timeout else None
    while deadline is None or time.monotonic() < deadline:
        state = state_read(config.state_path)
        if not agent_is_running(state) or (state and not state["running_jobs"]):
            print("drained: no job runs")
            return 0
        time.sleep(1)
    print("timed out waiting for running jobs", file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
