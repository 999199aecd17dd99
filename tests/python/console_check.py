"""The web console in a real headless Chromium (Debian's chromium and chromedriver, driven by
selenium), against a running hearth with API keys.

Usage: console_check.py BASE_URL ADMIN_KEY READ_KEY PDF_PATH SCREENSHOT_DIR

Without a key the console shows only the key prompt; a wrong key is refused; with the admin key
the PDF is uploaded through the file input, ingested to `completed` with its page count, a
question is answered as a stream with a "file, page" citation, the citation opens that page's text
with the cited passage marked and, above it, the page itself as an image rendered by hearth (alt text
"file, page N", the passage highlighted, its blob: URL revoked on close; it fits a phone's width too), a follow-up carries previous_response_id, and the models and metrics
tabs show the served model and live numbers. With a read key, uploading and asking are disabled.
At a phone's width nothing scrolls sideways. No Content-Security-Policy violation is logged.
Screenshots go to SCREENSHOT_DIR. Exits non-zero with a message on the first failed check.
"""
import json
import os
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from checks import check

QUESTION = "How much salt goes into the country loaf?"  # examples/bread-guide.pdf, page 2

# Imports two of the console's modules in the page and runs their pure functions.
UNITS = r"""
const done = arguments[arguments.length - 1];
const base = document.querySelector('script[type=module]').src.replace(/app\.js$/, '');
Promise.all([import(base + 'prometheus.js'), import(base + 'preview.js')]).then(([prom, preview]) => {
  const m = prom.parse('# HELP x_total x\n# TYPE x counter\nx_total{model="a",le="0.5"} 3\nx_total{model="b"} 4.5\ny 1e3 1700000000\nz{a="q\\"uo,te"} +Inf\n');
  const laid = preview.layOut([{ text: 'abcdef', char_start: 10, char_end: 16 }, { text: 'defghi', char_start: 13, char_end: 19 }]);
  done({ sum: prom.sum(m, 'x_total'), y: prom.sum(m, 'y'), label: m.get('z')[0].labels.a, inf: m.get('z')[0].value === Infinity,
         laid: laid.chars.join(''), start: laid.start, bad: preview.layOut([{ text: 'ab', char_start: 0, char_end: 5 }]),
         hl: preview.highlightText('  a  b\n c '), long: preview.highlightText('word '.repeat(400)).length,
         pdf: preview.hasPageImage({ page: 2, filename: 'X.PDF' }), md: preview.hasPageImage({ page: 1, filename: 'n.md' }),
         nopage: preview.hasPageImage({ page: null, filename: 'a.pdf' }) });
}).catch((e) => done({ error: String(e) }));
"""


class Console:
    def __init__(self, base, shots):
        os.environ["SE_OFFLINE"] = "true"
        self.base, self.shots = base, shots
        self.profile = tempfile.TemporaryDirectory(prefix="hearth-console-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-popup-blocking", "--window-size=1280,800", f"--user-data-dir={self.profile.name}"]:
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        self.driver.set_window_size(1280, 800)
        self.logs = []

    def close(self):
        self.driver.quit()
        self.profile.cleanup()

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def shown(self, css):
        found = self.all(css)
        return bool(found) and found[0].is_displayed()

    def wait(self, what, condition, timeout=30.0, every=0.1):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = condition()
            except Exception as e:  # an element replaced while we looked: look again
                last = e
            if last and not isinstance(last, Exception):
                return last
            time.sleep(every)
        self.shot("failed")
        check(False, f"{what} (waited {timeout:.0f} s; last: {last!r})")

    def shot(self, name):
        path = os.path.join(self.shots, f"{name}.png")
        self.driver.save_screenshot(path)
        print(f"screenshot: {path}")

    def collect_logs(self):
        self.logs.extend(self.driver.get_log("browser"))

    def enter_key(self, key):
        field = self.find("#key-input")
        field.clear()
        field.send_keys(key)
        self.find("#key-submit").click()

    def tab(self, name):
        self.find(f"#tab-{name}").click()
        self.wait(f"the {name} panel shows", lambda: self.shown(f"#panel-{name}"))


