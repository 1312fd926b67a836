"""Probe run by tests/test_ovms_lifecycle.py in a fresh interpreter: the emulator loads a model as it
does when serving (argv[1]: an OVMS base path, input "x" of shape (1, 4), f32), then three threads
take numpy views of OpenVINO tensors at the same moment, as concurrent first requests do inside
``ModelVersion.infer`` (argv[2] = ``views``), or make three inferences at once (``infer``, the whole
path, where the threads meet less exactly). Prints "ok"; a deadlock leaves the process hanging (the
parent's timeout catches it). Without the emulator's warm-up at load, three raw first views hung in
6 of 20 fresh interpreters on an AMD EPYC (2 cores), and gdb showed the two threads in ``Tensor.data``:
one at ``__cxa_guard_acquire`` holding the GIL, one inside the static's initialiser waiting for the
GIL (and the main thread waiting for the GIL too, so no signal handler could run)."""
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402

from emulators.ovms.config import parse_args  # noqa: E402
from emulators.ovms.models import ModelManager, RequestTensor  # noqa: E402

manager = ModelManager(parse_args(["--model_name", "m", "--model_path", sys.argv[1], "--nireq", "3"]).models)
manager.start_loading()
manager.config_loaded.wait()
version = manager.get("m").get_version(0)
spec = version.inputs[0]
x = np.ones((1, 4), np.float32)
THREADS = 3
together = threading.Barrier(THREADS)
answers = []


def first_inference() -> None:
    tensor = RequestTensor(spec.name, [1, 4], spec.dtype, "FP32", lambda: x)
    together.wait()
    answers.append(version.infer([tensor]))


def first_view(request: ov.InferRequest) -> None:
    together.wait()
    request.get_input_tensor(0).data[...] = x  # what infer does with each input
    answers.append(request)


if sys.argv[2] == "views":  # input tensors of infer requests of our own, never viewed yet
    compiled = ov.Core().compile_model(str(Path(sys.argv[1]) / "1" / "model.xml"), "CPU")
    threads = [threading.Thread(target=first_view, args=(compiled.create_infer_request(),))
               for _ in range(THREADS)]
else:
    threads = [threading.Thread(target=first_inference) for _ in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok" if len(answers) == THREADS else f"only {len(answers)} answers")
