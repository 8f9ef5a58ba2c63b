"""The web UI as a user sees it: dagster-webserver on loopback, its GraphQL API, a headless Chromium.

The test materializes `ethics_dataset` (seconds: validation only) into a throwaway DAGSTER_HOME,
starts `dagster-webserver -m ohlora_assets.definitions` on it on 127.0.0.1 and a free port, waits
(bounded) until the code location has loaded, checks through the GraphQL API that every asset group
and every asset check of the project's Definitions is there, and screenshots the global asset graph,
each group's lineage page and the `ethics_dataset` asset page with Debian's `chromium`. That asset
page shows Korean prompts from the data: its rendered text must contain Hangul, and the browser must
draw Hangul with real glyphs (two different words rendered differently), not the empty boxes it
draws without a Korean font (scripts/ci_services.sh installs fonts-nanum).

Screenshots: `.ohlora/ui/asset_graph.png`, `.ohlora/ui/asset_group_<group>.png` and
`.ohlora/ui/asset_ethics_dataset.png` under the project root (OHLORA_UI_DIR to change). Without a
browser the GraphQL part still runs and the screenshot part skips, saying so (`.ci/run` installs
chromium through scripts/ci_services.sh).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import dagster as dg

from ohlora_assets.assets import data
from ohlora_assets.definitions import defs
from ohlora_assets.resources import PROJECT_ROOT
from ohlora_assets_tests.conftest import make_resources
from ohlora_assets_tests.processes import free_port, stop_process_group

LOAD_TIMEOUT_S = 240
UI_DIR = Path(os.environ.get("OHLORA_UI_DIR", PROJECT_ROOT / ".ohlora" / "ui"))
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HANGUL = re.compile("[\uac00-\ud7a3]")
SHOWN_ASSET = "ethics_dataset"  # its page shows Korean prompts once materialized



class Webserver:
    def __init__(self, home: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "webserver.log"
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "OHLORA_HOME": str(home / "store"),
            "OHLORA_AUTOMATION": "off",
        }
        self._log = self.log_path.open("wb")
        webserver = Path(sys.executable).with_name("dagster-webserver")
        self.process = subprocess.Popen(
            [str(webserver), "-m", "ohlora_assets.definitions", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=PROJECT_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql", data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.load(response)
        assert "errors" not in payload, payload["errors"]
        return payload["data"]

    def wait_until_loaded(self) -> None:
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"dagster-webserver exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                data = self.graphql(
                    "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus"
                    " locationOrLoadError { __typename ... on PythonError { message } } } } } }"
                )
                entries = data["workspaceOrError"]["locationEntries"]
                last = json.dumps(entries)
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errors = [e for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                    assert not errors, f"code location failed to load: {errors}"
                    self.locations = [e["name"] for e in entries]
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                last = repr(err)
            time.sleep(1)
        pytest.fail(f"code location not loaded after {LOAD_TIMEOUT_S}s ({last}):\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process_group(self.process)
        self._log.close()


def _materialize_shown_asset(home: Path) -> None:
    """`SHOWN_ASSET` materialized into the instance at `home`, as `make run` would have done."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize(
            dg.load_assets_from_modules([data]), selection=[SHOWN_ASSET], instance=instance,
            resources=make_resources(home / "store"),
        )
        assert result.success


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    _materialize_shown_asset(home)
    server = Webserver(home)
    try:
        server.wait_until_loaded()
        yield server
    finally:
        server.stop()


def _expected() -> tuple[set[str], set[tuple[str, str]], set[str]]:
    graph = defs.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    groups = {graph.get(key).group_name for key in keys}
    checks = {(check.asset_key.to_user_string(), check.name) for check in graph.asset_check_keys}
    return groups, checks, {key.to_user_string() for key in keys}


def test_graphql_shows_every_group_asset_and_check(webserver):
    data = webserver.graphql(
        "{ assetNodes { assetKey { path } groupName isObservable"
        " assetChecksOrError { __typename ... on AssetChecks { checks { name } } } } }"
    )
    nodes = data["assetNodes"]
    groups = {node["groupName"] for node in nodes}
    assets = {"/".join(node["assetKey"]["path"]) for node in nodes}
    checks = {
        ("/".join(node["assetKey"]["path"]), check["name"])
        for node in nodes
        if node["assetChecksOrError"]["__typename"] == "AssetChecks"
        for check in node["assetChecksOrError"]["checks"]
    }
    expected_groups, expected_checks, expected_assets = _expected()
    assert "data" in expected_groups
    assert groups == expected_groups
    assert assets == expected_assets
    assert checks == expected_checks
    assert ("ethics_dataset", "schema_valid") in checks
    assert {"/".join(n["assetKey"]["path"]) for n in nodes if n["isObservable"]} >= {"raw_ethics_csv", "raw_dialogue_csv"}

    jobs = webserver.graphql(
        '{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name }'
        " schedules { name cronSchedule } sensors { name } } } } }"
    )["repositoriesOrError"]["nodes"][0]
    assert {"retrain_all", "ethics_only", "reports_only"} <= {job["name"] for job in jobs["jobs"]}
    assert {"weekly_retrain_all": "0 3 * * 0"}.items() <= {s["name"]: s["cronSchedule"] for s in jobs["schedules"]}.items()
    assert {"observe_raw_files", "rematerialize_stale"} <= {s["name"] for s in jobs["sensors"]}