def page_image(c, pdf_name):
    """The preview's page image once it has loaded, checked: alt text, blob: source, highlight, fit."""
    loaded = "return arguments[0].complete && arguments[0].naturalWidth > 0"
    imgs = c.wait("the page image is shown above the text", lambda: [i for i in c.all("#preview-figure img") if c.js(loaded, i)], timeout=60)
    img = imgs[0]
    check(img.get_attribute("alt") == f"{pdf_name}, page 2", f"the image's alt text names the page: {img.get_attribute('alt')!r}")
    check(img.get_attribute("src").startswith("blob:"), f"the image is shown from a blob: URL: {img.get_attribute('src')!r}")
    check(img.get_attribute("data-highlight") in ("whole", "partial"), f"the cited passage is highlighted on the page: {img.get_attribute('data-highlight')!r}")
    natural, shown, pane = c.js("const i = arguments[0]; return [i.naturalWidth, i.getBoundingClientRect().width, document.querySelector('#preview').clientWidth]", img)
    check(natural >= 400 and shown <= pane + 1, f"the image ({natural} px) scales to the pane: {shown:.0f} of {pane} px")
    check("highlighted" in c.find("#preview-figure figcaption").text, f"the caption says so: {c.find('#preview-figure figcaption').text!r}")
    return img


def blob_state(c, url):
    """'alive' when an image loads from `url`, 'revoked' when it does not (img-src allows blob:)."""
    return c.driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; const i = new Image();"
        "i.onload = () => done('alive'); i.onerror = () => done('revoked'); i.src = arguments[0];", url)


def api_get(base, path, key):
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


def main():
    base, admin, read, pdf, shots = sys.argv[1:6]
    os.makedirs(shots, exist_ok=True)
    pdf_name = os.path.basename(pdf)
    c = Console(base, shots)
    try:
        run(c, base, admin, read, pdf, pdf_name)
    finally:
        c.close()
    print("all console checks passed")


