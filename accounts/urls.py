from django.urls import URLPattern, URLResolver, path

from accounts import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("auth/signup/", apis.SignupApi.as_view(), name="auth-signup"),
    path("auth/login/", apis.LoginApi.as_view(), name="auth-login"),
    path("auth/logout/", apis.LogoutApi.as_view(), name="auth-logout"),
    path("auth/me/", apis.MeApi.as_view(), name="auth-me"),
    path("auth/csrf/", apis.CsrfApi.as_view(), name="auth-csrf"),
    path("tokens/", apis.ApiTokenListApi.as_view(), name="token-list"),
    path("tokens/<int:token_id>/", apis.ApiTokenDetailApi.as_view(), name="token-detail"),
    path("organisations/", apis.OrganisationListApi.as_view(), name="organisation-list"),
    path(
        "organisations/<int:organisation_id>/",
        apis.OrganisationDetailApi.as_view(),
        name="organisation-detail",
    ),
    path(
        "organisations/<int:organisation_id>/members/",
        apis.OrganisationMemberListApi.as_view(),
        name="organisation-member-list",
    ),
    path(
        "organisations/<int:organisation_id>/members/<str:username>/",
        apis.OrganisationMemberDetailApi.as_view(),
        name="organisation-member-detail",
    ),
]
