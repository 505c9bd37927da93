"""The management API's contract: its OpenAPI document, its docs page (served without
a CDN, checked in a real browser where Chromium is installed), error bodies and CORS."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import time
import zlib
from collections import Counter
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from shared.models import User
from shared.settings import Settings
from tests.api.conftest import PASSWORD
from tests.services import derive_settings

MANAGEMENT = ("/api/v1/auth", "/api/v1/emails", "/api/v1/attachments", "/api/v1/events")
MANAGEMENT += ("/api/v1/deliveries", "/api/v1/dead-letters")


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        if path.startswith(MANAGEMENT)
        for method, operation in item.items()
    ]


def _has_example(response: dict[str, Any], document: dict[str, Any]) -> bool:
    for media in response.get("content", {}).values():
        if "example" in media or "examples" in media:
            return True
        ref = media.get("schema", {}).get("$ref")
        if ref:
            schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
            if schema.get("examples"):
                return True
    return False


def test_every_operation_is_documented_with_examples(client: TestClient) -> None:
    document = client.get("/api/v1/openapi.json").json()
    operations = _operations(document)
    # 12, DELETE /emails/{id} (erasure), GET /emails/{id}/dispatches, GET /attachments/{id}/text
    assert len(operations) == 15
    for method, path, operation in operations:
        label = f"{method} {path}"
        assert operation.get("summary"), label
        assert operation.get("description"), label
        for status, response in operation["responses"].items():
            assert response.get("description"), f"{label} {status}"
            assert _has_example(response, document), f"{label} {status} has no example"
        statuses = set(operation["responses"])
        assert {"401", "422", "429"} <= statuses or path == "/api/v1/auth/token", label
        if path != "/api/v1/auth/token":
            assert operation["security"] == [{"OAuth2PasswordBearer": []}], label
    scheme = document["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    assert client.get("/api/v1/docs").status_code == 200


# --- the docs page, without internet ----------------------------------------------

DOCS = "/api/v1/docs"
ASSET_TYPES = {"script": "text/javascript", "stylesheet": "text/css", "icon": "image/png"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    # Lets Swagger UI fetch the OpenAPI document and render before the page is taken.
    "--virtual-time-budget=10000",
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)"
)


class _Assets(HTMLParser):
    """Every script, stylesheet and icon a page loads, by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            if values.get("src"):
                self.found.append(("script", values["src"] or ""))
            else:
                self.inline_scripts += 1
        elif tag == "link" and values.get("href"):
            rel = (values.get("rel") or "").lower()
            self.found.append(("icon" if "icon" in rel else rel, values["href"] or ""))


