"""A local Azure Functions host for HTTP-triggered Python functions (v1 programming model).

Azure Functions Core Tools cannot be installed everywhere; this serves the same URLs as
``func start``: every top-level folder whose function.json has an ``httpTrigger`` binding, at
``http://localhost:<port>/<routePrefix>/<route or FunctionName>``.

Run it with ``python -m emulators.functions_host [--port 7071] [--root DIR] [--mode MODE]``.

Two invocation modes behind one HTTP front (server.py, front.py):

* ``worker`` (worker.py): Microsoft's Python worker, PyPI ``azure-functions-runtime-v1``, loads and
  invokes the functions from the same protobuf messages the real host sends it. Python >= 3.13;
  the default where it can run.
* ``in-house`` (inhouse.py): the host's own binding code with the real ``azure.functions``
  objects, for Python < 3.13. tests/test_host_modes.py holds it to the worker, answer for answer.

Behaviour, and where it deliberately differs from Core Tools:

* ``local.settings.json`` ``Values`` go into the environment with Core Tools' rule: a variable
  already set (non-empty) in the real environment wins. ``Host.LocalHttpPort``, ``Host.CORS`` and
  ``Host.CORSCredentials`` are honoured; ``--port``/``--cors`` override them.
* ``authLevel`` ``function``/``admin``: like Core Tools, keys are not checked locally (any ``code``
  query parameter or ``x-functions-key`` header is accepted, and so is none), and the startup log
  says so. ``--enforce-keys`` (``FUNCTIONS_HOST_ENFORCE_KEYS=1``) checks them as Azure does: the
  ``x-functions-key`` header or ``?code=`` must equal the key in ``FUNCTIONS_HOST_FUNCTION_KEY``,
  else a key made for the run and printed at startup (401 otherwise; anonymous routes stay open).
  ``--require-keys`` only demands a non-empty key, to catch clients that forget it. The check is
  the front's, so both invocation modes behave the same.
* A function that raises (or returns what its HTTP binding cannot send): 500, empty body, as the
  real host maps a failed invocation; the stack trace goes to the log only.
* What the host itself refuses gets the app's error shape ``{"error": {"code", "message"}}``
  where the real host answers an empty or plain-text page: an unknown route (404), a method the
  function does not list (405 with ``Allow``; the real host answers 404), malformed requests and
  control characters or dot segments in the path (400), Kestrel's limits and timeouts (408, 413,
  414, 431; see front.py), forms of more than 1024 fields (413, before the app parses them).
* Request bodies: Kestrel's 100 MB limit (413 ``request_entity_too_large``), or the app's own
  limit when it declares a smaller one (this app: ``MAX_BODY_BYTES`` via ``shared.config``,
  20 MiB by default; answered as the app answers it, 413 ``payload_too_large``). A declared
  ``Content-Length`` over it is refused before any of the body is read, a chunked body as soon as
  it passes it. The real host reads up to its 100 MB (``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``) and
  hands the body to the app, which refuses it only then.
* A client that closes the connection (or resets it) before its body is complete: the request
  is dropped without an answer, as Kestrel does, with one log line (never a traceback or a 500).
* Request bodies are handed over as sent: ``Content-Encoding`` is not decoded (Kestrel does not).
* The log names each request's path, never its query string (image data may travel in it).
* It binds 127.0.0.1 by default (``--host 0.0.0.0`` to listen everywhere as ``func start`` does).
"""
