from django.urls import URLPattern, URLResolver, path

from hosts import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("hosts/enrollments/", apis.EnrollmentCreateApi.as_view(), name="host-enrollments"),
    path("agent/register/", apis.AgentRegisterApi.as_view(), name="agent-register"),
    path(
        "organisations/<int:organisation_id>/host-tokens/",
        apis.PoolTokenCreateApi.as_view(),
        name="organisation-host-tokens",
    ),
    path("my/hosts/", apis.MyHostListApi.as_view(), name="my-hosts"),
    path("my/hosts/<int:host_id>/", apis.MyHostDetailApi.as_view(), name="my-host"),
    path(
        "my/hosts/<int:host_id>/credentials/revoke/",
        apis.MyHostCredentialsRevokeApi.as_view(),
        name="my-host-credentials-revoke",
    ),
]
