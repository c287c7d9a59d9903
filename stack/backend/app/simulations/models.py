from django.db import models


class Building(models.Model):
    name = models.CharField(max_length=200, unique=True)
    floor_area_m2 = models.FloatField()


class Simulation(models.Model):
    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="simulations")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, default="queued")
    energy_kwh_per_m2 = models.FloatField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
