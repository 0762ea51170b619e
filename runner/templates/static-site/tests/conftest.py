import threading
import urllib.error
import urllib.request

import pytest

from app.main import serve


@pytest.fixture(scope="session")
def server():
    instance = serve(0)
    thread = threading.Thread(target=instance.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{instance.server_address[1]}"
    instance.shutdown()


@pytest.fixture
def get(server):
    """GET a path: (status, headers, body as text)."""
    def fetch(path):
        try:
            with urllib.request.urlopen(server + path) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    return fetch
