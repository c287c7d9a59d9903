import os

from django.db import connection
from django.http import JsonResponse

from .models import Simulation


def health(request):
    """EPSM's health endpoint: 200 with the database state in the JSON, even when the database is down."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "healthy"
    except Exception as exc:  # the reason is the point of this endpoint
        database = "unhealthy: " + " ".join(str(exc).split())
    if os.environ.get("EPSM_FAILURE") == "unhealthy":
        return JsonResponse(
            {"status": "unhealthy", "database": database, "reason": "EPSM_FAILURE=unhealthy"}, status=503
        )
    return JsonResponse({"status": "healthy", "database": database})


def simulations(request):
    rows = list(Simulation.objects.values("id", "name", "status", "energy_kwh_per_m2")[:100])
    return JsonResponse({"results": rows})
