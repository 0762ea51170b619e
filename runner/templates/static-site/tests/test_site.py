import os
import re

SITE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "site")


def test_health(get):
    status, _, body = get("/healthz")
    assert (status, body) == (200, '{"ok": true}')


def test_index_is_html_revalidated_on_every_visit(get):
    status, headers, body = get("/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert headers["cache-control"] == "no-cache"
    assert "<html" in body


def test_assets_are_cached(get):
    status, headers, _ = get("/assets/style.css")
    assert status == 200
    assert headers["content-type"].startswith("text/css")
    assert "max-age=" in headers["cache-control"]


def test_nothing_outside_the_site_is_served(get):
    assert get("/../app/main.py")[0] == 404
    assert get("/no-such-page")[0] == 404


def test_every_local_link_resolves():
    for folder, _, files in os.walk(SITE):
        for name in files:
            if not name.endswith(".html"):
                continue
            page = open(os.path.join(folder, name), encoding="utf-8").read()
            for link in re.findall(r'(?:href|src)="(/[^"#?]*)', page):
                target = os.path.join(SITE, link.lstrip("/"))
                if link.endswith("/"):
                    target = os.path.join(target, "index.html")
                assert os.path.isfile(target), f"{name} links to {link}, which is not in site/"
