"""Headless Chromium screenshots over the DevTools protocol (stdlib only): page, and a flicker hovered.

Usage: python scripts/report_screenshots.py URL OUT_PREFIX [BLOCK_ID | page-only | section:BLOCK_ID]
(needs a chromium binary, e.g. the Debian package). Writes OUT_PREFIX-top.png and, for a flicker block,
OUT_PREFIX-flicker-still.png and OUT_PREFIX-flicker-hover.png; ``section:ID`` shoots that element
(e.g. a brain-mask reportlet) as OUT_PREFIX-section.png.
"""

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request


class WS:
    def __init__(self, url):
        assert url.startswith("ws://")
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.split(":")
        self.sock = socket.create_connection((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self.sock.recv(4096)
        assert b" 101 " in buf.split(b"\r\n")[0], buf
        self.rest = buf.split(b"\r\n\r\n", 1)[1]
        self.n = 0

    def _recv(self, n):
        while len(self.rest) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.rest += chunk
        out, self.rest = self.rest[:n], self.rest[n:]
        return out

    def send(self, text):
        data = text.encode()
        head = bytearray([0x81])
        mask = os.urandom(4)
        if len(data) < 126:
            head.append(0x80 | len(data))
        elif len(data) < 65536:
            head.append(0x80 | 126)
            head += struct.pack(">H", len(data))
        else:
            head.append(0x80 | 127)
            head += struct.pack(">Q", len(data))
        self.sock.sendall(bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        payload = b""
        while True:
            b0, b1 = self._recv(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv(8))[0]
            payload += self._recv(n)
            if b0 & 0x80:
                return payload.decode()

    def call(self, method, **params):
        self.n += 1
        self.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg.get("result", {})


def shot(ws, path, clip=None):
    params = {"format": "png"}
    if clip:
        params["clip"] = {**clip, "scale": 1}
    data = ws.call("Page.captureScreenshot", **params)["data"]
    with open(path, "wb") as fh:
        fh.write(base64.b64decode(data))
    print(path)


def main(url, prefix, width=int(os.environ.get("SHOT_WIDTH", "1280")),
         height=int(os.environ.get("SHOT_HEIGHT", "900"))):
    port = 9333
    profile = tempfile.mkdtemp()
    proc = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             "--disable-background-networking", "--disable-component-update", "--no-first-run",
                             f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
                             f"--window-size={width},{height}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                break
            except OSError:
                time.sleep(0.2)
        page = next(t for t in targets if t["type"] == "page")
        ws = WS(page["webSocketDebuggerUrl"])
        ws.call("Page.enable")
        ws.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        ws.call("Page.navigate", url=url)
        time.sleep(4)
        if os.environ.get("CLICK"):  # e.g. a column header of the group table, to show the sorting
            ws.call("Runtime.evaluate", expression=f"document.querySelector('{os.environ['CLICK']}').click()")
            time.sleep(0.5)
        shot(ws, f"{prefix}-top.png")
        if len(sys.argv) > 3 and sys.argv[3] == "page-only":
            return
        if len(sys.argv) > 3 and sys.argv[3].startswith("section:"):  # one block of the page, e.g. a mask reportlet
            block = sys.argv[3][len("section:"):]
            expr = (f"(function(){{var b=document.getElementById('{block}');b.scrollIntoView({{block:'start'}});"
                    "window.scrollBy(0,-60);var r=b.getBoundingClientRect();"  # below the fixed navigation bar
                    "return JSON.stringify([r.left,r.top,r.width,r.height,window.scrollY]);})()")
            left, top, w, h, sy = json.loads(
                ws.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"]["value"])
            time.sleep(1)
            shot(ws, f"{prefix}-section.png", {"x": left, "y": sy + top, "width": w, "height": h})
            return
        # a flicker block: scroll it into view, then shoot it still and hovered
        block = sys.argv[3]
        expr = (f"(function(){{var b=document.getElementById('{block}');b.scrollIntoView({{block:'start'}});"
                "window.scrollBy(0,-50);var r=b.getBoundingClientRect();"
                "var o=b.querySelector('object').getBoundingClientRect();"
                "return JSON.stringify([r.left,r.top,r.width,r.height,window.scrollY,"
                "o.left,o.top,o.width,o.height]);})()")
        left, top, w, h, sy, ol, ot, ow, oh = json.loads(
            ws.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"]["value"])
        time.sleep(1)
        clip = {"x": left, "y": sy + top, "width": w, "height": h}
        shot(ws, f"{prefix}-flicker-still.png", clip)
        # hover: the SVG's own CSS runs its flicker; the DevTools Animation domain then holds it at
        # the end of the fade (foreground transparent), so the shot shows the other image cleanly
        ws.call("Animation.enable")
        ws.call("Input.dispatchMouseEvent", type="mouseMoved", x=ol + ow * 0.3, y=ot + oh * 0.3)
        anim = None
        deadline = time.time() + 5
        while time.time() < deadline and anim is None:
            msg = json.loads(ws.recv())
            if msg.get("method") == "Animation.animationStarted":
                anim = msg["params"]["animation"]["id"]
        if anim is None:
            raise SystemExit("hovering started no animation")
        ws.call("Animation.setPaused", animations=[anim], paused=True)
        ws.call("Animation.seekAnimations", animations=[anim], currentTime=1000)
        time.sleep(0.5)
        shot(ws, f"{prefix}-flicker-hover.png", clip)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
