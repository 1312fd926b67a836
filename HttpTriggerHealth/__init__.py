"""HttpTriggerHealth: GET /api/health, the app's liveness and each model's readiness."""
import azure.functions as func

from shared.health import handle


def main(req: func.HttpRequest) -> func.HttpResponse:
    """200 when every configured model is ready on its model server, 503 otherwise."""
    return handle(req)
