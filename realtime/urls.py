"""Include with ``path("realtime/", include("realtime.urls"))``."""

from django.urls import path

from realtime import views

app_name = "realtime"
urlpatterns = [path("token/", views.token, name="token")]
