import logging
import time

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task
def heartbeat():
    log.info("heartbeat")
    return "ok"


@shared_task
def simulate(name, seconds):
    """A stand-in for an EnergyPlus run: takes `seconds`, then stores its result."""
    from .models import Building, Simulation

    building, _ = Building.objects.get_or_create(name="Drain test", defaults={"floor_area_m2": 100.0})
    run = Simulation.objects.create(building=building, name=name, status="running")
    log.info("simulation %s: running for %s s", name, seconds)
    time.sleep(seconds)
    run.status = "finished"
    run.energy_kwh_per_m2 = 42.0
    run.save()
    log.info("simulation %s: finished", name)
    return run.id
