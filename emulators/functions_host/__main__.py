"""``python -m emulators.functions_host [--port 7071] [--root DIR]``: serve an app's HTTP functions."""
from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import secrets
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional, Tuple

from aiohttp import web

from emulators.functions_host.discovery import (DEFAULT_PORT, AppConfigError, apply_settings,
                                                read_local_settings)
from emulators.functions_host.front import FrontLimits
from emulators.functions_host.invocation import MODES

log = logging.getLogger("functions_host")

#: the key --enforce-keys checks against, when set (else one is made and printed)
KEY_VARIABLE = "FUNCTIONS_HOST_FUNCTION_KEY"


def function_key(enforce: bool) -> Tuple[Optional[str], str]:
    """The key to enforce (None when not enforcing) and how to say where it came from."""
    if not enforce:
        return None, ""
    given = os.environ.get(KEY_VARIABLE, "")
    if given:
        return given, f"Function key: the value of {KEY_VARIABLE}."
    made = secrets.token_urlsafe(32)
    return made, f"Function key (made for this run; set {KEY_VARIABLE} to choose one): {made}"


class _HostFormatter(logging.Formatter):
    """``[2024-01-01T00:00:00.000Z] message`` like the Functions host console."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
        return f"[{ts[:-3]}Z] {super().format(record)}"


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_HostFormatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # the worker library's own per-invocation lines ("Function name: X, Function Type: sync")
    logging.getLogger("azure.functions").setLevel(logging.DEBUG if verbose else logging.WARNING)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m emulators.functions_host",
                                description="Local Azure Functions host for HTTP-triggered Python "
                                            "(v1 model) functions, a stand-in for `func start`.")
    p.add_argument("--root", default=".", help="the function app folder (default: current folder)")
    p.add_argument("-p", "--port", type=int, default=None,
                   help=f"port (default: Host.LocalHttpPort of local.settings.json, else {DEFAULT_PORT})")
    p.add_argument("--host", default=os.environ.get("FUNCTIONS_HOST_BIND", "127.0.0.1"),
                   help="address to bind (default 127.0.0.1; `func start` binds every interface)")
    p.add_argument("--cors", default=None,
                   help="comma-separated CORS origins (default: Host.CORS of local.settings.json)")
    p.add_argument("--cors-credentials", action="store_true", default=None,
                   help="allow credentialed cross-origin requests (Host.CORSCredentials)")
    p.add_argument("--require-keys", action="store_true",
                   default=os.environ.get("FUNCTIONS_HOST_REQUIRE_KEYS", "").lower() in ("1", "true"),
                   help="reject function/admin-level calls without ?code= or x-functions-key "
                        "(Core Tools does not check keys locally; neither does this host by default)")
    p.add_argument("--enforce-keys", action="store_true",
                   default=os.environ.get("FUNCTIONS_HOST_ENFORCE_KEYS", "").lower() in ("1", "true"),
                   help="check function/admin-level calls against one key, as Azure does: the "
                        f"{KEY_VARIABLE} environment variable, else a key made for this run and "
                        "printed at startup (x-functions-key header or ?code=; 401 otherwise)")
    p.add_argument("--mode", choices=("auto", *MODES),
                   default=os.environ.get("FUNCTIONS_HOST_MODE", "auto") or "auto",
                   help="how functions are loaded and invoked: 'worker' = Microsoft's Python worker "
                        "(azure-functions-runtime-v1, Python 3.13+), 'in-house' = this host's own "
                        "binding code; 'auto' (default) = worker where it can run")
    p.add_argument("--headers-timeout", type=float, default=None,
                   help="seconds to receive a request's headers (default 30, Kestrel's)")
    p.add_argument("--keepalive-timeout", type=float, default=None,
                   help="seconds an idle kept-alive connection stays open (default 130, Kestrel's)")
    p.add_argument("--min-body-rate", type=float, default=None,
                   help="minimum request body rate in bytes/s (default 240, Kestrel's; 0 = none)")
    p.add_argument("--body-grace", type=float, default=None,
                   help="seconds before the body rate is enforced (default 5)")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def choose_invoker(requested: str, root: Path):
    """The invoker for ``--mode`` (raises ValueError when 'worker' cannot run here)."""
    from emulators.functions_host import worker  # noqa: PLC0415 - light; the library loads later

    reason = worker.unavailable_reason()
    if requested == "worker" or (requested == "auto" and reason is None):
        if reason:
            raise ValueError(f"--mode worker: {reason}")
        return worker.WorkerInvoker(root)
    if requested == "auto":
        print(f"Worker-backed mode unavailable: {reason}. Using the in-house invocation path.",
              flush=True)
    from emulators.functions_host.inhouse import InHouseInvoker  # noqa: PLC0415

    return InHouseInvoker(root)


async def _serve(host, bind: str, port: int, key_origin: str = "") -> int:
    try:
        await host.start()
    except (AppConfigError, RuntimeError) as exc:
        print(str(exc), file=sys.stderr)
        await host.close()
        return 2
    runner = web.ServerRunner(host.make_server(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, bind, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        await host.close()
        if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)) or \
                "address already in use" in str(exc).lower():
            print(f"Port {port} is unavailable. Close the process using that port, "
                  "or specify another port using --port [-p].", file=sys.stderr)
            return 2
        print(f"Cannot listen on {bind}:{port}: {exc}", file=sys.stderr)
        return 2
    print(host.banner(), flush=True)
    print(host.key_notice(), flush=True)
    if key_origin:
        print(key_origin, flush=True)
    print(f"Host started: listening on http://{bind}:{port} (Ctrl+C to stop)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: KeyboardInterrupt ends asyncio.run
            pass
    try:
        await stop.wait()
    finally:
        print("Application is shutting down...", flush=True)
        await runner.cleanup()
        await host.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run the host until SIGINT/SIGTERM; returns the exit code."""
    args = parse_args(argv)
    _setup_logging(args.verbose)
    root = Path(args.root).resolve()
    if not root.is_dir():
        print(f"--root {root} is not a folder", file=sys.stderr)
        return 2
    try:
        settings = read_local_settings(root)
    except AppConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    port = args.port or settings.port or DEFAULT_PORT
    # Core Tools adds these before applying local settings (same skip rule).
    values = dict(settings.values)
    values.setdefault("AZURE_FUNCTIONS_ENVIRONMENT", "Development")
    values.setdefault("AzureWebJobsScriptRoot", str(root))
    values.setdefault("WEBSITE_HOSTNAME", f"localhost:{port}")
    for warning in apply_settings(values):
        print(warning, flush=True)
    runtime = os.environ.get("FUNCTIONS_WORKER_RUNTIME", "python")
    if runtime.lower() != "python":
        print(f"FUNCTIONS_WORKER_RUNTIME is '{runtime}': this host runs Python functions only",
              file=sys.stderr)
        return 2
    cors = [o.strip() for o in args.cors.split(",") if o.strip()] if args.cors is not None \
        else settings.cors
    creds = settings.cors_credentials if args.cors_credentials is None else args.cors_credentials

    from emulators.functions_host.server import FunctionsHost  # noqa: PLC0415
    try:
        limits = FrontLimits.from_env(headers_timeout=args.headers_timeout,
                                      keepalive_timeout=args.keepalive_timeout,
                                      min_body_rate=args.min_body_rate, body_grace=args.body_grace)
        key, key_origin = function_key(args.enforce_keys)
        invoker = choose_invoker(args.mode, root)
        host = FunctionsHost(root, port, invoker, cors=cors, cors_credentials=creds,
                             require_keys=args.require_keys, limits=limits, function_key=key,
                             invocation_id_header=os.environ.get(
                                 "FUNCTIONS_HOST_INVOCATION_ID_HEADER", ""))
    except (AppConfigError, ValueError, RuntimeError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(host, args.host, port, key_origin))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
