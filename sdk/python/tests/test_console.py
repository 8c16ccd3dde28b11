"""The operator console (`mandate console`) in a real browser: headless Chromium from
Debian, driven through chromium-driver with Selenium. Every page is loaded against a live
coordinator; a pending grant is approved in the page and the task proceeds; a link is
revoked in the page and the tree shows it; the session, the form token and read-only mode
are enforced. Screenshots go to `target/console-screenshots/`."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Iterator

import pytest

import mandate
from mandate import Capability, Chain, Client, Signer, SigningKey

from conftest import ADMIN, ROOT, _binary, start_coordinator

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
SHOTS = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "console-screenshots"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) and not os.environ.get("MANDATE_REQUIRE_BROWSER"),
    reason="needs chromium and chromium-driver (.ci/setup installs them)",
)

# Grants on `prod/*` wait for a person; the rest is the default set.
APPROVAL = """
@id("console-test.approval")
@require_approval
@max_ttl("15m")
permit (principal is Mandate::Agent, action == Mandate::Action::"RequestGrant", resource)
when { resource.name like "prod/*" };
"""


@pytest.fixture(scope="module")
def service() -> Iterator[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        policies = pathlib.Path(tmp) / "policies"
        policies.mkdir()
        default = subprocess.run([str(_binary()), "policy", "default"], capture_output=True, text=True, check=True).stdout
        (policies / "default.cedar").write_text(default)
        (policies / "approval.cedar").write_text(APPROVAL)
        data = pathlib.Path(tmp) / "data"
        proc, c = start_coordinator(_binary(), data, extra=["--policy-dir", str(policies)])
        consoles: list[subprocess.Popen[str]] = []
        try:
            admin = c.admin()
            team = {"coordinator": c, "admin": admin, "data": data, "consoles": consoles}
            for name, role in [("planner", "planner"), ("worker", "worker"), ("auditor", "auditor")]:
                key = SigningKey.generate()
                agent = f"spiffe://mandate.local/console/{name}"
                admin.register_agent(agent_id=agent, public_key=key.public_key, role=role)
                path = pathlib.Path(tmp) / f"{name}.key"
                key.save(path)
                team[name] = (agent, key, path)
            yield team
        finally:
            for p in consoles:
                p.terminate()
                p.wait(timeout=10)
            proc.terminate()
            proc.wait(timeout=10)


def open_console(service: dict, agent: str, key: pathlib.Path, *extra: str) -> str:
    """Starts `mandate console` as `agent`; returns the URL it prints."""
    proc = subprocess.Popen(
        [str(_binary()), "--server", service["coordinator"].address, "--agent", agent, "--key", str(key), "console", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    service["consoles"].append(proc)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "mandate console for" in first, first
    return first.split()[-1]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(a)
    driver = webdriver.Chrome(service=Service(DRIVER or "chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def notice(driver) -> str:  # type: ignore[no-untyped-def]
    """What the page says an action did, once the page the form led to has loaded (the
    page itself when it says nothing within 10 s)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 10
    while True:
        found = driver.find_elements(By.CSS_SELECTOR, ".notice")
        if found:
            return found[0].text
        assert time.monotonic() < deadline, driver.find_element(By.TAG_NAME, "body").text
        time.sleep(0.05)


