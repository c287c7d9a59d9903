"""Seeds the database with demo buildings and simulations; safe to run on every deploy."""
import os

from django.core.management.base import BaseCommand, CommandError

from simulations.models import Building, Simulation

BUILDINGS = [("Chalmers Library", 9800.0), ("Kemihuset", 21000.0), ("Student Union", 5400.0)]


class Command(BaseCommand):
    help = "Seed the EPSM database with demo data (idempotent)"

    def handle(self, *args, **options):
        if os.environ.get("EPSM_FAILURE") == "seed":
            raise CommandError("EPSM_FAILURE=seed: the seed command fails on purpose")
        created = 0
        for name, area in BUILDINGS:
            building, new = Building.objects.get_or_create(name=name, defaults={"floor_area_m2": area})
            created += int(new)
            Simulation.objects.get_or_create(building=building, name=f"{name} baseline",
                                             defaults={"status": "done", "energy_kwh_per_m2": 95.0})
        self.stdout.write(self.style.SUCCESS(
            f"Seeded {Building.objects.count()} buildings ({created} new), "
            f"{Simulation.objects.count()} simulations"))
