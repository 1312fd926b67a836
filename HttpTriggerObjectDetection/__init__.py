"""HttpTriggerObjectDetection: SSD-style object detection. The pipeline lives in shared.tasks.detection."""
import azure.functions as func

from shared.http import CVAT, ORIGINAL, handle


def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Answer one request (all methods reach here so wrong ones get a JSON 405)."""
    return handle(req, "detection", context)


def compat(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """/api/objectdetection: the original OVaaS contract (the web frontend's demo), same pipeline."""
    return handle(req, "detection", context, ORIGINAL)


def cvat(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """/api/cvat/detector: CVAT's serverless detector contract (JSON in, bare list of shapes out)."""
    return handle(req, "detection", context, CVAT)
