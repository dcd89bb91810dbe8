"""viewer.html in headless Chromium: the script renders every token, a step's tokens share the colour of the
number of tokens it committed, drafted-but-rejected tokens are in the step's hover box, and the screenshot
shows those colours. CI installs Chromium (.ci/run); without it these tests fail on CI and skip elsewhere."""

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from bench_helpers import META, make_row
from decodekit.bench.metrics import summarize
from decodekit.bench.report.viewer import choose_prompts, render_viewer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PALETTE = ["#e2e8f0", "#fde68a", "#d9f99d", "#bbf7d0", "#86efac", "#4ade80", "#22c55e"]


@pytest.fixture
def chromium(tmp_path):
    if CHROMIUM is None:
        message = "the viewer.html browser test needs Chromium: apt-get install -y chromium (then make test runs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

    def run(*args):
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={tmp_path / 'profile'}", *args],
            capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    return run


def rgb(colour: str) -> str:
    return f"rgb({int(colour[1:3], 16)}, {int(colour[3:5], 16)}, {int(colour[5:7], 16)})"


def rows():
    """One prompt; ar commits one token a step, `fast` commits 3, 1, 2 (drafting, with rejections) and
    differs from ar at token 4; hf has no step trace."""
    tokens = [11, 12, 13, 14, 15, 16]
    trace_ar = [{"committed": 1, "drafted": [], "parents": [], "accepted": []} for _ in tokens]
    trace_fast = [
        {"committed": 3, "drafted": ["w12 ", "w13 ", "w99 "], "parents": [-1, 0, 1], "accepted": [0, 1]},
        {"committed": 1, "drafted": ["REJECTED-A", "REJECTED-B"], "parents": [-1, 0], "accepted": []},
        {"committed": 2, "drafted": ["w16 ", "w17 "], "parents": [-1, 0], "accepted": [0]},
    ]
    fast_tokens = [11, 12, 13, 14, 99, 16]
    return [
        make_row("ar", 7, "qa", 1.0, tokens, trace=trace_ar, identical=True),
        make_row("fast", 7, "qa", 0.5, fast_tokens, steps=3, trace=trace_fast, identical=False, diverges_at=4),
        make_row("hf", 7, "qa", 1.2, tokens, identical=True),
        make_row("ar", 8, "math", 1.0, [5], trace=trace_ar[:1], identical=True),
    ]


class Steps(HTMLParser):
    """Collects, per method panel, its step spans: data-n, style, token texts, and the hover box's parts."""

    def __init__(self):
        super().__init__()
        self.panels: dict[str, list[dict]] = {}
        self.stack: list[tuple[str, dict]] = []
        self.panel = None
        self.step = None
        self.part = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        self.stack.append((tag, attrs))
        if "panel" in classes:
            self.panel = self.panels.setdefault(attrs["data-method"], [])
        elif "step" in classes or "untraced" in classes:
            self.step = {"n": int(attrs.get("data-n", 0)), "style": attrs.get("style", ""), "tokens": [],
                         "classes": [], "ok": [], "rejected": [], "tip": ""}
            self.panel.append(self.step)
        elif "tok" in classes:
            self.step["tokens"].append("")
            self.step["classes"].append(classes)
            self.part = "tok"
        elif "tip" in classes:
            self.part = "tip"
        elif self.part == "tip" and ("ok" in classes or "rejected" in classes):
            self.step[classes[0]].append("")

    def handle_endtag(self, tag):
        _, attrs = self.stack.pop()
        if "tok" in (attrs.get("class") or "").split():
            self.part = None

    def handle_data(self, data):
        if self.step is None:
            return
        if self.part == "tok":
            self.step["tokens"][-1] += data
        elif self.part == "tip":
            self.step["tip"] += data
            top = (self.stack[-1][1].get("class") or "").split()
            if top and top[0] in ("ok", "rejected"):
                self.step[top[0]][-1] += data


def test_default_choice_is_the_first_question_of_each_category():
    assert choose_prompts(rows(), None) == [(7, 1), (8, 1)]
    assert choose_prompts(rows(), "8") == [(8, 1)]
    assert choose_prompts(rows(), "all") == [(7, 1), (8, 1)]


def test_page_is_self_contained_and_its_data_cannot_close_the_script():
    hostile = rows()
    hostile[0]["pieces"][0] = "</script><b>&"
    page = render_viewer(hostile, summarize(hostile, META, ["ar", "fast", "hf"]), [(7, 1)])
    assert "http://" not in page and "https://" not in page and "<link" not in page
    data = json.loads(page.split('id="data">', 1)[1].split("</script>", 1)[0])
    assert data["prompts"][0]["outputs"][0]["pieces"][0] == "</script><b>&"


def test_chromium_renders_tokens_and_colours(tmp_path, chromium):
    page = tmp_path / "viewer.html"
    page.write_text(render_viewer(rows(), summarize(rows(), META, ["ar", "fast", "hf"]), [(7, 1), (8, 1)]))
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    assert 'data-rendered="yes"' in dom
    parser = Steps()
    parser.feed(dom)
    ar, fast, hf = parser.panels["ar"], parser.panels["fast"], parser.panels["hf"]

    assert [t for s in fast for t in s["tokens"]] == ["w11 ", "w12 ", "w13 ", "w14 ", "w99 ", "w16 "]
    assert [s["n"] for s in fast] == [3, 1, 2]
    for step in fast:
        assert rgb(PALETTE[step["n"] - 1]) in step["style"]
    assert all(rgb(PALETTE[0]) in s["style"] for s in ar) and len(ar) == 7  # 6 steps + the second prompt's one
    assert fast[0]["ok"] == ['"w12 "', '"w13 "'] and fast[0]["rejected"] == ['"w99 "']
    assert fast[1]["rejected"] == ['"REJECTED-A"', '"REJECTED-B"'] and fast[1]["ok"] == []
    assert "step 1: committed 3 tokens" in fast[0]["tip"]
    assert [c for s in fast for c in s["classes"]][4] == ["tok", "diverge"]
    assert len(hf) == 1 and hf[0]["n"] == 0 and "background" not in hf[0]["style"] and len(hf[0]["tokens"]) == 6
    assert "differs from ar at token 4" in dom and "no step trace" in dom

    shot = tmp_path / "shot.png"
    chromium("--virtual-time-budget=5000", "--window-size=1000,700", f"--screenshot={shot}", page.as_uri())
    import matplotlib.image

    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).round().astype(int).reshape(-1, 3).tolist()
    seen = {tuple(p) for p in pixels}
    for n in (1, 2, 3):
        colour = PALETTE[n - 1]
        assert (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)) in seen, f"no {colour} pixels"
