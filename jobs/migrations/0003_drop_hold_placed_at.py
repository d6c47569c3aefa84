"""A submit is one transaction now (job, files, hold, first offer), so every job is funded and
``hold_placed_at`` goes. A job an older submit left unfunded (a crash between its commit and its
hold) never ran and holds nothing: it fails, marked settled, before the field goes."""

from django.db import migrations
from django.db.models import F


def unfunded_fail(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    Job.objects.filter(hold_placed_at__isnull=True, hold_released_at__isnull=True).exclude(
        status__in=["succeeded", "failed", "cancelled", "timed_out", "budget_exhausted"]
    ).update(
        status="failed",
        status_reason="the submit's hold was never placed",
        finished_at=F("updated_at"),
    )
    Job.objects.filter(hold_placed_at__isnull=True, hold_released_at__isnull=True).update(
        hold_released_at=F("updated_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0002_metering"),
    ]

    operations = [
        migrations.RunPython(unfunded_fail, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="job",
            name="hold_placed_at",
        ),
    ]
