"""HttpTriggerHumanPose: human pose estimation (human-pose-estimation-0001). The pipeline lives in shared.tasks.pose."""
import azure.functions as func

from shared.http import ORIGINAL, handle


def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Answer one request (all methods reach here so wrong ones get a JSON 405)."""
    return handle(req, "pose", context)


def compat(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """/api/humanpose: the original OVaaS contract (the web frontend's demo), same pipeline."""
    return handle(req, "pose", context, ORIGINAL)
