from django.apps import AppConfig


class BlobsConfig(AppConfig):
    name = "blobs"
    default_auto_field = "django.db.models.BigAutoField"
