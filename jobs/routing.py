from django.urls import URLPattern, path

from config.sockets import browser_socket
from jobs.agent_socket import AgentConsumer
from jobs.consumers import JobConsumer, JobGroupConsumer

websocket_urlpatterns: list[URLPattern] = [
    # Agents are not browsers: no session auth and no Origin check (see config/asgi.py).
    path("ws/agent/", AgentConsumer.as_asgi()),
    path("ws/jobs/<int:job_id>/", browser_socket(JobConsumer.as_asgi())),
    path("ws/job-groups/<int:group_id>/", browser_socket(JobGroupConsumer.as_asgi())),
]
