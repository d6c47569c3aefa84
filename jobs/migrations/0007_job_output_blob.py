# Outputs move from files of the default storage (MEDIA_ROOT) to blobs: each uploaded output's
# bytes are checked against its sha256 and stored once in the blob store, its job's owner holds
# the blob (origin "output"), then the file field goes. The old files are left where they were
# (MEDIA_ROOT/job-outputs/): deleting them before this transaction commits could lose them; the
# operator removes that folder once the migration is in (docs/operations.md).

import hashlib
import posixpath

import django.db.models.deletion
from django.core.files.storage import default_storage, storages
from django.db import migrations, models


def _sha256(name):
    digest = hashlib.sha256()
    with default_storage.open(name, "rb") as handle:
        for block in iter(lambda: handle.read(64 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def outputs_into_blobs(apps, schema_editor):
    JobOutput = apps.get_model("jobs", "JobOutput")
    Blob = apps.get_model("blobs", "Blob")
    BlobHolding = apps.get_model("blobs", "BlobHolding")
    store = storages["blobs"]
    for output in JobOutput.objects.exclude(file="").select_related("job"):
        if not default_storage.exists(output.file.name) or _sha256(output.file.name) != output.sha256:
            continue  # lost or damaged: the output stays without bytes (404 to download)
        blob = Blob.objects.filter(sha256=output.sha256).first()
        if blob is None:
            name = f"blobs/{output.sha256[:2]}/{output.sha256}"
            with default_storage.open(output.file.name, "rb") as handle:
                store.save(name, handle)
            blob = Blob.objects.create(sha256=output.sha256, size=output.size)
        BlobHolding.objects.get_or_create(
            user_id=output.job.owner_id,
            blob=blob,
            defaults={"origin": "output", "name": posixpath.basename(output.name)},
        )
        output.blob = blob
        output.save(update_fields=["blob"])


class Migration(migrations.Migration):

    dependencies = [
        ('blobs', '0001_initial'),
        ('jobs', '0006_usage_history'),
    ]

    operations = [
        migrations.AddField(
            model_name='joboutput',
            name='blob',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='blobs.blob'),
        ),
        migrations.RunPython(outputs_into_blobs, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='joboutput',
            name='file',
        ),
    ]
