"""HttpTriggerColorization: colorization of black-and-white photos (colorization-v2). The pipeline lives in shared.tasks.colorization."""
import azure.functions as func

from shared.http import ORIGINAL, handle


def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Answer one request (all methods reach here so wrong ones get a JSON 405)."""
    return handle(req, "colorization", context)


def compat(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """/api/colorization: the original OVaaS contract (the web frontend's demo), same pipeline."""
    return handle(req, "colorization", context, ORIGINAL)
