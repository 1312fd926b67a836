"""Handwriting endpoint: end-to-end latency against the unavoidable work, in the same run.

End to end: POST the picture to the local Functions host (keep-alive), which decodes it, splits
lines, calls the local model server over gRPC (the 3.3 MB output comes back each time), decodes
CTC and answers JSON. Unavoidable work: decode the picture, grey + resize + pad each line (the
line boxes found once beforehand, so the splitter is *not* counted as unavoidable), and run the
same model in-process with OpenVINO — what any implementation has to do. Timed interleaved.

Model: handwritten-japanese-recognition-0001 as found by scripts/tooling/modelsearch.py (the
real topology; with placeholder weights when only ../shared/models-synthetic has it).

    .venv/bin/python bench/bench_handwriting.py [--n 8] [--n-multi 2]
"""
from __future__ import annotations

import argparse
import json
import sys

import cv2
import numpy as np

from common import (IMAGES, KeepAliveClient, interleaved_ms, inprocess_model, machine, median, p95,
                    print_table, stack)
from scripts.tooling.modelsearch import find_model, find_side_file, model_xml
from shared.tasks import textlines

MODEL = "handwritten-japanese-recognition-0001"
SERVED = "handwritten-japanese-recognition"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8, help="timed requests for the one-line picture")
    ap.add_argument("--n-multi", type=int, default=2, help="timed requests for the 8-line photo")
    args = ap.parse_args()
    base, xml, charlist = find_model(MODEL), model_xml(MODEL), find_side_file(MODEL, "kondate_nakayosi.txt")
    if base is None or xml is None or charlist is None:
        print(f"needs_real_models: {MODEL} and its kondate_nakayosi.txt", file=sys.stderr)
        return 2
    print(machine())
    print(f"model: {xml}")
    compiled = inprocess_model(xml)
    request = compiled.create_infer_request()
    h_in, w_in = (int(d) for d in compiled.input(0).get_shape()[2:])

    cases = {"1 line (handwritten_japanese_test.png)": (IMAGES / "handwritten_japanese_test.png", args.n),
             "8 lines (japanese_handwriting_multiline.jpeg)": (IMAGES / "japanese_handwriting_multiline.jpeg",
                                                                args.n_multi)}
    rows = []
    with stack({SERVED: base}, "HANDWRITTEN", SERVED,
               extra_env={"HANDWRITTEN_CHARLIST_PATH": str(charlist)}) as (_, host):
        client = KeepAliveClient(host.port)
        for label, (path, n) in cases.items():
            body = path.read_bytes()
            ctype = "image/png" if path.suffix == ".png" else "image/jpeg"
            pixels = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            boxes = textlines.find_lines(textlines.dark_on_light(pixels)[0]).lines

            def unavoidable() -> None:
                img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
                gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                for b in boxes:
                    line, _ = textlines.line_input(gray[b.y0:b.y1, b.x0:b.x1], h_in, w_in)
                    request.infer({0: line[None, None]})
                    request.get_output_tensor(0).data.argmax(axis=2)

            def end_to_end() -> None:
                status, answer = client.post("/api/HttpTriggerHandwritten", body, ctype)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {answer[:200]!r}")
                data = json.loads(answer)
                if len(data.get("lines", [None])) != len(boxes):
                    raise RuntimeError("the endpoint found a different number of lines")

            times = interleaved_ms({"unavoidable": unavoidable, "e2e": end_to_end}, n=n, warmup=1)
            u, e = median(times["unavoidable"]), median(times["e2e"])
            rows.append([label, len(boxes), n, u, e, p95(times["e2e"]), e / u])
        client.close()
    print_table("handwriting: end to end vs unavoidable work (ms, median of interleaved runs)", rows,
                ["picture", "lines", "n", "unavoidable", "e2e", "e2e p95", "ratio"])
    print("\ngoal: ratio <= 1.2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
