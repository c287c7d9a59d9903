"""A data migration that fails on demand: EPSM_FAILURE=migrate reproduces a failing migration;
EPSM_FAILURE=slow-migrate one that takes EPSM_SLOW_MIGRATE_SECS (20 s unless set): a migration a deploy
may be cancelled during."""
import os
import time

from django.db import migrations


def check_failure_switch(apps, schema_editor):
    if os.environ.get("EPSM_FAILURE") == "migrate":
        raise RuntimeError("EPSM_FAILURE=migrate: migration simulations.0002 fails on purpose")
    if os.environ.get("EPSM_FAILURE") == "slow-migrate":
        seconds = int(os.environ.get("EPSM_SLOW_MIGRATE_SECS") or 20)
        print(f"EPSM_FAILURE=slow-migrate: migration simulations.0002 takes {seconds} s", flush=True)
        time.sleep(seconds)


class Migration(migrations.Migration):
    dependencies = [("simulations", "0001_initial")]
    operations = [migrations.RunPython(check_failure_switch, migrations.RunPython.noop)]