def run(c, base, admin, read, pdf, pdf_name):
    # No key: the prompt, and nothing else.
    c.driver.get(base + "/")
    c.wait("the key prompt shows without a key", lambda: c.shown("#key-prompt"))
    check(not c.shown("#tabs") and all(not p.is_displayed() for p in c.all("[role=tabpanel]")), "without a key no section is shown")
    check(c.find("label[for=key-input]").text == "API key", "the key field has a label")
    c.shot("01-key-prompt")

    c.enter_key("not-a-key-of-this-server-0000000000")
    c.wait("a wrong key is refused with a message", lambda: "did not accept" in c.find("#key-error").text)
    check(not c.shown("#tabs"), "a wrong key shows no section")

    c.enter_key(admin)
    c.wait("the admin key opens the console", lambda: c.shown("#tabs") and "admin" in c.find("#who").text)
    check(c.js("return sessionStorage.getItem('hearth.console.key')") == admin, "the key is kept in sessionStorage")

    # The page's own parsers, run in the browser: the Prometheus text and the page layout of chunks.
    units = c.driver.execute_async_script(UNITS)
    check("error" not in units, f"the console's modules load: {units}")
    check(units["sum"] == 7.5 and units["y"] == 1000 and units["label"] == 'q"uo,te' and units["inf"], f"Prometheus text is parsed: {units}")
    check(units["laid"] == "abcdefghi" and units["start"] == 10 and units["bad"] is None, f"overlapping chunks are laid out by offset: {units}")
    check(units["hl"] == "a b c" and units["long"] <= 1500 and units["long"] > 1400, f"the passage to highlight is tidied and bounded: {units}")
    check(units["pdf"] and not units["md"] and not units["nopage"], f"only a PDF's page gets an image: {units}")

    # Library: a new store, the PDF through the file input, ingested.
    c.tab("library")
    c.wait("the watched folder is listed", lambda: "→ inbox" in c.find("#watched").text)
    c.find("#store-name").send_keys("console")
    c.find("#store-create").click()
    c.wait("the new store is selected", lambda: c.find("#files-title").text == "Files of console")
    c.find("#upload-input").send_keys(pdf)
    row = f"#files-table tr[data-status]"
    c.wait("the uploaded PDF is listed", lambda: pdf_name in c.find("#files-table tbody").text)
    c.wait("the PDF is ingested (completed)", lambda: c.find(row).get_attribute("data-status") == "completed", timeout=180, every=0.3)
    c.wait("its page count is shown", lambda: c.find(f"{row} td[data-pages]").text == "3", timeout=30)
    check("completed" in c.find(row).text, "the status is shown in words")
    c.shot("02-library")

    # Ask: streamed, cited, previewed.
    c.tab("ask")
    c.wait("the chat model is offered", lambda: c.find("#ask-model").get_attribute("value"))
    box = c.wait("the console store is offered", lambda: [b for b in c.all("#ask-stores input") if b.find_element(By.XPATH, "..").text.strip() == "console"])
    if not box[0].is_selected():
        box[0].click()
    for other in c.all("#ask-stores input"):
        if other.is_selected() and other != box[0]:
            other.click()
    c.find("#ask-input").send_keys(QUESTION)
    c.find("#ask-input").send_keys(Keys.ENTER)
    answer = "#conversation li.assistant:last-child"
    partial = c.wait("the answer streams in (text while still streaming)",
                     lambda: c.find(answer).get_attribute("data-state") == "streaming" and c.find(f"{answer} .text").text.strip(),
                     timeout=120, every=0.02)
    print(f"streaming, so far: {partial!r}")
    c.wait("the answer completes", lambda: c.find(answer).get_attribute("data-state") in ("done", "failed"), timeout=180, every=0.2)
    check(c.find(answer).get_attribute("data-state") == "done", f"the answer completed: {c.find(answer).text!r}")
    final = c.find(f"{answer} .text").text
    check(len(final) > len(partial), f"more text arrived after the first delta ({len(partial)} -> {len(final)} characters)")
    cites = [b.text for b in c.all(f"{answer} .citations button")]
    check(f"{pdf_name}, page 2" in cites, f"the answer cites {pdf_name}, page 2: {cites}")
    c.shot("03-answer")

    button = [b for b in c.all(f"{answer} .citations button") if b.text == f"{pdf_name}, page 2"][0]
    button.click()
    c.wait("the preview opens", lambda: c.shown("#preview") and "page 2" in c.find("#preview-title").text)
    mark = c.wait("the cited passage is marked", lambda: c.all("#preview-body mark"))
    check("10 grams of salt" in " ".join(m.text for m in c.all("#preview-body mark")), f"the marked passage is page 2's: {mark[0].text!r}")
    body = c.find("#preview-body").text
    check("wild yeast" not in body and "cast iron pot" not in body, f"only page 2 is shown (not page 1's starter or page 3's pot): {body!r}")
    check(c.driver.switch_to.active_element == c.find("#preview-title"), "the preview takes the focus")
    img = page_image(c, pdf_name)
    blob = img.get_attribute("src")
    check(blob_state(c, blob) == "alive", "the image's blob: URL loads while the preview is open")
    c.js("window.scrollTo(0, 0)")  # the click scrolled to the button; the picture starts at the question
    c.shot("04-preview")
    c.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    c.wait("Escape closes the preview", lambda: not c.shown("#preview"))
    check(blob_state(c, blob) == "revoked", "closing the preview revokes the image's blob: URL")

    first_id = c.find(answer).get_attribute("data-response-id")
    c.find("#ask-input").send_keys("Repeat that code once more.")
    c.find("#ask-send").click()
    c.wait("the follow-up completes", lambda: len(c.all("#conversation li.assistant")) == 2
           and c.find(answer).get_attribute("data-state") in ("done", "failed"), timeout=180, every=0.2)
    check(c.find(answer).get_attribute("data-state") == "done", "the follow-up completed")
    second = api_get(base, "/v1/responses/" + c.find(answer).get_attribute("data-response-id"), admin)
    check(second["previous_response_id"] == first_id, f"the follow-up sent previous_response_id {first_id}: {second['previous_response_id']}")

    # Models and metrics.
    c.tab("models")
    card = c.wait("the chat model's card", lambda: c.all("[data-model='smollm2-135m-instruct']"))
    check("Runs on" in card[0].text and "Context" in card[0].text, f"placement and context are shown: {card[0].text!r}")
    c.shot("05-models")
    c.tab("metrics")
    c.wait("throughput is read from /metrics", lambda: c.find("#chart-throughput .value").text not in ("…", "–"), timeout=15)
    c.wait("two scrapes draw a line", lambda: c.all("#chart-kv polyline"), timeout=15)
    ttft = c.find("#chart-ttft .value").text
    check(ttft.endswith("ms") or ttft.endswith(" s"), f"time to first token is shown: {ttft!r}")
    c.shot("06-metrics")

    # Bench reports: a local HTML file opens in a new tab.
    report = os.path.join(c.profile.name, "report.html")
    with open(report, "w") as f:
        f.write("<!doctype html><title>bench report</title><h1>hearth bench</h1>")
    c.tab("reports")
    c.find("#report-input").send_keys(report)
    c.wait("the report opens in a new tab", lambda: len(c.driver.window_handles) == 2)
    main_window = c.driver.current_window_handle
    c.driver.switch_to.window([w for w in c.driver.window_handles if w != main_window][0])
    c.wait("the report's content is shown", lambda: c.driver.title == "bench report")
    c.driver.close()
    c.driver.switch_to.window(main_window)

    # Phone width: nothing scrolls sideways.
    c.driver.set_window_size(390, 844)
    for name in ["ask", "library", "metrics"]:
        c.tab(name)
        time.sleep(0.3)
        overflow = c.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        check(overflow <= 1, f"{name} fits a phone-width window ({overflow} px too wide)")
        c.shot(f"07-phone-{name}")
    # The page preview at a phone's width: the image scales to the pane.
    c.tab("ask")
    first_answer = c.all("#conversation li.assistant")[0]
    [b for b in first_answer.find_elements(By.CSS_SELECTOR, ".citations button") if b.text == f"{pdf_name}, page 2"][0].click()
    img = page_image(c, pdf_name)
    c.js("arguments[0].scrollIntoView()", img)
    time.sleep(0.3)
    overflow = c.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    check(overflow <= 1, f"the page preview fits a phone-width window ({overflow} px too wide)")
    c.shot("07-phone-preview")
    c.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    c.wait("Escape closes the preview", lambda: not c.shown("#preview"))
    c.driver.set_window_size(1280, 800)
    c.collect_logs()

    # A read key: the library is shown, uploading and asking are not possible.
    c.find("#forget-key").click()
    c.wait("forgetting the key brings the prompt back", lambda: c.shown("#key-prompt"))
    c.enter_key(read)
    c.wait("the read key opens the console", lambda: c.shown("#tabs") and "read" in c.find("#who").text)
    c.tab("library")
    store = c.wait("the read key sees the stores", lambda: [b for b in c.all("#stores-table button.linklike") if b.text == "console"])
    store[-1].click()
    c.wait("the read key sees the files", lambda: pdf_name in c.find("#files-table tbody").text)
    check(not c.find("#upload-input").is_enabled(), "the file input is disabled for a read key")
    check("may not add files" in c.find("#drop-text").text, "the drop zone says why")
    check(not c.find("#store-create").is_enabled(), "creating a store is disabled for a read key")
    check(all(not b.is_enabled() for b in c.all("#files-table button")), "removing is disabled for a read key")
    c.tab("ask")
    check(not c.find("#ask-input").is_enabled() and "infer" in c.find("#ask-status").text, "asking is disabled for a read key, with the reason")
    c.tab("metrics")
    c.wait("metrics say they need an admin key", lambda: "admin" in c.find("#metrics-note").text)
    c.shot("08-read-key")

    c.collect_logs()
    violations = [e["message"] for e in c.logs if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]
    check(not violations, f"no Content-Security-Policy violations: {violations}")


if __name__ == "__main__":
    main()
