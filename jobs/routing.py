from django.urls import URLPattern, path

from config.sockets import browser_socket
from jobs.consumers import JobConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/jobs/<int:job_id>/", browser_socket(JobConsumer.as_asgi())),
]
