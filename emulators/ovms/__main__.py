"""``python -m emulators.ovms``: the OVMS command line."""
from emulators.ovms.server import main

if __name__ == "__main__":
    main()