def test_the_docs_page_loads_every_asset_from_its_own_origin(api: str) -> None:
    page = httpx.get(api + DOCS, timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    parser = _Assets()
    parser.feed(page.text)
    assert sorted(kind for kind, _ in parser.found) == ["icon", "script", "stylesheet"]
    origin = urlsplit(api)
    for kind, reference in parser.found:
        url = urlsplit(urljoin(api + DOCS, reference))
        assert (url.scheme, url.netloc) == (origin.scheme, origin.netloc), reference
        asset = httpx.get(url.geturl(), timeout=10)
        assert asset.status_code == 200, reference
        assert asset.headers["content-type"].startswith(ASSET_TYPES[kind]), reference
        assert len(asset.content) > 1000, reference
    # Only same-origin scripts, and the page's one inline start-up script by its hash.
    policy = page.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in policy
    assert parser.inline_scripts == 1
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    # The Authorize button's OAuth2 password flow posts to this origin's token URL.
    document = httpx.get(api + "/api/v1/openapi.json", timeout=10).json()
    flow = document["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flow["password"]["tokenUrl"] == "/api/v1/auth/token"


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def png_rows(data: bytes) -> tuple[int, list[bytes]]:
    """Channels per pixel and the decoded rows of an 8-bit, non-interlaced RGB(A) PNG.

    Written here with zlib rather than adding an imaging library for one test."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, compressed, header = 8, [], None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed.append(body)
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert (depth, interlace, color in (2, 6)) == (8, 0, True), header
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(compressed))
    stride = width * channels
    prior, rows = bytearray(stride), []
    for y in range(height):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride) if method else ():
            left = line[x - channels] if x >= channels else 0
            up_left = prior[x - channels] if x >= channels else 0
            up = prior[x]
            if method == 1:
                predicted = left
            elif method == 2:
                predicted = up
            elif method == 3:
                predicted = (left + up) >> 1
            else:  # Paeth
                estimate = left + up - up_left
                distances = (abs(estimate - left), abs(estimate - up), abs(estimate - up_left))
                predicted = (left, up, up_left)[distances.index(min(distances))]
            line[x] = (line[x] + predicted) & 0xFF
        rows.append(bytes(line))
        prior = line
    return channels, rows


def colour_counts(png: Path) -> Counter[bytes]:
    channels, rows = png_rows(png.read_bytes())
    return Counter(row[x : x + 3] for row in rows for x in range(0, len(row), channels))


@needs_chromium
def test_the_docs_page_renders_in_a_real_browser(api: str, tmp_path: Path) -> None:
    # A blank page first: the check below must be able to tell one.
    blank = tmp_path / "blank.png"
    _chromium(tmp_path / "profile-blank", f"--screenshot={blank}", "about:blank")
    assert len(colour_counts(blank)) == 1

    screenshot = tmp_path / "docs.png"
    result = _chromium(tmp_path / "profile", f"--screenshot={screenshot}", api + DOCS)
    assert screenshot.exists(), result.stderr[-2000:]
    colours = colour_counts(screenshot)
    (background, pixels), *_ = colours.most_common(1)
    assert background == b"\xff\xff\xff"  # Swagger UI's white page, decoded right
    assert len(colours) > 100, f"a blank page: {len(colours)} colours"
    assert sum(colours.values()) - pixels > 0.05 * sum(colours.values())

    # And what is drawn is the API: its operations and the Authorize button.
    dom = _chromium(tmp_path / "profile-dom", "--dump-dom", api + DOCS).stdout
    assert dom.count("opblock-summary-path") >= 14
    assert "btn authorize" in dom
    assert "/api/v1/auth/token" in dom


class _Page:
    """One tab of a headless Chromium, driven over the DevTools protocol (websockets, which
    uvicorn already brings): enough to run a script in the page and read its result."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        flags = [flag for flag in CHROMIUM_FLAGS if not flag.startswith("--virtual-time")]
        self.process = subprocess.Popen(
            [CHROMIUM, *flags, f"--user-data-dir={profile}", "--remote-debugging-port=0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        url = next(page for page in pages if page["type"] == "page")["webSocketDebuggerUrl"]
        self.socket = connect(url, max_size=None, open_timeout=30)
        self.serial = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.serial += 1
        self.socket.send(json.dumps({"id": self.serial, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.serial:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, awaitPromise=True)
        assert "exceptionDetails" not in answer, answer
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"never true: {expression}"
            time.sleep(0.2)
        return value

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=30)


# Swagger UI's own action behind the Authorize dialog's password form: it posts the form
# to the document's tokenUrl and keeps the token for "Try it out".
_AUTHORIZE = """
new Promise(resolve => {
  // What the dialog shows: one definition per OAuth2 flow, with its tokenUrl.
  const schema = ui.authSelectors.definitionsToAuthorize()
    .map(definition => definition.get("OAuth2PasswordBearer"))
    .find(definition => definition && definition.get("flow") === "password");
  ui.authActions.authorizePassword({
    name: "OAuth2PasswordBearer", schema, username: %s, password: %s,
    passwordType: "request-body", clientId: "", clientSecret: "", scopes: []});
  const started = Date.now();
  const poll = () => {
    const token = ui.authSelectors.authorized().getIn(
      ["OAuth2PasswordBearer", "token", "access_token"]);
    if (token || Date.now() - started > 20000) resolve(token || "");
    else setTimeout(poll, 100);
  };
  poll();
})
"""


@needs_chromium
def test_the_docs_page_authorizes_with_the_password_flow(
    api: str, tmp_path: Path, make_user: Callable[..., User]
) -> None:
    make_user()
    page = _Page(tmp_path / "profile")
    try:
        page.call("Page.navigate", url=api + DOCS)
        page.wait_for("typeof ui !== 'undefined' && document.querySelectorAll('.opblock').length")
        token = page.evaluate(_AUTHORIZE % (json.dumps("ops"), json.dumps(PASSWORD)))
        errors = page.evaluate("JSON.stringify(ui.errSelectors.allErrors().toJS())")
        assert token, f"Swagger UI got no token from the password flow: {errors}"
        # The token it keeps opens the API.
        emails = httpx.get(
            api + "/api/v1/emails", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert emails.status_code == 200
    finally:
        page.close()


def test_error_bodies_share_one_shape(client: TestClient, auth: dict[str, str]) -> None:
    answers = [
        client.get("/api/v1/emails"),  # 401
        client.get("/api/v1/emails/12345", headers=auth),  # 404
        client.get("/api/v1/emails", headers=auth, params={"limit": "x"}),  # 422
        client.post("/api/v1/dead-letters/1/discard", headers=auth),  # 404
    ]
    assert [answer.status_code for answer in answers] == [401, 404, 422, 404]
    for answer in answers:
        body = answer.json()
        assert set(body) == {"status", "message", "errors"}
        assert body["status"] == "error"
        assert body["message"]
    assert [error["field"] for error in answers[2].json()["errors"]] == ["query.limit"]
    assert all(answer.json()["errors"] == [] for answer in (answers[0], answers[1], answers[3]))


def _preflight(client: TestClient, origin: str) -> Any:
    return client.options(
        "/api/v1/emails",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def test_no_cross_origin_access_by_default(client: TestClient) -> None:
    response = _preflight(client, "https://app.example.com")
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("configured", ["https://app.example.com", "https://app.example.com/"])
def test_configured_origins_may_call_the_api(
    make_client: Callable[..., TestClient], api_settings: Settings, configured: str
) -> None:
    client = make_client(derive_settings(api_settings, cors_origins=configured))
    allowed = _preflight(client, "https://app.example.com")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    other = _preflight(client, "https://evil.example.net")
    assert "access-control-allow-origin" not in other.headers
    simple = client.get("/api/v1/emails", headers={"Origin": "https://app.example.com"})
    assert simple.status_code == 401  # CORS opens the door to the API, not past its auth
    assert simple.headers["access-control-allow-origin"] == "https://app.example.com"
