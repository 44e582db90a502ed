"""Drive the Palisade web UI in a real headless Chromium (Selenium WebDriver).

Run by tests/tests/api/ui.rs, which starts the server, loads the data and passes
everything through one JSON argument:

  {"base": "http://127.0.0.1:PORT", "username", "password", "api_token",
   "incident": "<id>", "alert": "<id>", "query": "...", "xss_paths": [...],
   "screenshots": "<dir or null>"}

Prints one JSON object with what it checked; exits 1 with the failing step on stderr.
"""

import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

cfg = json.loads(sys.argv[1])
base = cfg["base"]
checked = {}


def fail(step, detail=""):
    sys.stderr.write(f"ui_check: {step} failed: {detail}\n")
    try:
        sys.stderr.write(f"url: {driver.current_url}\n")
        sys.stderr.write(driver.find_element(By.TAG_NAME, "body").text[:2000] + "\n")
    except Exception:
        pass
    sys.exit(1)


def wait(cond, step, timeout=15):
    try:
        return WebDriverWait(
            driver,
            timeout,
            ignored_exceptions=[NoSuchElementException, StaleElementReferenceException],
        ).until(cond)
    except Exception as e:
        fail(step, repr(e))


def shot(name):
    if cfg.get("screenshots"):
        driver.save_screenshot(os.path.join(cfg["screenshots"], name + ".png"))


def no_xss(path):
    """Nothing from the corpus became markup or ran."""
    time.sleep(0.3)
    try:
        alert = driver.switch_to.alert
        fail("xss " + path, "an alert dialog opened: " + alert.text)
    except NoAlertPresentException:
        pass
    ran = driver.execute_script("return window.__xss === undefined ? null : window.__xss;")
    if ran is not None:
        fail("xss " + path, "a payload ran")
    injected = driver.execute_script("return document.querySelectorAll('[data-xss]').length;")
    if injected:
        fail("xss " + path, f"{injected} injected elements")
    scripts = driver.execute_script(
        "return Array.from(document.scripts).map(s => s.src).filter(s => !s.endsWith('/ui/app.js')).length;"
    )
    if scripts:
        fail("xss " + path, f"{scripts} foreign script elements")
    links = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"
        ".filter(h => !/^https?:/i.test(h)).length;"
    )
    if links:
        fail("xss " + path, f"{links} links that are not http(s)")


def api(method, path, body=None):
    req = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": "Bearer " + cfg["api_token"], "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("PALISADE_CHROMIUM", "/usr/bin/chromium")
for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1280,720", "--disable-extensions"]:
    options.add_argument(arg)
