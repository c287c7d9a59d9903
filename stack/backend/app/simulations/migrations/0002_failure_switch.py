"""A data migration that fails on demand: EPSM_FAILURE=migrate reproduces a failing migration;
EPSM_FAILURE=slow-migrate one that takes 20 s (a migration a deploy may be cancelled during)."""
import os
import time

from django.db import migrations


def check_failure_switch(apps, schema_editor):
    if os.environ.get("EPSM_FAILURE") == "migrate":
        raise RuntimeError("EPSM_FAILURE=migrate: migration simulations.0002 fails on purpose")
    if os.environ.get("EPSM_FAILURE") == "slow-migrate":
        print("EPSM_FAILURE=slow-migrate: migration simulations.0002 takes 20 s", flush=True)
        time.sleep(20)


class Migration(migrations.Migration):
    dependencies = [("simulations", "0001_initial")]
    operations = [migrations.RunPython(check_failure_switch, migrations.RunPython.noop)]
