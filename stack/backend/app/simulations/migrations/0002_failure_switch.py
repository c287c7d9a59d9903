"""A data migration that fails on demand: EPSM_FAILURE=migrate reproduces a failing migration."""
import os

from django.db import migrations


def check_failure_switch(apps, schema_editor):
    if os.environ.get("EPSM_FAILURE") == "migrate":
        raise RuntimeError("EPSM_FAILURE=migrate: migration simulations.0002 fails on purpose")


class Migration(migrations.Migration):
    dependencies = [("simulations", "0001_initial")]
    operations = [migrations.RunPython(check_failure_switch, migrations.RunPython.noop)]
