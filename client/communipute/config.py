"""Where the SDK finds its server and token.

In order: the arguments given to ``Client``; the environment (``COMMUNIPUTE_URL``,
``COMMUNIPUTE_TOKEN``); the config file that ``communipute login`` writes,
``~/.config/communipute/client.json`` (mode 0600; ``COMMUNIPUTE_CONFIG`` names another path).
The stored token is used only with the stored URL: with another server named (an argument or
``COMMUNIPUTE_URL``) it stays unsent, so a token never reaches a server it wasn't made for.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from communipute.errors import ConfigError

URL_ENV = "COMMUNIPUTE_URL"
TOKEN_ENV = "COMMUNIPUTE_TOKEN"  # noqa: S105 (a variable name)
CONFIG_ENV = "COMMUNIPUTE_CONFIG"


def config_path() -> Path:
    """The config file: ``$COMMUNIPUTE_CONFIG``, else ``~/.config/communipute/client.json``."""
    given = os.environ.get(CONFIG_ENV)
    if given:
        return Path(given).expanduser()
    return Path.home() / ".config" / "communipute" / "client.json"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str
    username: str = ""


def stored(path: Path | None = None) -> dict[str, str]:
    """What the config file holds (``{}`` when there is none)."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path} is not JSON; run `communipute login` again") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; run `communipute login` again")
    return {str(key): str(value) for key, value in data.items() if value is not None}


def settings_resolve(
    url: str | None = None, token: str | None = None, *, path: Path | None = None
) -> Settings:
    """The server URL and token from the arguments, the environment or the config file."""
    found = stored(path) if not (url and token) else {}
    url = (url or os.environ.get(URL_ENV) or found.get("url") or "").rstrip("/")
    token = token or os.environ.get(TOKEN_ENV)
    if not token and found.get("token") and found.get("url", "").rstrip("/") == url:
        token = found["token"]
    where = path or config_path()
    if not url:
        raise ConfigError(
            f"no server: pass url=, set {URL_ENV}, or run `communipute login` (writes {where})"
        )
    if not token:
        raise ConfigError(
            f"no API token for {url}: pass token=, set {TOKEN_ENV}, or run `communipute login "
            f"--url {url}` (writes {where})"
        )
    return Settings(url=url, token=token, username=found.get("username", ""))


def store(values: dict[str, str], path: Path | None = None) -> Path:
    """Write the config file atomically, readable by its owner only (0600, folder 0700)."""
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".client-", suffix=".json", dir=path.parent)
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(values, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
