from django.urls import URLPattern, URLResolver, path

from blobs import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("uploads/", apis.UploadsApi.as_view(), name="uploads"),
    path("uploads/<uuid:upload_id>/", apis.UploadDetailApi.as_view(), name="upload"),
    path("blobs/", apis.BlobListApi.as_view(), name="blob-list"),
    path("blobs/quota/", apis.BlobQuotaApi.as_view(), name="blob-quota"),
    path("blobs/fetch/<str:token>", apis.BlobFetchApi.as_view(), name="blob-fetch"),
    path("blobs/<str:sha256>/", apis.BlobDetailApi.as_view(), name="blob-detail"),
    path("blobs/<str:sha256>/content", apis.BlobContentApi.as_view(), name="blob-content"),
]
