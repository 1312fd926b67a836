"""HttpTriggerObjectDetection: SSD-style object detection. The pipeline lives in shared.tasks.detection."""
import azure.functions as func

from shared.http import handle


def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Answer one request (all methods reach here so wrong ones get a JSON 405)."""
    return handle(req, "detection", context)
