from django.contrib import admin
from django.urls import include, path

from tests.testapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("realtime/", include("realtime.urls")),
    path("test/publish/", views.publish),
    path("test/acks/", views.acks),
    path("test/publish-in-transaction/", views.publish_in_transaction),
    path("test/login/", views.log_in),
    path("test/logout/", views.log_out),
]
