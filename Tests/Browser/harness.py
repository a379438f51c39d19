"""Helpers of the browser tests: Chromium sessions, waits, the gateway restart, REST calls.

The stack is started by deploy/local/browser-test, which exports where it is:
AIIM_GATEWAY_1_PORT / AIIM_GATEWAY_2_PORT (two gateways, DEV_LOGIN=true), AIIM_BROWSER_STATE
(infrastructure state: pids/, logs/), AIIM_BIN_DIR (the built executables).
"""

import os
import signal
import subprocess
import time
import uuid

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

STATE = os.environ["AIIM_BROWSER_STATE"]
PORTS = {1: int(os.environ["AIIM_GATEWAY_1_PORT"]), 2: int(os.environ["AIIM_GATEWAY_2_PORT"])}
TIMEOUT = float(os.environ.get("AIIM_BROWSER_TIMEOUT", "20"))


def base(gateway=1):
    return f"http://127.0.0.1:{PORTS[gateway]}"


def unique(name):
    """A user name of its own per run (the database persists between tests)."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


class Browser:
    """One headless Chromium signed in as one user (the dev sign-in link)."""

    def __init__(self, user, gateway=1, name=None):
        options = Options()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900",
                    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                    "--autoplay-policy=no-user-gesture-required", "--disable-gpu"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        self.user = user
        self.gateway = gateway
        self.name = name or user
        self.driver.get(f"{base(gateway)}/#dev={user}")
        self.wait(lambda: self.js("return document.body.dataset.online") == "true", "connected")

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css):
        nodes = self.finds(css)
        return nodes[0].text if nodes else ""

    def wait(self, condition, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                value = condition()
                if value:
                    return value
            except Exception as e:  # the DOM is re-rendered under us: try again
                last = e
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: timed out waiting for {what}" + (f" (last error: {last})" if last else ""))

    def wait_text(self, css, text, timeout=TIMEOUT):
        return self.wait(lambda: any(text in n.text for n in self.finds(css)), f"'{text}' in {css}", timeout)

    def click(self, css, what=None):
        """Clicks the element, again if a re-render replaced it under us (stale element)."""
        def attempt():
            nodes = self.finds(css)
            if not nodes:
                return False
            nodes[0].click()
            return True
        self.wait(attempt, what or f"click {css}")

    def open_conversation(self, title_part):
        def click():
            for b in self.finds("#conv-list button.conv"):
                if title_part in b.text:
                    b.click()
                    return True
            return False
        self.wait(click, f"conversation '{title_part}' in the list")

    def send(self, text):
        box = self.find("#compose")
        box.send_keys(text)
        self.find("#send").click()

    def messages(self):
        return [n.text for n in self.finds("#message-list li .bubble")]

    def token(self):
        return self.js("return sessionStorage.getItem('aiim.token')")

    def screenshot(self, folder, test):
        os.makedirs(folder, exist_ok=True)
        stem = os.path.join(folder, f"{test}-{self.name}")
        self.driver.save_screenshot(stem + ".png")
        with open(stem + ".log", "w") as f:
            for entry in self.driver.get_log("browser"):
                f.write(f"{entry['level']} {entry['message']}\n")

    def close(self):
        self.driver.quit()


def rest(method, path, token, body=None, gateway=2):
    r = httpx.request(method, f"{base(gateway)}/api/aiim{path}", json=body,
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()
    return r.json() if r.status_code != 204 else None


def dev_token(user, gateway=2):
    r = httpx.post(f"{base(gateway)}/api/aiim/dev/login", json={"user": user}, timeout=10)
    r.raise_for_status()
    return r.json()["token"]


def restart_gateway(n, down_while=None):
    """Stops gateway N (SIGTERM: its sockets close), runs `down_while()`, starts it again on the
    same port. The new pid replaces the old one in pids/ so the script stops it at the end."""
    pidfile = os.path.join(STATE, "pids", f"svc-aiim-gateway-{n}.pid")
    pid = int(open(pidfile).read().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    if down_while:
        down_while()
    env = dict(os.environ, INSTANCE_ID=f"gateway-{n}-b", HTTP_HOST="127.0.0.1", HTTP_PORT=str(PORTS[n]))
    log = open(os.path.join(STATE, "logs", f"aiim-gateway-{n}.log"), "a")
    proc = subprocess.Popen([os.path.join(os.environ["AIIM_BIN_DIR"], "aiim-gateway")], env=env,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    with open(pidfile, "w") as f:
        f.write(f"{proc.pid}\n")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base(n)}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"gateway {n} did not come back")
