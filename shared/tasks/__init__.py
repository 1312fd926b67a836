"""Task registry: one module per model (named in ``shared.catalog``), imported lazily on first use
(keeps cold start cheap)."""
from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Dict

from shared import catalog

if TYPE_CHECKING:  # pragma: no cover
    from shared.tasks.base import Task

_instances: Dict[str, "Task"] = {}
_lock = threading.Lock()


def get_task(name: str) -> "Task":
    """The worker's single instance of task ``name`` (created, with its side files, once)."""
    task = _instances.get(name)
    if task is not None:
        return task
    with _lock:
        task = _instances.get(name)
        if task is None:
            module_name, class_name = catalog.by_task(name).task_class.split(":")
            cls = getattr(importlib.import_module(module_name), class_name)
            task = cls()
            _instances[name] = task
    return task
