from django.urls import URLPattern, path

from hosts.consumers import AgentConsumer

# Agents are not browsers: no session auth and no Origin check (see config/asgi.py).
websocket_urlpatterns: list[URLPattern] = [
    path("ws/agent/", AgentConsumer.as_asgi()),
]
