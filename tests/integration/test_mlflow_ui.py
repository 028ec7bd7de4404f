"""The MLflow UI after two weekly training runs, in headless Chromium: champion, statuses and metrics visible.

Starts the real `mlflow server` on 127.0.0.1 (a sqlite store in tmp holding what Packwise registers for two
weeks of ``mailer`` and ``bag``), then opens the models list, a model's versions page and the compare view
with Playwright driving Debian's Chromium (``/usr/bin/chromium``; ``scripts/ci-browser.sh`` installs it).
Screenshots go to the test's ``artifacts`` directory (``PACKWISE_TEST_ARTIFACTS`` when set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_mlflow_server import free_port, wait_for
from tests.registry_models import two_week_registry

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RENDER_TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; run scripts/ci-browser.sh (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("PACKWISE_TEST_ARTIFACTS")
    path = Path(where) / "mlflow-ui" if where else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return two_week_registry(tmp_path_factory.mktemp("two-weeks-ui"))


@pytest.fixture(scope="module")
def server(registry: Any, artifacts: Path) -> Iterator[str]:
    port = free_port()
    log = artifacts / "mlflow-server.log"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", registry.tracking_uri]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Any]:
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra: make install")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1600, "height": 1000})
            tab.set_default_timeout(RENDER_TIMEOUT_MS)
            yield tab
        finally:
            browser.close()


def _open(page: Any, url: str, shows: str, shot: Path) -> str:
    """Opens ``url``, waits until ``shows`` is on the page, screenshots it and returns the page's text."""
    page.goto(url)
    page.get_by_text(shows, exact=False).first.wait_for()
    page.wait_for_timeout(1500)  # the SPA keeps polling (no network idle): let the rest of the table render
    page.screenshot(path=str(shot), full_page=True)
    return str(page.inner_text("body"))


def test_models_list_shows_each_package_type_and_its_champion(page: Any, server: str, artifacts: Path) -> None:
    text = _open(page, f"{server}/#/models", "packwise-mailer", artifacts / "01-models.png")
    assert "packwise-bag" in text and "packwise-mailer" in text
    rows = {
        name: page.get_by_role("row").filter(has_text=name).inner_text() for name in ("packwise-mailer", "packwise-bag")
    }
    assert "champion" in rows["packwise-mailer"] and "Version 2" in rows["packwise-mailer"]
    assert "champion" in rows["packwise-bag"] and "Version 1" in rows["packwise-bag"]  # week 2's bag was rejected


def test_versions_page_shows_statuses_champion_and_decisions(
    page: Any, server: str, registry: Any, artifacts: Path
) -> None:
    text = _open(page, f"{server}/#/models/packwise-bag", "Version 2", artifacts / "02-bag-versions.png")
    assert "packwise.week" in text and "packwise.data_fingerprint" in text
    v2 = page.get_by_role("row").filter(has_text="Version 2").inner_text()
    v1 = page.get_by_role("row").filter(has_text="Version 1").inner_text()
    assert "Rejected" in v2 and "champion" not in v2
    assert "Approved" in v1 and "champion" in v1
    assert registry.get("bag", 2).reason.split(":")[0] in v2  # the description is the one-line decision


def test_compare_view_shows_the_training_params_and_metrics(
    page: Any, server: str, registry: Any, artifacts: Path
) -> None:
    client = registry.client
    runs = {mv.version: mv.run_id for mv in client.search_model_versions("name = 'packwise-mailer'")}
    query = f"name={urllib.parse.quote(json.dumps('packwise-mailer'))}&runs={urllib.parse.quote(json.dumps(runs))}"
    text = _open(
        page, f"{server}/#/compare-model-versions?{query}", "Comparing 2 Versions", artifacts / "03-compare.png"
    )
    for name in ("week", "data_fingerprint", "labels.positive"):
        assert name in text, name
    for version in (1, 2):
        log_loss = registry.get("mailer", version).metrics["log_loss"]
        row = page.get_by_role("row").filter(has_text="log_loss").first.inner_text()
        assert f"{round(log_loss, 3):g}" in row, (version, row)
    assert "auc" in text and "label_positive_rate" in text
