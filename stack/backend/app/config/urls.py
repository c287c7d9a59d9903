from django.contrib import admin
from django.urls import path

from simulations import views

urlpatterns = [
    path("health/", views.health),
    path("api/simulations/", views.simulations),
    path("admin/", admin.site.urls),
]
