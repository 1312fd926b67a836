"""``python -m emulators.ovms``: the OVMS command line."""
from emulators.ovms.signals import block_stop_signals

block_stop_signals()  # before the imports below start any thread (OpenVINO's does)

from emulators.ovms.server import main  # noqa: E402

if __name__ == "__main__":
    main()
