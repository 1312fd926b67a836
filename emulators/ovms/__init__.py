"""A local stand-in for OpenVINO Model Server (OVMS) built on the ``openvino`` runtime and ``grpcio``.

Run it as ``python -m emulators.ovms --model_name m --model_path /models/m --port 9000`` or
``python -m emulators.ovms --config_path config.json --port 9000``. One gRPC port serves both the
KServe v2 API and the TensorFlow-Serving API, with OVMS's status codes and messages.
Tests and scripts start it through :mod:`emulators.ovms.launcher`.

Test hooks (environment): ``OVMS_EMULATOR_LOAD_DELAY=<s>`` sleeps before loading each model version
(to observe the LOADING state), ``OVMS_EMULATOR_INFER_DELAY=<s>`` sleeps inside every inference
(to have requests in flight), ``OVMS_EMULATOR_DRAIN_SECONDS`` (default 30) bounds the SIGTERM drain.
"""