def shot(driver, name: str) -> None:  # type: ignore[no-untyped-def]
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def test_every_page_loads_and_approving_and_revoking_work(service: dict, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    planner_id, planner_key, _ = service["planner"]
    worker_id, worker_key, _ = service["worker"]
    planner = Client(service["coordinator"].address, Signer(planner_id, planner_key))
    # A task with a worker below it, and a grant waiting for a person.
    started = planner.start_task(
        capabilities=[Capability.of("files/*", "read")],
        ttl_ms=10 * 60_000,
        max_depth=1,
        intent=mandate.client.tasks_pb2.Intent(text="summarise the reports"),
    )
    root = Chain.decode(started.chain)
    child = mandate.delegate(root, planner_key, to_key=worker_key.public_key, to_agent=worker_id,
                             capabilities=(Capability.of("files/reports/*", "read"),), ttl_ms=5 * 60_000)
    chain = planner.delegate(child)
    pending = planner.start_task(
        capabilities=[Capability.of("prod/db", "read")],
        ttl_ms=5 * 60_000,
        intent=mandate.client.tasks_pb2.Intent(text="read the production database"),
    )
    pending_id = pending.task.task_id
    assert pending.task.state == mandate.client.tasks_pb2.TASK_STATE_PENDING_APPROVAL

    url = open_console(service, ADMIN, service["data"] / "admin.key")
    browser.get(url)
    assert browser.current_url.endswith("/tasks"), browser.current_url
    assert started.task.task_id[:12] in browser.page_source
    shot(browser, "tasks")

    # The tree: two links drawn, then the worker's link revoked in the page.
    browser.get(url.split("/?")[0] + f"/tasks/{started.task.task_id}")
    nodes = browser.find_elements(By.CSS_SELECTOR, "svg.tree g.node")
    assert len(nodes) == 2
    assert not browser.find_elements(By.CSS_SELECTOR, "svg.tree g.node.revoked")
    shot(browser, "tree")
    row = browser.find_element(By.ID, f"link-{chain.leaf.id_hex}")
    row.find_element(By.CSS_SELECTOR, "form button").click()
    assert "revoked link" in notice(browser)
    revoked = browser.find_elements(By.CSS_SELECTOR, "svg.tree g.node.revoked")
    assert [n.get_attribute("data-link") for n in revoked] == [chain.leaf.id_hex]
    shot(browser, "tree-revoked")
    tree = planner.get_delegation_tree(task_id=started.task.task_id)
    states = {l.link_id: l.state for l in tree.links}
    assert states[chain.leaf.id_hex] == mandate.client.tasks_pb2.LINK_STATE_REVOKED

    # Agents.
    browser.get(url.split("/?")[0] + "/agents")
    assert worker_id in browser.page_source
    shot(browser, "agents")

    # The approvals queue: approve in the page; the task proceeds.
    browser.get(url.split("/?")[0] + "/approvals")
    shot(browser, "approvals")
    row = browser.find_element(By.CSS_SELECTOR, f'tr.approval[data-task="{pending_id}"]')
    row.find_element(By.CSS_SELECTOR, "form.approve button").click()
    assert "approved task" in notice(browser)
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr.approval[data-task="{pending_id}"]')
    task = planner.get_task(task_id=pending_id).task
    assert task.state == mandate.client.tasks_pb2.TASK_STATE_ACTIVE

    # The audit log, filtered, then followed live: a new record appears without a reload.
    base = url.split("/?")[0]
    browser.get(base + "/audit?action=link.")
    rows = browser.find_elements(By.CSS_SELECTOR, "#audit tr.record")
    assert rows and all("link." in r.text for r in rows)
    before = len(rows)
    planner.revoke_link(link_id=root.leaf.id_hex, reason="live stream check")
    deadline = time.monotonic() + 10
    while len(browser.find_elements(By.CSS_SELECTOR, "#audit tr.record")) == before:
        assert time.monotonic() < deadline, "the live stream never appended the new record"
        time.sleep(0.1)
    assert "live stream check" in browser.find_element(By.ID, "audit").text
    shot(browser, "audit")

    # The access review: who can, the exposure report and its chart.
    browser.get(base + "/access?action=read&resource=prod/db&window=1h")
    who = browser.find_elements(By.CSS_SELECTOR, "tr.who")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in who] == [planner_id]
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")
    assert planner_id in browser.find_element(By.CSS_SELECTOR, "table.exposure").text
    shot(browser, "access")


def test_sessions_form_tokens_and_read_only_are_enforced(service: dict, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    url = open_console(service, ADMIN, service["data"] / "admin.key")
    base = url.split("/?")[0]

    def status(request: urllib.request.Request) -> int:
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    # No session cookie, a wrong secret, another Host: refused.
    assert status(urllib.request.Request(base + "/tasks")) == 403
    assert status(urllib.request.Request(base + "/?session=" + "0" * 64)) == 403
    port = base.rsplit(":", 1)[1]
    assert status(urllib.request.Request(base + "/tasks", headers={"Host": f"evil.example:{port}"})) == 421
    # With the session but without the form token: refused, nothing revoked.
    browser.get(url)
    cookie = browser.get_cookie("mandate_console")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # The printed address opens one session: again (from history, say), it is refused,
    # and the cookie is not the secret it carried.
    assert status(urllib.request.Request(url)) == 403
    assert cookie["value"] not in url
    headers = {"Cookie": f"mandate_console={cookie['value']}", "Content-Type": "application/x-www-form-urlencoded"}
    forged = urllib.request.Request(base + "/links/" + "ab" * 16 + "/revoke", data=b"reason=x", headers=headers, method="POST")
    assert status(forged) == 403
    forged = urllib.request.Request(base + "/links/" + "ab" * 16 + "/revoke", data=b"reason=x&csrf=" + b"0" * 64, headers=headers, method="POST")
    assert status(forged) == 403
    # Another site's form, even with a token: refused by origin.
    other = urllib.request.Request(
        base + "/links/" + "ab" * 16 + "/revoke",
        data=b"reason=x",
        headers={**headers, "Origin": "http://evil.example"},
        method="POST",
    )
    assert status(other) == 403

    # An auditor's console draws no action and refuses every POST.
    auditor_id, _, auditor_key = service["auditor"]
    ro = open_console(service, auditor_id, auditor_key)
    browser.get(ro)
    assert "read-only" in browser.find_element(By.CSS_SELECTOR, "header .who").text
    browser.get(ro.split("/?")[0] + "/approvals")
    assert not browser.find_elements(By.CSS_SELECTOR, "form button")
    cookie = browser.get_cookie("mandate_console")
    post = urllib.request.Request(
        ro.split("/?")[0] + "/tasks/" + "ab" * 16 + "/complete",
        data=b"",
        headers={"Cookie": f"mandate_console={cookie['value']}"},
        method="POST",
    )
    assert status(post) == 403
