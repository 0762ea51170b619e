def test_health(get):
    assert get("/healthz") == (200, {"ok": True})


def test_unknown_route(get):
    status, _ = get("/no-such-route")
    assert status == 404
