"""The test suite's URLs plus the browser tests' pages (all under ``/_test/``)."""

from __future__ import annotations

from django.urls import path

from tests.browser import views
from tests.urls import urlpatterns as test_urlpatterns

urlpatterns = [
    *test_urlpatterns,
    path("_test/login/<str:username>/", views.login_as),
    path("_test/page/", views.page),
    path("_test/realtime.js", views.client_js),
    path("_test/readme/", views.readme_page),
    # where {% static 'realtime/realtime.js' %} points (no staticfiles serving here)
    path("static/realtime/realtime.js", views.client_js),
]
