"""The gRPC server: both APIs on one port, background model loading, graceful drain on SIGTERM/SIGINT."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from concurrent import futures
from typing import Optional, Sequence

import grpc
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from .config import ConfigError, ServerConfig, parse_args
from .kserve import KServeServicer
from .kserve import add_to_server as add_kserve_to_server
from .models import ModelManager
from .signals import STOP_SIGNALS, block_stop_signals
from .tfs import ModelStatusServicer, PredictionServicer

log = logging.getLogger("ovms")

MAX_MESSAGE = 1024 * 1024 * 1024
DRAIN_SECONDS = float(os.environ.get("OVMS_EMULATOR_DRAIN_SECONDS", "30"))
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, as OVMS does
]


def setup_logging(level: str) -> None:
    lvl = {"TRACE": logging.DEBUG}.get(level, getattr(logging, level, logging.INFO))
    logging.basicConfig(stream=sys.stderr, level=lvl,
                        format="[%(asctime)s][%(process)d][%(name)s][%(levelname)s] %(message)s")
    # azure-core logs every HTTP request and header at INFO: keep it to warnings unless tracing.
    if lvl > logging.DEBUG:
        logging.getLogger("azure").setLevel(logging.WARNING)


def keep_large_buffers() -> None:
    """Serve the megabyte tensors of each request from the heap and reuse them: glibc otherwise maps
    and unmaps them per call, and page-faulting them in again cost more than half of a 2 MB call
    (8.9 -> 3.8 ms measured). Same tuning as the app's (shared/allocator.py); glibc only."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: glibc's 64-bit maximum
    mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD


def build_server(cfg: ServerConfig, manager: ModelManager) -> grpc.Server:
    """A grpc.Server with the KServe and TFS servicers, bound to ``cfg.grpc_bind_address`` and
    ``cfg.port`` (raises on a busy port or an address that is not this machine's)."""
    workers = cfg.grpc_workers or max(32, 4 * (os.cpu_count() or 2))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
                         options=GRPC_OPTIONS)
    add_kserve_to_server(KServeServicer(manager), server)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelStatusServicer(manager), server)
    try:
        bound = server.add_insecure_port(cfg.grpc_address)
    except RuntimeError as exc:
        raise OSError(f"Failed to start gRPC server on port {cfg.port} ({cfg.grpc_address}): {exc}") from exc
    if not bound:
        raise OSError(f"Failed to start gRPC server on port {cfg.port} ({cfg.grpc_address}; port busy?)")
    log.debug("gRPC workers: %d", workers)
    return server


def serve(argv: Optional[Sequence[str]] = None) -> int:
    """Run until SIGTERM/SIGINT, then drain in-flight requests; returns the exit code.

    The stop signals are never handled by a Python handler: they stay blocked in every thread and the
    main thread takes them with ``sigwait``. (A handler runs between two bytecodes of the main thread,
    so one that sets a ``threading.Event`` can wait forever for the lock that thread holds inside
    ``Event.wait``.)
    """
    try:
        cfg = parse_args(argv)
    except ConfigError as exc:
        logging.basicConfig(stream=sys.stderr)
        log.error("%s", exc)
        return 1
    setup_logging(cfg.log_level)
    keep_large_buffers()
    manager = ModelManager(cfg.models)
    try:
        server = build_server(cfg, manager)
    except OSError as exc:
        log.error("%s", exc)
        return 1
    block_stop_signals()  # a no-op after __main__, which blocked them before any thread existed
    server.start()
    log.info("Started gRPC server on %s (KServe v2 + TensorFlow Serving APIs); models: %s", cfg.grpc_address,
             ", ".join(m.name for m in cfg.models) or "none")
    if cfg.rest_port:
        log.warning("--rest_port %d accepted but no REST API is served by this emulator", cfg.rest_port)
    manager.start_loading()
    signum = signal.sigwait(STOP_SIGNALS)
    # A second signal while draining ends the process at once (the default action), as a second Ctrl+C should.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    stopped = server.stop(grace=DRAIN_SECONDS)  # new calls are refused from here on
    log.info("Shutting down on %s: draining in-flight requests (up to %.0f s)", signal.Signals(signum).name,
             DRAIN_SECONDS)
    stopped.wait()
    log.info("Server stopped")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> None:
    code = serve(argv)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown of OpenVINO objects and a possibly busy loader thread