def _browser() -> str | None:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    return None


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def _distinct_colours(path: Path) -> int:
    from PIL import Image  # pillow comes with matplotlib

    with Image.open(path) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        browser, "--headless", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
        "--no-first-run", "--window-size=1600,1000", "--virtual-time-budget=20000", f"--user-data-dir={profile}", *args,
    ]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
    return subprocess.run(command, capture_output=True, text=True, timeout=300)  # a bound for a hang, not a speed check


def _screenshot(browser: str, url: str, target: Path, profile: Path) -> None:
    target.unlink(missing_ok=True)
    result = _chromium(browser, profile, f"--screenshot={target}", url)
    assert result.returncode == 0 and target.is_file(), f"{url}: chromium failed\n{result.stderr[-2000:]}"


def _rendered_text(browser: str, url: str, profile: Path) -> str:
    """The page's text after its scripts ran (the DOM, tags removed)."""
    result = _chromium(browser, profile, "--dump-dom", url)
    assert result.returncode == 0, f"{url}: chromium failed\n{result.stderr[-2000:]}"
    return re.sub(r"<[^>]+>", " ", result.stdout)


def _hangul_page(text: str) -> str:
    return f"data:text/html;charset=utf-8,<body style='margin:0;font-size:96px'>{text}</body>"


def test_asset_graph_screenshots_in_headless_chromium(webserver, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip(f"no headless browser ({', '.join(BROWSERS)}) installed; scripts/ci_services.sh installs chromium")
    # the first-visit community dialog would cover the graph; it is dismissed for this instance only
    assert webserver.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    UI_DIR.mkdir(parents=True, exist_ok=True)
    [location] = webserver.locations
    groups, _, _ = _expected()
    shots = {UI_DIR / "asset_graph.png": f"{webserver.url}/asset-groups"}
    for group in sorted(groups):
        shots[UI_DIR / f"asset_group_{group}.png"] = f"{webserver.url}/locations/{location}/asset-groups/{group}"
    for target, url in shots.items():
        _screenshot(browser, url, target, tmp_path / "chromium-profile")
        assert _png_size(target) == (1600, 1000)
        assert target.stat().st_size > 20_000, f"{target} is suspiciously small"
        # a rendered graph (nodes, text, edges), not a blank or single-colour error page
        assert _distinct_colours(target) > 64, target
    print(f"screenshots: {', '.join(str(t) for t in shots)}")


def test_asset_page_shows_readable_hangul(webserver, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip(f"no headless browser ({', '.join(BROWSERS)}) installed; scripts/ci_services.sh installs chromium")
    assert webserver.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    profile = tmp_path / "chromium-profile"
    url = f"{webserver.url}/assets/{SHOWN_ASSET}"

    text = _rendered_text(browser, url, profile)
    assert SHOWN_ASSET in text, "the asset page did not render"
    assert len(HANGUL.findall(text)) >= 20, f"no Korean text on {url}"

    # Without a Korean font every syllable is the same empty box, so two different words look alike.
    shots = {word: tmp_path / f"{word}.png" for word in ("오로라", "사랑해")}
    for word, target in shots.items():
        _screenshot(browser, _hangul_page(word), target, profile)
    from PIL import Image, ImageChops

    with Image.open(shots["오로라"]) as first, Image.open(shots["사랑해"]) as second:
        assert ImageChops.difference(first.convert("L"), second.convert("L")).getbbox() is not None, (
            "Hangul renders as empty boxes: install a Korean font (fonts-nanum; scripts/ci_services.sh)"
        )

    UI_DIR.mkdir(parents=True, exist_ok=True)
    target = UI_DIR / f"asset_{SHOWN_ASSET}.png"
    _screenshot(browser, url, target, profile)
    assert _png_size(target) == (1600, 1000)
    assert _distinct_colours(target) > 64, f"{target} looks blank"
    print(f"screenshot: {target}")
