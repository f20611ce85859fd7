"""The uploads family's budget applies to the real upload endpoint."""

from django.core.files.uploadedfile import SimpleUploadedFile

from agents.models import KnowledgeFile


def test_the_11th_upload_in_a_minute_is_refused_and_stores_nothing(client, alice):
    for i in range(10):
        upload = SimpleUploadedFile(f"note{i}.txt", f"note number {i}".encode(), content_type="text/plain")
        response = client.post("/v1/combo/files", {"file": upload}, **alice.key_auth)
        assert response.status_code == 201, response.content
    assert response["X-RateLimit-Limit"] == "10" and response["X-RateLimit-Remaining"] == "0"
    upload = SimpleUploadedFile("late.txt", b"one too many", content_type="text/plain")
    response = client.post("/v1/combo/files", {"file": upload}, **alice.key_auth)
    body = response.json()
    assert (response.status_code, body["code"], body["data"]["family"]) == (429, 10090, "uploads")
    assert int(response["Retry-After"]) >= 1
    assert KnowledgeFile.objects.count() == 10
    assert client.get("/v1/combo/files", **alice.key_auth).status_code == 200  # default family untouched
