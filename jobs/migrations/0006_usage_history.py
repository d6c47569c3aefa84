"""Job names and the memory curve of the usage history (issue 16).

Jobs submitted before get their entrypoint's file name, as job_submit gives a job without one.
"""

import posixpath

from django.db import migrations, models


def names_from_entrypoints(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    for job in Job.objects.filter(name="").only("pk", "entrypoint").iterator():
        Job.objects.filter(pk=job.pk).update(name=posixpath.basename(job.entrypoint)[:200])


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0005_scheduling"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="name",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.RunPython(names_from_entrypoints, migrations.RunPython.noop),
        migrations.AddField(
            model_name="usagereport",
            name="memory_current_mb",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
