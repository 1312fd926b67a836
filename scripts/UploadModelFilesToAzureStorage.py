"""Upload model files to Azure Blob storage in the OVMS layout (see scripts/tooling/upload.py).

The original arguments keep working::

    python scripts/UploadModelFilesToAzureStorage.py --model_name human-pose-estimation \
        --xml_file_path m.xml --bin_file_path m.bin [--connection_string ...]

and more: ``--version N`` (default 1), ``--container`` (default ``ovms``), ``--folder DIR``
(whole-folder mode), ``--extra_file F`` (side files, repeatable). Re-running uploads nothing
unchanged (size + MD5 compared with the container).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.tooling.upload import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
