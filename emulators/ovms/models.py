"""Served models: versions, background loading, request validation and inference.

Protocol-neutral: the KServe and TFS front ends turn their requests into :class:`RequestTensor`
objects and call :meth:`ModelVersion.infer`; errors are :class:`~emulators.ovms.errors.OvmsError`.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import grpc
import numpy as np
import openvino as ov

from . import errors as E
from .config import ModelConfig
from .dtypes import DType, from_ov
from .storage import StorageError, find_model_file, open_repository

log = logging.getLogger("ovms.models")

# Test hooks (fault/lifecycle tests): seconds to sleep before loading each version, and inside each
# inference while holding an infer request. Never set them in production-like runs.
LOAD_DELAY = float(os.environ.get("OVMS_EMULATOR_LOAD_DELAY", "0") or 0)
INFER_DELAY = float(os.environ.get("OVMS_EMULATOR_INFER_DELAY", "0") or 0)

# tensorflow.serving ModelVersionStatus.State values
START, LOADING, AVAILABLE, UNLOADING, END = 10, 20, 30, 40, 50
STATE_NAMES = {START: "START", LOADING: "LOADING", AVAILABLE: "AVAILABLE", UNLOADING: "UNLOADING", END: "END"}

DEVICE_GROUPS = ("HETERO", "MULTI", "AUTO", "BATCH")


class LoadError(RuntimeError):
    """A model version could not be loaded."""


@dataclass
class TensorSpec:
    name: str
    dtype: DType
    shape: List[int]          # -1 = dynamic dimension

    def shape_str(self) -> str:
        return "(" + ",".join(str(d) for d in self.shape) + ")"


@dataclass
class RequestTensor:
    """One input of a request, independent of the protocol.

    ``dtype`` is None when the request's type is unknown/unsupported; ``dtype_label`` is how OVMS
    prints the request's type; ``payload(spec)`` returns the data as an ndarray of the request's
    shape or raises OvmsError (content size / value count).
    """

    name: str
    shape: List[int]
    dtype: Optional[DType]
    dtype_label: str
    payload: Callable[[], np.ndarray]


@dataclass
class OutputTensor:
    name: str
    dtype: DType
    shape: Tuple[int, ...]
    data: bytes


def shape_str(shape: Sequence[int]) -> str:
    return "(" + ",".join(str(int(d)) for d in shape) + ")"


def resolve_device(target: str, available: Sequence[str]) -> str:
    """The OpenVINO device string for an OVMS ``target_device``; raises LoadError naming a missing device.

    ``FPGA`` is an alias of ``HETERO:FPGA,CPU``.
    """
    target = (target or "CPU").strip()
    if target.upper() == "FPGA":
        target = "HETERO:FPGA,CPU"
    head, sep, rest = target.partition(":")
    if sep and head.upper() in DEVICE_GROUPS:
        names = [d.strip() for d in rest.split(",") if d.strip()]
    elif target.upper() == "AUTO":
        names = []
    else:
        names = [target]
    for name in names:
        base = name.split("(")[0]
        family = base.split(".")[0].upper()
        ok = base in available or any(a.upper() == family or a.upper().startswith(family + ".") for a in available)
        if not ok:
            raise LoadError(f"Cannot load network into target device - target device {name} (from "
                            f"target_device '{target}') is not available on this machine; available devices: "
                            f"{', '.join(available) or 'none'}")
    return target


def _parse_shape_text(text: str) -> List[int]:
    text = text.strip().strip("()[]")
    dims = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        dims.append(-1 if part in ("-1", "?") else int(part))
    return dims


def _apply_shape_config(model: ov.Model, cfg: ModelConfig) -> None:
    """Reshape per OVMS ``shape``/``batch_size`` (``auto`` makes the dimensions dynamic)."""
    new: Dict[str, ov.PartialShape] = {}
    inputs = model.inputs
    if cfg.shape not in (None, ""):
        if isinstance(cfg.shape, dict):
            items = cfg.shape.items()
        else:
            if len(inputs) != 1:
                raise LoadError("Anonymous fixed shape is invalid for models with multiple inputs")
            items = [(inputs[0].get_any_name(), cfg.shape)]
        for name, value in items:
            port = next((p for p in inputs if name in p.get_names()), None)
            if port is None:
                raise LoadError(f"Shape from config not found in network: {name}")
            if value == "auto":
                new[name] = ov.PartialShape.dynamic(port.get_partial_shape().rank)
            elif isinstance(value, list):
                new[name] = ov.PartialShape([int(d) for d in value])
            else:
                new[name] = ov.PartialShape(_parse_shape_text(str(value)))
    elif cfg.batch_size not in (None, "", 0):
        for port in inputs:
            ps = port.get_partial_shape()
            dims = [ps[i] for i in range(ps.rank.get_length())]
            dims[0] = ov.Dimension() if cfg.batch_size == "auto" else ov.Dimension(int(cfg.batch_size))
            new[port.get_any_name()] = ov.PartialShape(dims)
    if new:
        try:
            model.reshape(new)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            raise LoadError(f"Model could not be reshaped with requested shape: {exc}") from exc


def _spec(port) -> TensorSpec:
    ps = port.get_partial_shape()
    dims = [d.get_length() if d.is_static else -1 for d in ps] if ps.rank.is_static else [-1]
    try:
        dtype = from_ov(port.get_element_type())
    except KeyError as exc:
        raise LoadError(f"Unsupported precision {port.get_element_type()} of {port.get_any_name()}") from exc
    return TensorSpec(port.get_any_name(), dtype, dims)


def _touch_numpy_views(req: ov.InferRequest) -> None:
    """Take a numpy view of every tensor of ``req`` once, here on the loader thread.

    The first numpy view in a process initialises pybind11's numpy API inside a C++ function-local
    static of OpenVINO's bindings, and that initialisation releases the GIL while the static's guard
    is held. Two gRPC threads taking their first ``.data`` at once then deadlock (one holds the
    guard and waits for the GIL, the other holds the GIL and waits for the guard; pybind11 #4877),
    and the whole server hangs, SIGTERM included. Doing it before the version turns AVAILABLE means
    no request can ever be first.
    """
    for tensor in (*req.input_tensors, *req.output_tensors):
        tensor.data  # noqa: B018 - the view is the point


def inference_precision(compiled: ov.CompiledModel) -> str:
    """The precision a compiled model computes in ("f32", "bf16", "f16"); "" when the device does
    not report one. On CPUs with AMX, OpenVINO's default is bf16 unless plugin_config pins it."""
    try:
        return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    except Exception:  # noqa: BLE001 - devices without the property (e.g. some HETERO setups)
        return ""


class ModelVersion:
    """One version of a model: its state, compiled model and pool of infer requests."""

    def __init__(self, model_name: str, version: int) -> None:
        self.model_name = model_name
        self.version = version
        self.state = START
        self.error: Optional[str] = None
        self.inputs: List[TensorSpec] = []
        self.outputs: List[TensorSpec] = []
        self.nireq = 0
        self.precision = ""  # inference precision the device compiled for ("f32", "bf16", ...)
        self._compiled: Optional[ov.CompiledModel] = None
        self._idle: "queue.SimpleQueue[ov.InferRequest]" = queue.SimpleQueue()
        self._in_index: Dict[str, int] = {}
        self._out_index: Dict[str, int] = {}

    @property
    def available(self) -> bool:
        return self.state == AVAILABLE

    def load(self, core: ov.Core, cfg: ModelConfig, folder) -> None:
        self.state = LOADING
        path = find_model_file(folder)
        device = resolve_device(cfg.target_device, core.available_devices)
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # noqa: BLE001
            raise LoadError(f"Error while loading a network: {path}: {exc}") from exc
        _apply_shape_config(model, cfg)
        plugin = {str(k): (v if not isinstance(v, bool) else ("YES" if v else "NO")) for k, v in
                  cfg.plugin_config.items()}
        try:
            compiled = core.compile_model(model, device, plugin)
        except Exception as exc:  # noqa: BLE001
            raise LoadError(f"Cannot load network into target device {device}: {exc}") from exc
        nireq = cfg.nireq
        if nireq <= 0:
            try:
                nireq = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            except Exception:  # noqa: BLE001
                nireq = 1
        nireq = max(1, nireq)
        self.inputs = [_spec(p) for p in compiled.inputs]
        self.outputs = [_spec(p) for p in compiled.outputs]
        self._in_index = {s.name: i for i, s in enumerate(self.inputs)}
        self._out_index = {}
        for i, port in enumerate(compiled.outputs):
            for n in port.get_names():
                self._out_index.setdefault(n, i)
        for _ in range(nireq):
            req = compiled.create_infer_request()
            _touch_numpy_views(req)
            self._idle.put(req)
        self.nireq = nireq
        self._compiled = compiled
        self.precision = inference_precision(compiled)
        self.state = AVAILABLE
        log.info("Loaded model %s version %d from %s on %s (nireq %d, plugin_config %s, inference precision %s)",
                 self.model_name, self.version, path, device, nireq, plugin or "{} (OpenVINO defaults)",
                 self.precision or "n/a")

    # ------------------------------------------------------------------ inference
    def validate(self, tensors: Sequence[RequestTensor]) -> Dict[str, np.ndarray]:
        """OVMS's request validation, in its order; returns input arrays by name."""
        if len(tensors) == 0 or len(tensors) != len(self.inputs):
            raise E.invalid(E.INVALID_NO_OF_INPUTS, f"Expected: {len(self.inputs)}; Actual: {len(tensors)}")
        by_name = {t.name: t for t in tensors}
        arrays: Dict[str, np.ndarray] = {}
        for spec in sorted(self.inputs, key=lambda s: s.name):
            t = by_name.get(spec.name)
            if t is None:
                raise E.invalid(E.INVALID_MISSING_INPUT, f"Required input: {spec.name}")
            if any(d <= 0 for d in t.shape):
                raise E.invalid(E.INVALID_SHAPE, f"Negative or zero dimension size is not acceptable: "
                                                 f"{shape_str(t.shape)}; input name: {spec.name}")
            if t.dtype is None or t.dtype.ov_name != spec.dtype.ov_name:
                raise E.invalid(E.INVALID_PRECISION, f"Expected: {spec.dtype.ovms}; Actual: {t.dtype_label}; "
                                                     f"input name: {spec.name}")
            if len(t.shape) != len(spec.shape):
                raise E.invalid(E.INVALID_NO_OF_SHAPE_DIMENSIONS, f"Expected: {spec.shape_str()}; Actual: "
                                                                  f"{shape_str(t.shape)}; input name: {spec.name}")
            if spec.shape and spec.shape[0] != -1 and spec.shape[0] != t.shape[0]:
                raise E.invalid(E.INVALID_BATCH_SIZE, f"Expected: {spec.shape[0]}; Actual: {t.shape[0]}; "
                                                      f"input name: {spec.name}")
            if any(e != -1 and e != a for e, a in zip(spec.shape, t.shape)):
                raise E.invalid(E.INVALID_SHAPE, f"Expected: {spec.shape_str()}; Actual: {shape_str(t.shape)}; "
                                                 f"input name: {spec.name}")
            arrays[spec.name] = t.payload()
        return arrays

    def infer(self, tensors: Sequence[RequestTensor], requested: Optional[Sequence[str]] = None) -> List[OutputTensor]:
        """Validate, run one inference on an idle infer request, return the (requested) outputs."""
        arrays = self.validate(tensors)
        if requested:
            for name in requested:
                if name not in self._out_index:
                    raise E.invalid("Invalid output name", f"Output {name} is not an output of the model")
            wanted = [(n, self._out_index[n]) for n in requested]
        else:
            wanted = [(s.name, i) for i, s in enumerate(self.outputs)]
        req = self._idle.get()
        try:
            for name, arr in arrays.items():
                idx = self._in_index[name]
                spec = self.inputs[idx]
                if -1 in spec.shape:
                    req.set_input_tensor(idx, ov.Tensor(np.ascontiguousarray(arr)))
                else:
                    req.get_input_tensor(idx).data[...] = arr
            if INFER_DELAY:
                log.info("Test hook: holding an inference of %s for %.1f s", self.model_name, INFER_DELAY)
                time.sleep(INFER_DELAY)
            try:
                req.infer()
            except Exception as exc:  # noqa: BLE001
                raise E.OvmsError(grpc.StatusCode.INTERNAL, E.INTERNAL_INFERENCE_ERROR, str(exc)) from exc
            out: List[OutputTensor] = []
            for name, idx in wanted:
                tensor = req.get_output_tensor(idx)
                data = tensor.data
                out.append(OutputTensor(name, self.outputs[idx].dtype, tuple(data.shape), data.tobytes()))
            return out
        finally:
            self._idle.put(req)


class ServedModel:
    """A configured model and its versions."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.versions: Dict[int, ModelVersion] = {}
        self.listed = False          # repository listing finished
        self.error: Optional[str] = None
        self.lock = threading.Lock()

    def get_version(self, version: int) -> ModelVersion:
        """The version to use for a request (0 = default = highest available); raises OvmsError."""
        with self.lock:
            versions = dict(self.versions)
        if version == 0:
            ready = [v for v in versions.values() if v.available]
            if ready:
                return max(ready, key=lambda v: v.version)
            if not self.listed or versions:
                raise E.model_version_not_loaded_yet()
            raise E.model_version_missing()
        mv = versions.get(version)
        if mv is None:
            if not self.listed:
                raise E.model_version_not_loaded_yet()
            raise E.model_version_missing()
        if mv.state == END:
            raise E.model_version_retired()
        if not mv.available:
            raise E.model_version_not_loaded_yet()
        return mv

    def status_versions(self, version: int) -> List[ModelVersion]:
        """Versions for GetModelStatus (all when version is 0)."""
        with self.lock:
            versions = dict(self.versions)
        if version == 0:
            if not versions and not self.listed:
                raise E.model_version_not_loaded_yet()
            return [versions[v] for v in sorted(versions)]
        if version not in versions:
            raise E.model_version_missing()
        return [versions[version]]

    def ready_versions(self) -> List[int]:
        with self.lock:
            return sorted(v for v, mv in self.versions.items() if mv.available)


class ModelManager:
    """All configured models; loads them in a background thread after the server starts."""

    def __init__(self, configs: Sequence[ModelConfig], core: Optional[ov.Core] = None) -> None:
        self.models: Dict[str, ServedModel] = {c.name: ServedModel(c) for c in configs}
        self.core = core or ov.Core()
        self.config_loaded = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def get(self, name: str) -> ServedModel:
        m = self.models.get(name)
        if m is None:
            raise E.model_name_missing()
        return m

    def start_loading(self) -> None:
        self._thread = threading.Thread(target=self._load_all, name="ovms-loader", daemon=True)
        self._thread.start()

    def _load_all(self) -> None:
        try:
            for model in self.models.values():
                self._load_model(model)
        finally:
            self.config_loaded.set()

    def _load_model(self, model: ServedModel) -> None:
        cfg = model.cfg
        try:
            repo = open_repository(cfg.base_path)
            selected = cfg.version_policy.select(repo.versions())
            if not selected:
                raise StorageError(f"No version of {cfg.base_path} matches the model_version_policy")
        except Exception as exc:  # noqa: BLE001
            model.error = str(exc)
            model.listed = True
            log.error("Model %s: cannot read base path %s: %s", model.name, cfg.base_path, exc)
            return
        with model.lock:
            for v in selected:
                model.versions[v] = ModelVersion(model.name, v)
        model.listed = True
        for v in sorted(selected, reverse=True):
            mv = model.versions[v]
            try:
                mv.state = LOADING
                if LOAD_DELAY:
                    time.sleep(LOAD_DELAY)
                mv.load(self.core, cfg, repo.local_version_dir(v))
            except Exception as exc:  # noqa: BLE001 - every failure leaves the version LOADING with an error
                mv.state = LOADING
                mv.error = str(exc)
                log.error("Model %s version %d failed to load: %s", model.name, v, exc)
