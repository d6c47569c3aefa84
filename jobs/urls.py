from django.urls import URLPattern, URLResolver, include, path

from jobs import apis, group_apis, release_apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include("jobs.pool_urls")),
    path("jobs/", apis.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/<int:job_id>/", apis.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel/", apis.JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<int:job_id>/logs/", apis.JobLogsApi.as_view(), name="job-logs"),
    path("jobs/<int:job_id>/receipt/", apis.JobReceiptApi.as_view(), name="job-receipt"),
    path("jobs/<int:job_id>/usage/", apis.JobUsageApi.as_view(), name="job-usage"),
    path("jobs/<int:job_id>/outputs/", apis.JobOutputsApi.as_view(), name="job-outputs"),
    path(
        "jobs/<int:job_id>/outputs/<path:name>/release/",
        release_apis.JobOutputReleaseApi.as_view(),
        name="job-output-release",
    ),
    path(
        "organisations/<int:organisation_id>/releases/",
        release_apis.OrganisationReleaseListApi.as_view(),
        name="organisation-release-list",
    ),
    path(
        "organisations/<int:organisation_id>/releases/<int:release_id>/approve/",
        release_apis.ReleaseApproveApi.as_view(),
        name="organisation-release-approve",
    ),
    path(
        "organisations/<int:organisation_id>/releases/<int:release_id>/refuse/",
        release_apis.ReleaseRefuseApi.as_view(),
        name="organisation-release-refuse",
    ),
    path(
        "jobs/<int:job_id>/outputs/<path:name>",
        apis.JobOutputDownloadApi.as_view(),
        name="job-output",
    ),
    path("job-groups/", group_apis.JobGroupListCreateApi.as_view(), name="job-group-list"),
    path("job-groups/<int:group_id>/", group_apis.JobGroupDetailApi.as_view(), name="job-group"),
    path(
        "job-groups/<int:group_id>/cancel/",
        group_apis.JobGroupCancelApi.as_view(),
        name="job-group-cancel",
    ),
    path(
        "job-groups/<int:group_id>/results/",
        group_apis.JobGroupResultsApi.as_view(),
        name="job-group-results",
    ),
    path(
        "job-groups/<int:group_id>/receipt/",
        group_apis.JobGroupReceiptApi.as_view(),
        name="job-group-receipt",
    ),
    path("agent/uploads/", apis.AgentUploadsApi.as_view(), name="agent-uploads"),
    path(
        "agent/uploads/<uuid:upload_id>/", apis.AgentUploadDetailApi.as_view(), name="agent-upload"
    ),
]
