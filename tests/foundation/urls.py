"""A URLconf for tests that need a plain Django (non-DRF) view under /v1.

Used with `@pytest.mark.urls("tests.foundation.urls")`; everything else in the
suite runs on tests.urls, which is the product's URLconf plus test-only views.
"""

from django.http import HttpResponse
from django.urls import include, path


def plain_django_crash(request):
    raise RuntimeError("secret-db-password=hunter2 leaked from a plain Django view")


def plain_django_status(request, status):
    # What a plain Django view, decorator or middleware answers with: text, not JSON.
    response = HttpResponse(f"<h1>{status}</h1> secret-internal-detail", status=status, content_type="text/html")
    if status == 429:
        response["Retry-After"] = "17"
    return response


urlpatterns = [
    path("v1/test/plain-crash", plain_django_crash),
    path("v1/test/plain-status/<int:status>", plain_django_status),
    path("", include("tests.urls")),
]
