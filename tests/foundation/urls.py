"""A URLconf for tests that need a plain Django (non-DRF) view under /v1.

Used with `@pytest.mark.urls("tests.foundation.urls")`; everything else in the
suite runs on tests.urls, which is the product's URLconf plus test-only views.
"""

from django.urls import include, path


def plain_django_crash(request):
    raise RuntimeError("secret-db-password=hunter2 leaked from a plain Django view")


urlpatterns = [
    path("v1/test/plain-crash", plain_django_crash),
    path("", include("tests.urls")),
]
