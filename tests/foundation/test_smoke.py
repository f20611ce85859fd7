def test_health_answers_ok_in_the_envelope(api, db):
    status, body, response = api.get("/v1/health")
    assert status == 200
    assert body["code"] == 0 and body["data"]["status"] == "ok"
    assert response["X-Request-Id"].startswith("req_")


def test_alice_lists_her_keys_with_a_jwt(api, alice):
    status, body, _ = api.get("/v1/api-keys", auth=alice.jwt_auth)
    assert status == 200
    assert [item["name"] for item in body["data"]["items"]] == ["alice's key"]
    assert body["data"]["next_cursor"] is None
