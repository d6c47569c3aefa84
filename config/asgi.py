"""ASGI entry point: HTTP through Django, websockets through Channels.

``jobs/routing.py`` lists the sockets: the agent socket (``jobs.agent_socket``) and the jobs'
browser socket. Agent sockets authenticate with a bearer credential
and are not browsers, so they sit outside the Origin check; browser sockets wrap their consumer
in ``config.sockets.browser_socket`` (session auth + same-origin check). HTTP bodies pass
``config.body_limits`` (refused by size before they are read).
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.body_limits import BodyLimitMiddleware  # noqa: E402
from jobs.routing import websocket_urlpatterns as job_sockets  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": URLRouter(job_sockets),
    }
)
