"""A script at the very top of the page's <head>, before Gradio's own modules load.

Gradio puts `launch(head=…)` into its config and adds it to the page once its app has started, too late for a
script that must run first. The one here must: Gradio's status tracker counts a pending event's seconds in a
`requestAnimationFrame` loop, keeping the function it found when its module loaded, and a tracker that leaves while
pending (the page's own start-up) loops at 60 frames a second for as long as the page stays open. A headless
Chromium on an idle Gradio page spent 0.065 of a core on it (`bench/page_overhead.py`): on 2 cores, a run's loss.
Its frames now come once a second (the seconds a tracker shows still count); every other frame (plotly's) as before.
"""
from __future__ import annotations

THROTTLE_STATUS_FRAMES = b"""<script>
(() => {
  const raf = window.requestAnimationFrame.bind(window), caf = window.cancelAnimationFrame.bind(window);
  const slowed = new Map();
  let next = -1;
  window.requestAnimationFrame = (cb) => {
    if (!(new Error().stack || "").includes("statustracker")) return raf(cb);
    const id = next--;
    slowed.set(id, setTimeout(() => { slowed.delete(id); raf(cb); }, 1000));
    return id;
  };
  window.cancelAnimationFrame = (id) => slowed.has(id) ? (clearTimeout(slowed.get(id)), slowed.delete(id)) : caf(id);
})();
</script>"""


def inject(html: bytes, script: bytes = THROTTLE_STATUS_FRAMES) -> bytes:
    """`html` with `script` as the first thing in its <head> (unchanged when it has no <head>)."""
    return html.replace(b"<head>", b"<head>" + script, 1)


class EarlyHead:
    """ASGI middleware: the page itself (GET /, HTML) gets `inject`ed; every other response passes untouched."""

    def __init__(self, app, script: bytes = THROTTLE_STATUS_FRAMES):
        self.app, self.script = app, script

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != "/":
            return await self.app(scope, receive, send)
        start, chunks = None, []

        async def rewrite(message):
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    start = False
                    return await send(message)
                start = message
                return None
            if start is False or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return None
            body = inject(b"".join(chunks), self.script)
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            await send({**start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        await self.app(scope, receive, rewrite)