service = Service(os.environ.get("PALISADE_CHROMEDRIVER", "/usr/bin/chromedriver"))
driver = webdriver.Chrome(service=service, options=options)
try:
    # --- Sign in: any page sends an anonymous browser to /login, then back.
    driver.get(base + "/incidents?state=triggered")
    wait(EC.presence_of_element_located((By.ID, "username")), "login form")
    if "/login" not in driver.current_url:
        fail("login redirect", driver.current_url)
    shot("login")
    driver.find_element(By.ID, "username").send_keys(cfg["username"])
    driver.find_element(By.ID, "password").send_keys("wrong password")
    driver.find_element(By.ID, "sign-in").click()
    wait(EC.presence_of_element_located((By.ID, "login-error")), "wrong password message")
    driver.find_element(By.ID, "username").clear()
    driver.find_element(By.ID, "username").send_keys(cfg["username"])
    driver.find_element(By.ID, "password").send_keys(cfg["password"])
    driver.find_element(By.ID, "sign-in").click()
    wait(EC.url_contains("/incidents?state=triggered"), "back to the page asked for")
    wait(EC.presence_of_element_located((By.CSS_SELECTOR, "a.incident-link")), "incidents listed")
    shot("incidents")
    checked["login"] = True

    # --- Search, keyboard, open an event.
    q = cfg["query"]
    driver.get(base + "/search?q=" + urllib.request.quote(q) + "&from=now-1h&to=now&facets=attributes.user.name")
    wait(EC.presence_of_element_located((By.ID, "total")), "search results")
    facet = driver.find_elements(By.CSS_SELECTOR, "a.facet-value")
    if not facet:
        fail("facets", "no top values for attributes.user.name")
    facet[0].click()
    wait(lambda d: "attributes.user.name" in urllib.request.unquote(d.current_url), "facet narrows the query")
    checked["facet"] = urllib.request.unquote(driver.current_url)
    driver.get(base + "/search?q=" + urllib.request.quote(q) + "&from=now-1h&to=now")
    wait(EC.presence_of_element_located((By.ID, "total")), "search results")
    total = driver.find_element(By.ID, "total").text
    if total.startswith("0 "):
        fail("search", total)
    shot("search")
    driver.find_element(By.TAG_NAME, "body").send_keys("/")
    if driver.switch_to.active_element.get_attribute("id") != "q":
        fail("keyboard /", "the query box is not focused")
    driver.execute_script("document.activeElement.blur();")
    ActionChains(driver).send_keys("j").perform()
    if not driver.find_elements(By.CSS_SELECTOR, ".nav-row.current"):
        fail("keyboard j", "no current row")
    before = driver.current_url
    chart = driver.find_element(By.CSS_SELECTOR, "#histogram svg")
    width = chart.size["width"]
    ActionChains(driver).move_to_element_with_offset(chart, int(width * 0.1), 0).click_and_hold() \
        .move_by_offset(int(width * 0.3), 0).release().perform()
    wait(lambda d: d.current_url != before and "from=20" in d.current_url, "histogram zoom")
    checked["zoom"] = driver.current_url
    driver.get(before)
    wait(EC.presence_of_element_located((By.CSS_SELECTOR, "a.event-link")), "event links")
    driver.find_element(By.CSS_SELECTOR, "a.event-link").click()
    wait(EC.presence_of_element_located((By.ID, "event-attributes")), "event page")
    shot("event")
    checked["event"] = driver.current_url

    # --- Live tail: a record ingested while the page is open appears on top.
    driver.get(base + "/search?q=tailme&from=now-1h&to=now&tail=1")
    wait(EC.presence_of_element_located((By.ID, "tail-state")), "live tail on")
    time.sleep(0.5)
    body = {"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"logRecords": [
        {"timeUnixNano": str(time.time_ns()), "severityNumber": 9, "severityText": "INFO",
         "body": {"stringValue": "tailme live record"}}]}]}]}
    req = urllib.request.Request(cfg["otlp"] + "/v1/logs", data=json.dumps(body).encode(), method="POST",
                                 headers={"authorization": "Bearer " + cfg["ingest_token"],
                                          "content-type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()
    wait(lambda d: "tailme live record" in d.find_element(By.ID, "results").text, "live tail row", timeout=20)
    checked["tail"] = True

    # --- From an alert to its incident; acknowledge with the keyboard; notes.
    driver.get(base + "/alerts/" + cfg["alert"])
    wait(EC.presence_of_element_located((By.ID, "alert-incident")), "alert page links its incident")
    shot("alert")
    driver.find_element(By.ID, "alert-incident").click()
    wait(EC.presence_of_element_located((By.ID, "timeline")), "incident page")
    if cfg["incident"] not in driver.current_url:
        fail("incident from alert", driver.current_url)
    ActionChains(driver).send_keys("a").perform()
    wait(lambda d: d.find_element(By.ID, "incident-state").text == "acknowledged", "acknowledge (a)")
    checked["acknowledged"] = True
    driver.find_element(By.ID, "note-text").send_keys("checked the **node** from the UI")
    driver.find_element(By.ID, "add-note").click()
    wait(lambda d: "checked the" in d.find_element(By.ID, "timeline").text, "note from the form")
    # A note added elsewhere appears live (Server-Sent Events), without a reload.
    time.sleep(1.0)
    api("POST", f"/api/v1/incidents/{cfg['incident']}/notes", {"text": "live from another responder"})
    wait(lambda d: "live from another responder" in d.find_element(By.ID, "timeline").text,
         "live note", timeout=20)
    fresh = driver.find_elements(By.CSS_SELECTOR, "#timeline li.fresh")
    if not fresh:
        fail("live note", "the entry did not arrive over the stream")
    shot("incident")
    checked["live_note"] = True

    # --- Silence from the alert.
    driver.get(base + "/alerts/" + cfg["alert"])
    wait(EC.presence_of_element_located((By.ID, "silence-comment")), "silence form")
    driver.find_element(By.ID, "silence-comment").send_keys("maintenance, from the UI")
    driver.find_element(By.ID, "silence").click()
    wait(EC.url_contains("/silences"), "silences page")
    if "maintenance, from the UI" not in driver.find_element(By.TAG_NAME, "body").text:
        fail("silence", "not listed")
    checked["silence"] = True

    # --- Rules: a backtest with its chart before saving; validation errors inline;
    # switch a shipped rule off and on.
    driver.get(base + "/rules/" + cfg["rule"])
    wait(EC.presence_of_element_located((By.ID, "rule-yaml")), "rule editor")
    driver.find_element(By.ID, "run-backtest").click()
    wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#backtest svg")), "backtest chart")
    summary = driver.find_element(By.CSS_SELECTOR, "#backtest h2").text
    if "would have fired" not in summary or summary.startswith("Backtest: 0 "):
        fail("backtest", summary)
    checked["backtest"] = summary
    no_xss("backtest of " + cfg["rule"])
    shot("rule-backtest")
    editor = driver.find_element(By.ID, "rule-yaml")
    editor.clear()
    editor.send_keys("apiVersion: palisade/v1\nid: " + cfg["rule"] + "\ntitle: x\nseverity: loud\nkind: match\nquery: 'x'\n")
    driver.find_element(By.ID, "validate").click()
    wait(EC.presence_of_element_located((By.ID, "rule-error")), "inline validation error")
    checked["validation"] = driver.find_element(By.ID, "rule-error").text
    driver.get(base + "/rules/" + cfg["rule"])
    wait(EC.presence_of_element_located((By.ID, "toggle")), "toggle")
    driver.find_element(By.ID, "toggle").click()
    wait(lambda d: "disabled" in d.find_element(By.CSS_SELECTOR, "p.meta").text, "rule disabled")
    driver.find_element(By.ID, "toggle").click()
    wait(lambda d: "enabled" in d.find_element(By.CSS_SELECTOR, "p.meta").text, "rule enabled again")
    checked["toggle"] = True

    # --- Channels: add a signed webhook, send a test, see the receiver's answer.
    driver.get(base + "/channels")
    wait(EC.presence_of_element_located((By.ID, "channel-form")), "channel form")
    driver.find_element(By.ID, "channel-name").send_keys("ui-hook")
    driver.find_element(By.ID, "channel-url").send_keys(cfg["receiver"])
    driver.find_element(By.NAME, "secret").send_keys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    driver.find_element(By.ID, "add-channel").click()
    wait(EC.presence_of_element_located((By.CSS_SELECTOR, "button.test-channel")), "channel listed")
    driver.find_element(By.CSS_SELECTOR, "button.test-channel").click()
    wait(EC.presence_of_element_located((By.ID, "test-answer")), "test answer")
    answer = driver.find_element(By.ID, "test-answer").text
    if "delivered" not in answer or "HTTP 202" not in answer:
        fail("channel test", answer)
    checked["channel_test"] = answer
    # A refused destination is named.
    driver.find_element(By.ID, "channel-name").send_keys("metadata")
    driver.find_element(By.ID, "channel-url").send_keys("http://169.254.169.254/latest")
    driver.find_element(By.NAME, "secret").send_keys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    driver.find_element(By.ID, "add-channel").click()
    wait(EC.presence_of_element_located((By.ID, "channel-error")), "refused destination")
    if "url" not in driver.find_element(By.ID, "channel-error").text:
        fail("refused destination", driver.find_element(By.ID, "channel-error").text)

    # --- A silence from scratch.
    driver.get(base + "/silences")
    driver.find_element(By.ID, "silence-matchers").send_keys("rule=ui-shell, attributes.user.name=~x1.*")
    driver.find_element(By.ID, "new-silence-comment").send_keys("deploy window")
    driver.find_element(By.ID, "add-silence").click()
    wait(lambda d: "deploy window" in d.find_element(By.TAG_NAME, "body").text, "silence listed")
    driver.find_element(By.ID, "silence-matchers").send_keys("no operator here")
    driver.find_element(By.ID, "new-silence-comment").send_keys("x")
    driver.find_element(By.ID, "add-silence").click()
    wait(EC.presence_of_element_located((By.ID, "silence-error")), "bad matcher named")

    # --- A token, shown once.
    driver.get(base + "/admin")
    driver.find_element(By.ID, "token-name").send_keys("from-the-ui")
    driver.find_element(By.ID, "create-token").click()
    wait(EC.presence_of_element_located((By.ID, "new-token")), "new token shown")
    checked["token"] = driver.find_element(By.ID, "new-token").text
    driver.get(base + "/admin")
    if checked["token"] in driver.page_source:
        fail("token", "shown twice")
    driver.find_element(By.ID, "user-name").send_keys("ui-viewer")
    driver.find_element(By.ID, "user-password").send_keys("a long enough password")
    driver.find_element(By.ID, "create-user").click()
    wait(lambda d: "ui-viewer" in d.find_element(By.TAG_NAME, "table").text, "user added")
    checked["user"] = True

    # --- Every other page renders.
    for name in ["rules", "silences", "channels", "kubernetes", "admin"]:
        driver.get(base + "/" + name)
        wait(EC.presence_of_element_located((By.TAG_NAME, "h1")), name)
        shot(name)

    # --- The XSS corpus in every view.
    for path in cfg["xss_paths"]:
        driver.get(base + path)
        wait(EC.presence_of_element_located((By.TAG_NAME, "h1")), "xss page " + path)
        no_xss(path)
        # Expand every detail so hidden content renders too.
        driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true);")
        no_xss(path)
    checked["xss_pages"] = len(cfg["xss_paths"])

    # --- Sign out ends the session.
    driver.get(base + "/incidents")
    driver.find_element(By.CSS_SELECTOR, "form.who button").click()
    wait(EC.url_contains("/login"), "sign out")
    driver.get(base + "/incidents")
    wait(EC.url_contains("/login"), "signed out stays out")
    checked["logout"] = True
finally:
    driver.quit()

print(json.dumps(checked))
