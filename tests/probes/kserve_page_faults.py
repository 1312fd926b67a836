"""Probe run by tests/test_allocator.py and bench/bench_allocator.py in a fresh interpreter: page
faults per KServe call of a 2 MB tensor through a gRPC server and client in this process. argv[1]:
``tuned`` (shared.allocator's tuning), ``plain`` (glibc as it comes: its dynamic mmap threshold
adapts in ways that differ between machines and glibc versions) or ``fresh`` (the control: glibc's
mmap and trim thresholds pinned at their 128 KiB defaults, which also stops the threshold from
adapting, so every large block is mapped afresh and given back on free). Prints one JSON line."""
import json, resource, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from shared import allocator
mode = sys.argv[1]
tuned = allocator.keep_large_buffers() if mode == "tuned" else False
if mode == "fresh":  # mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD, 128 KiB); 1 = accepted
    import ctypes
    _mallopt = ctypes.CDLL("libc.so.6").mallopt
    assert _mallopt(allocator.M_MMAP_THRESHOLD, 128 << 10) == 1 and _mallopt(allocator.M_TRIM_THRESHOLD, 128 << 10) == 1
from concurrent import futures
import grpc, numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc
class Svc(service_pb2_grpc.GRPCInferenceServiceServicer):
    def ModelInfer(self, request, context):  # what a model server does with the tensor: read it, answer one
        x = np.frombuffer(request.raw_input_contents[0], np.float32).copy()
        resp = service_pb2.ModelInferResponse(model_name="m")
        resp.outputs.add(name="y", datatype="FP32", shape=[x.size // 4])
        resp.raw_output_contents.append(x[: x.size // 4].tobytes())
        return resp
srv = grpc.server(futures.ThreadPoolExecutor(8), options=[("grpc.max_receive_message_length", 64 << 20)])
service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Svc(), srv)
port = srv.add_insecure_port("127.0.0.1:0"); srv.start()
stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]))
blob = np.random.default_rng(0).random((1, 3, 320, 544), dtype=np.float32)
def call():  # what the app's adapter does: a fresh request with the tensor's bytes
    req = service_pb2.ModelInferRequest(model_name="m"); t = req.inputs.add(); t.name = "x"; t.datatype = "FP32"; t.shape.extend(blob.shape)
    req.raw_input_contents.append(blob.tobytes())
    r = stub.ModelInfer(req)
    return np.frombuffer(r.raw_output_contents[0], np.float32)
for _ in range(10): call()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50): call()
print(json.dumps({"mode": mode, "tuned": tuned, "faults_per_call": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 50}))
srv.stop(0)
