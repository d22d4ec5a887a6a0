#!/usr/bin/env python3
"""A screenshot of the playground once its streams have ended, through chromedriver (standard library only):

    python3 playground_screenshot.py 'http://127.0.0.1:8080/?prompt=...&run=1' out.png

Needs Debian's chromium and chromium-driver. Waits until the page has started and ended its streams."""
import base64
import json
import socket
import subprocess
import sys
import time
import urllib.request

url, out = sys.argv[1], sys.argv[2]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}"


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())["value"]


try:
    for _ in range(100):
        try:
            call("GET", "/status")
            break
        except OSError:
            time.sleep(0.1)
    session = call("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,820"]}}}})
    sid = session["sessionId"]
    call("POST", f"/session/{sid}/url", {"url": url})
    script = "return document.body.dataset.busy === '0'"
    deadline = time.time() + 60
    while not call("POST", f"/session/{sid}/execute/sync", {"script": script, "args": []}):
        if time.time() > deadline:
            sys.exit("the page's streams did not end within 60 s")
        time.sleep(0.1)
    png = call("GET", f"/session/{sid}/screenshot")
    with open(out, "wb") as f:
        f.write(base64.b64decode(png))
    call("DELETE", f"/session/{sid}")
finally:
    driver.kill()
