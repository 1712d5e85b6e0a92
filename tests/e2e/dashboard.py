#!/usr/bin/env python3
"""End-to-end browser tests of the Hedgerow dashboard, in a real headless Chromium.

Run by `tests/it/browser.rs`, which starts the real `hedgerow serve` (DNS and HTTP on
loopback), creates the accounts with `hedgerow user add`, sends a blocked query with `dig`
from the pupil's address and writes a setup file (JSON) naming all of it:

    python3 tests/e2e/dashboard.py SETUP.json

The setup file has `base` (the dashboard's URL), `dns` ([host, port]), `block_page` ([host,
port]: the block page's listener, the address blocked names resolve to), `accounts` (role ->
{name, password}: dsl, technician, approver, governor), `pupil` ({ip, device, person}) and
`staff` ({ip}), `blocked_site` (the name the pupil asked for, blocked for pupils and staff;
the upstream answers it with `blocked_site_address`), `visited` (every name the pupil looked
up), `axe` (path of axe.min.js), `screenshots` (a folder), `chromium` and `chromedriver`
(paths). `E2E_ONLY=name,name` runs only those scenarios (the breach scenario makes the breach
the keyboard scenario works on).

The browser runs on 127.0.0.1, which the configuration puts in the staff group: it is the
staff member's laptop. Chromium cannot be pointed at a DNS server on another port, so it is
started with a host-resolver rule for each blocked name it opens, mapping the name to the
address Hedgerow answers the staff address with (the block page's).

Every scenario is a function marked `@scenario`; they run in the order written and share one
browser. A scenario that fails is reported and the rest still run; the exit status is 1 when
any failed. The pages a role can reach are found by following its navigation (and one level
of links from each page), so pages added later are covered without changing this file.
"""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from urllib.parse import unquote, urlparse

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

# Sizes every page is photographed at: a school laptop, and a tablet held upright.
SIZES = [(1366, 768), (768, 1024)]

# The whole run is bounded (a hung browser must not hang CI).
TIME_LIMIT_SECS = 240

# Pages anyone may open, signed in or not (staff ask for an unblock without an account).
PUBLIC = {"/request"}

# Every role, in the order their pages are checked.
ROLES = ("dsl", "technician", "approver", "governor")

# A page the dashboard answers with its own "Not found" page (error.html), checked like the rest.
ERROR_PAGE = "/breaches/999999"
# An address nobody links to: the dashboard's "Not found" page too.
MISTYPED = "/breachs"

# At most this many pages per role (the crawl follows one level of links from the navigation).
MAX_PAGES = 40


class Failed(AssertionError):
    """A check failed; the message says what a person would have seen."""


def check(condition, message):
    if not condition:
        raise Failed(message)


class Page:
    """A page found by the crawl: its path (with query) and a short name for files."""

    def __init__(self, path, name):
        self.path = path
        self.name = name

    def __repr__(self):
        return self.path


class Ctx:
    """The browser, the setup, and what every scenario needs."""

    def __init__(self, setup):
        self.setup = setup
        self.base = setup["base"].rstrip("/")
        self.driver = start_browser(setup)
        self.driver.set_script_timeout(30)
        self.driver.implicitly_wait(0)
        with open(setup["axe"], encoding="utf-8") as f:
            self.axe_source = f.read()
        self.role = None
        self._pages = {}
        host, port = setup["block_page"]
        self.block_page_port = port
        self.block_page_ip = host
        self.breach_path = None
        self.notes = []

    # --- navigation -------------------------------------------------------------------

    def go(self, path):
        """Opens a page of the dashboard by its path, or any page by its full address."""
        self.driver.get(path if path.startswith("http") else self.base + path)

    def blocked_url(self, name, path="/"):
        """The address a browser opens for `path` on the site `name` (blocked: the name
        resolves to the block page's address)."""
        return f"http://{name}:{self.block_page_port}{path}"

    def status(self):
        """The HTTP status of the page shown."""
        return self.driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "return n ? n.responseStatus : null")

    def path(self):
        u = urlparse(self.driver.current_url)
        return u.path + (("?" + u.query) if u.query else "")

    def text(self):
        return self.driver.find_element(By.TAG_NAME, "body").text

    def h1(self):
        found = self.driver.find_elements(By.TAG_NAME, "h1")
        return found[0].text.strip() if found else ""

    def click_button(self, text, within=None):
        """Clicks the button and waits for the page it leads to."""
        root = within or self.driver
        for b in root.find_elements(By.TAG_NAME, "button"):
            if b.text.strip() == text:
                self.and_wait(b.click)
                return
        raise Failed(f"no button {text!r} on {self.path()}")

    def click_link(self, text):
        """Follows the link and waits for the page it leads to."""
        self.and_wait(self.driver.find_element(By.LINK_TEXT, text).click)

    def and_wait(self, action):
        """Does `action` (a click, a key) and waits until the next page has loaded."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        action()

        def loaded():
            try:
                old.tag_name
                return False
            except StaleElementReferenceException:
                return self.driver.execute_script("return document.readyState") == "complete"
        wait_for(loaded, lambda: f"no new page after a click on {self.path()}")

    def form_of(self, field_id):
        """The form holding the field with `field_id`."""
        return self.driver.find_element(By.ID, field_id).find_element(By.XPATH, "ancestor::form")

    # --- accounts ---------------------------------------------------------------------

    def account(self, role):
        return self.setup["accounts"][role]

    def sign_in(self, role, keyboard=False):
        """Signs in as the account with `role`; with `keyboard`, by Tab, typing and Enter only."""
        self.sign_out()
        acct = self.account(role)
        self.go("/login")
        check(self.h1() == "Sign in", f"the sign-in page's heading is {self.h1()!r}")
        if keyboard:
            tab_to(self, "#name")
            keys(self, acct["name"])
            tab_to(self, "#password")
            keys(self, acct["password"], Keys.ENTER)
        else:
            self.driver.find_element(By.ID, "name").send_keys(acct["name"])
            self.driver.find_element(By.ID, "password").send_keys(acct["password"])
            self.click_button("Sign in")
        wait_for(lambda: self.signed_in_as() == acct["name"],
                 lambda: f"signing in as {acct['name']} ({role}) did not work: {self.path()}: "
                         f"{self.text()[:300]}")
        self.role = role

    def signed_in_as(self):
        found = self.driver.find_elements(By.CSS_SELECTOR, "form.who span")
        if not found:
            return None
        return found[0].text.replace("Signed in as", "").strip()

    def sign_out(self):
        if self.role is None:
            return
        if not self.driver.find_elements(By.CSS_SELECTOR, "form.who button"):
            self.go("/")
        self.driver.find_element(By.CSS_SELECTOR, "form.who button").click()
        wait_for(lambda: urlparse(self.driver.current_url).path == "/login",
                 lambda: f"signing out did not lead to the sign-in page: {self.path()}")
        self.role = None

    # --- the pages a role can reach ---------------------------------------------------

    def pages(self, role):
        """Every page `role` reaches from its navigation, and one level of links from each
        (one page per kind of link: `/breaches/1` stands for every breach). Signs in."""
        if self.role != role:
            self.sign_in(role)
        if role in self._pages:
            return self._pages[role]
        self.go("/")
        nav = [a.get_attribute("href") for a in
               self.driver.find_elements(By.CSS_SELECTOR, 'nav[aria-label="Main"] a')]
        check(nav, f"{role}: no navigation links on the start page")
        seen, pages, later = set(), [], []
        for href in nav:
            path = own_path(self.base, href)
            check(path is not None, f"{role}: a navigation link leaves the dashboard: {href}")
            shape = shape_of(path)
            if shape in seen:
                continue
            seen.add(shape)
            self.visit_for_crawl(role, path)
            pages.append(Page(path, file_name(path)))
            later.extend(self.links_here())
        for path in later:
            shape = shape_of(path)
            if shape in seen or len(pages) >= MAX_PAGES:
                continue
            seen.add(shape)
            self.visit_for_crawl(role, path)
            pages.append(Page(path, file_name(path)))
        self._pages[role] = pages
        print(f"  {role} reaches {len(pages)} page(s): {', '.join(p.path for p in pages)}")
        return pages

    def visit_for_crawl(self, role, path):
        """Opens `path`; fails on error pages (a link to "Not found" is always a fault)."""
        self.go(path)
        status = self.status()
        check(status == 200, f"{role}: the link {path} answers {status}: {self.h1()}: "
                             f"{self.text()[:300]}")
        check(self.signed_in_as() == self.account(role)["name"],
              f"{role}: {path} signed the person out or shows someone else")
        return True

    def links_here(self):
        out = []
        for a in self.driver.find_elements(By.CSS_SELECTOR, "main a[href]"):
            path = own_path(self.base, a.get_attribute("href"))
            if path is None:
                continue
            last = urlparse(path).path.rsplit("/", 1)[-1]
            if "." in last:  # a download (CSV) or a file, not a page
                continue
            out.append(path)
        return out


def own_path(base, href):
    """The path and query of `href` when it is a page of this dashboard, else None."""
    if not href:
        return None
    u = urlparse(href)
    if u.scheme not in ("http", "https") or f"{u.scheme}://{u.netloc}" != base:
        return None
    return u.path + (("?" + u.query) if u.query else "")


def shape_of(path):
    """Pages of one kind share a shape: no query, and a segment with a digit (an id, a
    device's name) stands for any."""
    p = urlparse(path).path
    return "/".join("*" if re.search(r"\d", seg) else seg for seg in p.split("/"))


def file_name(path):
    p = unquote(urlparse(path).path).strip("/")
    name = re.sub(r"[^A-Za-z0-9]+", "-", p).strip("-")
    return name or "overview"


def blocked_names(setup):
    """The blocked names the scenarios open in the browser: the one the staff member asks to
    have unblocked, and its parent (still blocked afterwards, for the anonymous pages' checks)."""
    site = setup["blocked_site"]
    return [site, registrable(site)]


def resolver_rules(setup):
    """Chromium's host-resolver rules: each blocked name the scenarios open, mapped to the
    address Hedgerow answers the staff address with."""
    rules = []
    for name in blocked_names(setup):
        status, addresses = dig_from(setup, setup["staff"]["ip"], name)
        check(status == "NOERROR" and addresses == [setup["block_page"][0]],
              f"Hedgerow does not answer {name} with the block page's address for staff: "
              f"{status} {addresses}")
        rules.append(f"MAP {name} {addresses[0]}")
    return ", ".join(rules)


def start_browser(setup):
    opts = Options()
    opts.binary_location = setup["chromium"]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1366,768", "--force-device-scale-factor=1",
                "--disable-extensions", "--no-first-run", "--lang=en-GB",
                "--hide-scrollbars", f"--host-resolver-rules={resolver_rules(setup)}"):
        opts.add_argument(arg)
    service = Service(executable_path=setup["chromedriver"])
    driver = webdriver.Chrome(service=service, options=opts)
    set_viewport(driver, 1366, 768)
    return driver


def set_viewport(driver, width, height):
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def wait_for(condition, message, timeout=10.0):
    """Waits until `condition()` is true; `message` (a string, or a function making one when
    the wait fails) says what was expected."""
    end = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except WebDriverException:
            pass
        if time.monotonic() > end:
            raise Failed(message() if callable(message) else message)
        time.sleep(0.1)


def keys(ctx, *sequence):
    ActionChains(ctx.driver).send_keys(*sequence).perform()


FOCUSED_JS = """
const e = document.activeElement;
if (!e || e === document.body || e === document.documentElement) return null;
const s = getComputedStyle(e);
const r = e.getBoundingClientRect();
return {
  idx: e.getAttribute('data-e2e'),
  id: e.id,
  outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0,
  shadow: s.boxShadow !== 'none',
  rect: [r.left, r.top, r.width, r.height],
  view: [window.innerWidth, window.innerHeight],
  html: e.outerHTML.slice(0, 160),
};
"""


def tab_to(ctx, selector, limit=200):
    """Presses Tab until the element matching `selector` has the focus."""
    for _ in range(limit):
        keys(ctx, Keys.TAB)
        if ctx.driver.execute_script(
                "return document.activeElement && document.activeElement.matches(arguments[0])",
                selector):
            return
    raise Failed(f"{selector} on {ctx.path()} is not reached by Tab within {limit} presses")


# --- scenarios ---------------------------------------------------------------------------

SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


@scenario
def breach_case_worked_from_new_to_closed(ctx):
    """The pupil's blocked query is a breach; the DSL opens it from the list, adds a note,
    records that parents were informed, closes it with an outcome, and the audit trail shows
    each step."""
    pupil, site = ctx.setup["pupil"], ctx.setup["blocked_site"]
    ctx.sign_in("dsl")
    ctx.click_link("Breaches")
    check(ctx.h1() == "Breaches", f"the Breaches link opened {ctx.h1()!r}")
    # The store writes in batches: the breach shows within a few seconds.
    row = None
    end = time.monotonic() + 15
    while row is None:
        for tr in ctx.driver.find_elements(By.CSS_SELECTOR, "main table tbody tr"):
            if pupil["device"] in tr.text and registrable(site) in tr.text:
                row = tr
                break
        if row is None:
            check(time.monotonic() < end,
                  f"no breach for {pupil['device']} on {site} in the list: {ctx.text()[:500]}")
            time.sleep(0.5)
            ctx.driver.refresh()
    check(pupil["person"] in row.text, f"the breach row does not name the person: {row.text}")
    status = row.find_element(By.CSS_SELECTOR, "td.status").text.strip()
    check(status == "new" and "high" in row.text, f"not a new, high-severity breach: {row.text}")
    ctx.and_wait(row.find_element(By.CSS_SELECTOR, "td a").click)
    check(ctx.h1().startswith("Breach"), f"the breach link opened {ctx.h1()!r}")
    ctx.breach_path = ctx.path()
    page = ctx.text()
    for what in (pupil["device"], pupil["person"], pupil["ip"], registrable(site)):
        check(what in page, f"the breach page does not show {what!r}")

    note = "Spoke to the pupil at break; the form tutor is aware."
    ctx.driver.find_element(By.ID, "note").send_keys(note)
    ctx.click_button("Add note", within=ctx.form_of("note"))
    check(note in ctx.text(), "the note is not on the breach page after adding it")
    ctx.notes.append(note)

    parents_form = ctx.form_of("pby")
    by = ctx.driver.find_element(By.ID, "pby")
    by.clear()
    by.send_keys("Mrs Ahmed (phone call)")
    ctx.click_button("Record parents informed", within=parents_form)
    check("Mrs Ahmed (phone call)" in fact(ctx, "Parents informed"),
          f"parents informed not shown: {fact(ctx, 'Parents informed')!r}")

    outcome = "Internet safety session booked; no further action."
    ctx.driver.find_element(By.ID, "outcome").send_keys(outcome)
    ctx.click_button("Close the case", within=ctx.form_of("outcome"))
    check(fact(ctx, "Status") == "closed", f"status after closing: {fact(ctx, 'Status')!r}")
    check(outcome in fact(ctx, "Outcome"), f"outcome not shown: {fact(ctx, 'Outcome')!r}")
    check(not ctx.driver.find_elements(By.ID, "outcome"), "a closed case still offers to close")

    ctx.click_link("Audit trail")
    check(ctx.h1() == "Audit trail", f"the Audit trail link opened {ctx.h1()!r}")
    trail = [tr.text for tr in ctx.driver.find_elements(By.CSS_SELECTOR, "main table tbody tr")]
    breach_no = ctx.breach_path.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    me = ctx.account("dsl")["name"]
    for step in (f"opened breach {breach_no}", f"breach {breach_no}: note added: {note}",
                 f"breach {breach_no}: parents informed on",
                 f"breach {breach_no}: outcome: {outcome}",
                 f"breach {breach_no}: status set to closed"):
        check(any(step in line and me in line for line in trail),
              f"the audit trail has no line with {step!r} by {me}:\n" + "\n".join(trail[:20]))
    check("check out" in ctx.text(), "the audit trail does not say its chain checks out")


@scenario
def overview_counts_the_traffic_and_health(ctx):
    """The DSL's overview counts the queries `dig` sent (one blocked) and says every part of
    the resolver is working: the upstream answered them."""
    ctx.sign_in("dsl")
    ctx.click_link("Overview")

    def counted():
        card = ctx.driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=h-queries]")
        queries = int(card.find_element(By.CSS_SELECTOR, ".big").text.replace(",", ""))
        blocked = re.search(r"([\d,]+) blocked", card.text)
        return queries >= 3 and blocked and int(blocked.group(1).replace(",", "")) >= 1

    end = time.monotonic() + 10
    while not counted():
        check(time.monotonic() < end, "the overview does not count the pupil's queries: "
              + ctx.driver.find_element(By.CSS_SELECTOR, "main").text[:400])
        time.sleep(0.5)
        ctx.driver.refresh()
    health = [tr.text for tr in ctx.driver.find_elements(By.XPATH,
              "//h2[.='Resolver health']/following-sibling::table[1]//tbody/tr")]
    check(health, "no resolver health on the overview")
    bad = [line for line in health if "needs attention" in line]
    check(not bad, "the overview says parts of the resolver need attention:\n" + "\n".join(bad))
    check(any(line.startswith("Upstream") for line in health), f"no upstream in {health}")


@scenario
def staff_unblock_approved_for_an_hour(ctx):
    """A staff member opens a blocked site and sees the block page with its category, asks
    for a review there, and the approver approves it for staff for one hour: within seconds
    `dig` from a staff address gets the site's real address while a pupil's still gets the
    block page; the audit trail shows the request and the approval."""
    site = ctx.setup["blocked_site"]
    staff_ip, pupil_ip = ctx.setup["staff"]["ip"], ctx.setup["pupil"]["ip"]
    real = ctx.setup["blocked_site_address"]
    ctx.sign_out()

    # The staff member's browser: the name resolves to the block page.
    ctx.go(ctx.blocked_url(site, "/some/lesson/page"))
    check(ctx.h1() == "This site is blocked", f"the block page's heading is {ctx.h1()!r}")
    lead = ctx.driver.find_element(By.CSS_SELECTOR, "main p.lead").text
    check(site in lead and "Self-harm and suicide" in lead,
          f"the block page does not name the site and its category in words: {lead!r}")
    check(ctx.signed_in_as() is None, "the block page shows someone signed in")
    ctx.click_link("Ask for a review")
    check(ctx.h1() == "Ask for a site to be unblocked",
          f"'Ask for a review' opened {ctx.h1()!r} on {ctx.driver.current_url}")
    check(urlparse(ctx.driver.current_url).hostname == site,
          f"the request form is not on the block page's address: {ctx.driver.current_url}")
    typed = ctx.driver.find_element(By.ID, "r-name").get_attribute("value")
    check(typed == site, f"the form's site is {typed!r}, not {site!r}")
    for box in ctx.driver.find_elements(By.CSS_SELECTOR, "input[name=group]"):
        if (box.get_attribute("value") == "staff") != box.is_selected():
            box.click()
    choose(ctx, "r-minutes", "1 hour")
    reason = "Year 10 PSHE lesson on staying safe online uses this site's advice pages."
    ctx.driver.find_element(By.ID, "r-reason").send_keys(reason)
    ctx.driver.find_element(By.ID, "r-who").send_keys("Ms Okafor")
    ctx.click_button("Send the request")
    check(ctx.h1() == "Request sent", f"sending the request led to {ctx.h1()!r}: "
                                      f"{ctx.text()[:300]}")
    number = re.search(r"request number (\d+)", ctx.text())
    check(number, f"no request number on the page: {ctx.text()[:300]}")
    number = number.group(1)

    # The approver sees it with what each group gets today, and approves it for staff.
    ctx.sign_in("approver")
    check(urlparse(ctx.driver.current_url).path == "/requests",
          f"the approver starts at {ctx.path()}, not the unblock requests")
    # The page with a request waiting (later scenarios see it decided): axe and photographs.
    os.makedirs(ctx.setup["screenshots"], exist_ok=True)
    problems = axe(ctx, "approver", "/requests")
    problems += photograph(ctx, ctx.setup["screenshots"], "approver",
                           Page("/requests", "requests-waiting"))
    check(not problems, "\n".join(problems))
    card = ctx.driver.find_element(By.CSS_SELECTOR, f"section[aria-labelledby=req-{number}]")
    check(site in card.text and "Ms Okafor" in card.text and reason in card.text,
          f"request {number} does not show the site, who asked and why:\n{card.text}")
    verdicts = {}
    for tr in card.find_elements(By.CSS_SELECTOR, "table tbody tr"):
        cells = tr.find_elements(By.TAG_NAME, "td")
        verdicts[cells[0].text.strip()] = cells[1].text.strip()
    check(verdicts == {"pupils": "blocked: Self-harm and suicide",
                       "staff": "blocked: Self-harm and suicide"},
          f"request {number} does not say both groups are blocked today, and why in words: "
          f"{verdicts}")
    form = card.find_element(By.XPATH, ".//input[@name='action'][@value='approve']/ancestor::form")
    for box in form.find_elements(By.CSS_SELECTOR, "input[name=group]"):
        if (box.get_attribute("value") == "staff") != box.is_selected():
            box.click()
    choose(ctx, f"m-{number}", "1 hour")
    ctx.click_button("Approve", within=form)
    check("Approved" in ctx.text(), f"no confirmation after approving: {ctx.text()[:300]}")
    grants = [tr.text for tr in ctx.driver.find_elements(By.XPATH,
              "//h2[.='Unblocked now']/following-sibling::table[1]//tbody/tr")]
    check(any(site in g and "staff" in g and "alex" in g for g in grants),
          f"the grant is not under 'Unblocked now': {grants}")
    check(not any("pupils" in g for g in grants), f"pupils were unblocked too: {grants}")

    # Within seconds a staff device gets the site; a pupil's still gets the block page.
    wait_for(lambda: dig(ctx, staff_ip, site) == ("NOERROR", [real]),
             lambda: f"dig from {staff_ip} still gets {dig(ctx, staff_ip, site)} for {site}, "
                     f"not {real}", timeout=5)
    pupil = dig(ctx, pupil_ip, site)
    check(pupil == ("NOERROR", [ctx.block_page_ip]),
          f"dig from the pupil's {pupil_ip} gets {pupil} for {site}, not the block page")

    # The DSL's audit trail has the request and the approval.
    ctx.sign_in("dsl")
    ctx.click_link("Audit trail")
    trail = [tr.text for tr in ctx.driver.find_elements(By.CSS_SELECTOR, "main table tbody tr")]
    approver = ctx.account("approver")["name"]
    for step, who in ((f"unblock request {number} for {site} for staff (1 hour) made by "
                       "Ms Okafor", "Ms Okafor"),
                      (f"unblock request {number} for {site} approved for staff until",
                       approver)):
        check(any(step in line and who in line for line in trail),
              f"the audit trail has no line with {step!r} by {who}:\n" + "\n".join(trail[:20]))


def choose(ctx, select_id, label):
    """Chooses the option with `label` in the drop-down list `select_id`."""
    Select(ctx.driver.find_element(By.ID, select_id)).select_by_visible_text(label)


def registrable(name):
    """The site a breach is filed under (the last two labels, as the test names are)."""
    return ".".join(name.rstrip(".").split(".")[-2:])


def fact(ctx, label):
    """The value beside `label` in the breach page's facts."""
    for dt in ctx.driver.find_elements(By.CSS_SELECTOR, "dl.facts dt"):
        if dt.text.strip() == label:
            return dt.find_element(By.XPATH, "following-sibling::dd[1]").text.strip()
    raise Failed(f"no {label!r} on {ctx.path()}")


@scenario
def keyboard_only(ctx):
    """Signing in and adding a note with the keyboard alone; then on every page, every link,
    button and field is reached by Tab, with a visible focus."""
    ctx.sign_in("dsl", keyboard=True)
    check(ctx.breach_path, "no breach page to add a note to (the breach scenario failed)")
    ctx.go(ctx.breach_path)
    note = "Keyboard only: followed up with the pupil's form tutor."
    tab_to(ctx, "#note")
    keys(ctx, note)
    keys(ctx, Keys.TAB)
    focused = ctx.driver.execute_script("return document.activeElement.textContent.trim()")
    check(focused == "Add note", f"Tab from the note goes to {focused!r}, not to Add note")
    ctx.and_wait(lambda: keys(ctx, Keys.ENTER))
    check(note in fact(ctx, "Notes"), "the note typed with the keyboard is not shown")

    problems = []
    ctx.sign_out()
    for page in anonymous_pages(ctx):
        problems += tab_walk(ctx, "anonymous", page.path)
    for role in ROLES:
        for page in ctx.pages(role):
            problems += tab_walk(ctx, role, page.path)
    check(not problems, "keyboard problems:\n" + "\n".join(problems))


def anonymous_pages(ctx):
    """The pages shown to someone not signed in: the sign-in page, and a blocked site's
    block page and request form (the block page's address serves every site's)."""
    name = registrable(ctx.setup["blocked_site"])
    return [Page("/login", "login"),
            Page(ctx.blocked_url(name), "block-page"),
            Page(ctx.blocked_url(name, f"/request?name={name}"), "request")]


MARK_JS = """
const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]';
const els = [...document.querySelectorAll(sel)].filter(e =>
  !e.disabled && e.tabIndex >= 0 && e.getClientRects().length > 0 &&
  getComputedStyle(e).visibility !== 'hidden');
els.forEach((e, i) => e.setAttribute('data-e2e', String(i)));
return els.map(e => e.outerHTML.slice(0, 160));
"""


def tab_walk(ctx, who, path):
    """Tabs through `path` from the top; returns what is wrong, in words."""
    ctx.go(path)
    wanted = ctx.driver.execute_script(MARK_JS)
    reached, problems, last = set(), [], None
    # A date field takes a Tab for each of its day, month and year.
    for _ in range(3 * len(wanted) + 5):
        keys(ctx, Keys.TAB)
        f = ctx.driver.execute_script(FOCUSED_JS)
        if f is None:
            if reached:
                break  # past the last element
            continue
        if f["idx"] is None:
            problems.append(f"{who} {path}: focus went to an element not counted: {f['html']}")
            continue
        i = int(f["idx"])
        if i == last:
            continue  # the next part of a date field
        if i in reached:
            break  # wrapped round
        reached.add(i)
        last = i
        if not (f["outline"] or f["shadow"]):
            problems.append(f"{who} {path}: no visible focus on {f['html']}")
        x, y, w, h = f["rect"]
        vw, vh = f["view"]
        if w <= 0 or h <= 0 or x + w <= 0 or y + h <= 0 or x >= vw or y >= vh:
            problems.append(f"{who} {path}: the focused element is off screen: {f['html']}")
    for i, html in enumerate(wanted):
        if i not in reached:
            problems.append(f"{who} {path}: not reached by Tab: {html}")
    return problems


@scenario
def axe_on_every_page(ctx):
    """axe-core finds nothing serious or critical on the pages shown to someone not signed in
    (sign-in, block page, request form), every page each role reaches, and the error page."""
    found = []
    ctx.sign_out()
    for page in anonymous_pages(ctx):
        found += axe(ctx, "anonymous", page.path)
    for role in ROLES:
        for page in ctx.pages(role):
            found += axe(ctx, role, page.path)
    ctx.sign_in("dsl")
    found += axe(ctx, "dsl", ERROR_PAGE)
    check(not found, "axe-core found serious or critical problems:\n" + "\n".join(found))
    # A mistyped address gets the same page, not an empty one.
    ctx.go(MISTYPED)
    check(ctx.status() == 404 and ctx.h1() == "Not found",
          f"{MISTYPED} answers {ctx.status()} {ctx.h1()!r}, not the 'Not found' page")


AXE_RUN_JS = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help, url: v.helpUrl,
  nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html.slice(0, 200),
                            summary: n.failureSummary}))
})))).catch(e => done({error: String(e)}));
"""


def axe(ctx, who, path):
    ctx.go(path)
    ctx.driver.execute_script(ctx.axe_source)
    result = ctx.driver.execute_async_script(AXE_RUN_JS)
    check(not isinstance(result, dict), f"axe-core failed on {path}: {result}")
    out = []
    for v in result:
        if v["impact"] not in ("serious", "critical"):
            if v["impact"]:
                print(f"  axe ({v['impact']}) {who} {path}: {v['id']}: {v['help']}")
            continue
        for n in v["nodes"]:
            out.append(f"{who} {path}: [{v['impact']}] {v['id']}: {v['help']}\n"
                       f"    at {n['target']}: {n['html']}\n    {n['summary']}".rstrip())
    return out


@scenario
def screenshots_of_every_page(ctx):
    """Every page at a laptop's and an upright tablet's size, whole, under `screenshots/`;
    nothing on a page is wider than the screen."""
    folder = ctx.setup["screenshots"]
    os.makedirs(folder, exist_ok=True)
    problems = []
    ctx.sign_out()
    for page in anonymous_pages(ctx):
        problems += photograph(ctx, folder, "anonymous", page)
    for role in ROLES:
        for page in ctx.pages(role):
            problems += photograph(ctx, folder, role, page)
    ctx.sign_in("dsl")
    problems += photograph(ctx, folder, "dsl", Page(ERROR_PAGE, "not-found"))
    set_viewport(ctx.driver, *SIZES[0])
    check(not problems, "\n".join(problems))


def photograph(ctx, folder, who, page):
    problems = []
    ctx.go(page.path)
    for (w, h) in SIZES:
        set_viewport(ctx.driver, w, h)
        full = ctx.driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        if full[0] > w:
            problems.append(f"{who} {page.path} is {full[0]} px wide at {w}x{h}: "
                            "it scrolls sideways")
        shot = ctx.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": w, "height": max(h, min(full[1], 6000)), "scale": 1}})
        with open(os.path.join(folder, f"{who}-{page.name}-{w}x{h}.png"), "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    set_viewport(ctx.driver, *SIZES[0])
    return problems


@scenario
def technician_sees_no_pupil(ctx):
    """No page a technician reaches names the pupil's device, person or address."""
    pupil = ctx.setup["pupil"]
    secrets = [pupil["device"], pupil["person"], pupil["ip"]]
    leaks = []
    dsl_pages = [p.path for p in ctx.pages("dsl")]
    own = [p.path for p in ctx.pages("technician")]
    for path in own:
        ctx.go(path)
        html = ctx.driver.page_source
        leaks += [f"{path} shows {s!r}" for s in secrets if s in html]
    # The DSL's pages, opened by address: refused, or at least nothing of the pupil's.
    for path in dsl_pages:
        if path in own:
            continue
        ctx.go(path)
        html = ctx.driver.page_source
        if ctx.status() != 403:
            leaks += [f"{path} (typed in) shows {s!r}" for s in secrets if s in html]
    check(not leaks, "a technician sees a pupil's records:\n" + "\n".join(leaks))


@scenario
def governor_sees_no_device(ctx):
    """No page a governor reaches from her navigation (the reports, the annual pack) names a
    device, a person, an address or a site anyone visited; the DSL's pages, typed in, are
    refused."""
    pupil = ctx.setup["pupil"]
    secrets = [pupil["device"], pupil["person"], pupil["ip"], ctx.setup["staff"]["ip"]]
    secrets += sites_visited(ctx)
    dsl_pages = [p.path for p in ctx.pages("dsl")]
    own = [p.path for p in ctx.pages("governor")]
    check(any(urlparse(p).path == "/reports/annual" for p in own),
          f"the governor does not reach the annual pack: {own}")
    leaks = []
    for path in own:
        ctx.go(path)
        html = ctx.driver.page_source
        leaks += [f"{path} shows {s!r}" for s in secrets if s in html]
    for path in dsl_pages:
        if path in own:
            continue
        ctx.go(path)
        html = ctx.driver.page_source
        if ctx.status() != 403 and ctx.path() not in own and urlparse(path).path not in PUBLIC:
            leaks.append(f"{path} (typed in) is shown: {ctx.path()} {ctx.h1()!r}")
        leaks += [f"{path} (typed in) shows {s!r}" for s in secrets if s in html]
    check(not leaks, "a governor sees personal records:\n" + "\n".join(leaks))


def sites_visited(ctx):
    """Every name the pupil and the staff asked for, and the sites they belong to."""
    names = set()
    for name in ctx.setup["visited"]:
        names.add(name)
        names.add(registrable(name))
    return sorted(names)


def dig(ctx, source_ip, name):
    """`dig` from `source_ip` to Hedgerow; returns (status, addresses)."""
    return dig_from(ctx.setup, source_ip, name)


def dig_from(setup, source_ip, name):
    """`dig` from `source_ip` to the Hedgerow of `setup`; returns (status, addresses)."""
    host, port = setup["dns"]
    out = subprocess.run(
        ["dig", "-b", source_ip, f"@{host}", "-p", str(port), "+time=3", "+tries=1", name],
        capture_output=True, text=True, timeout=10).stdout
    status = re.search(r"status: (\w+)", out)
    # Answer lines only ("name. TTL IN A address"); the question line starts with ';'.
    addresses = re.findall(r"^[^;\s]\S*\s+\d+\s+IN\s+A\s+(\S+)$", out, re.M)
    return (status.group(1) if status else "no answer", addresses)


# --- runner ------------------------------------------------------------------------------

class OutOfTime(BaseException):
    """The run took too long: ends it (not caught per scenario, unlike other failures)."""


def out_of_time(*_):
    raise OutOfTime(f"the browser tests took over {TIME_LIMIT_SECS} s")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        setup = json.load(f)
    only = set(filter(None, os.environ.get("E2E_ONLY", "").split(",")))
    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(TIME_LIMIT_SECS)
    started = time.monotonic()
    ctx = Ctx(setup)
    failed = []
    try:
        for fn in SCENARIOS:
            if only and fn.__name__ not in only:
                continue
            t0 = time.monotonic()
            try:
                fn(ctx)
                print(f"ok     {fn.__name__} ({time.monotonic() - t0:.1f} s)")
            except Exception as e:  # noqa: BLE001 - report every scenario's failure
                detail = str(e) if isinstance(e, Failed) else (
                    "".join(traceback.format_tb(e.__traceback__))
                    + f"{type(e).__name__}: {getattr(e, 'msg', None) or e}")
                shot = os.path.join(setup["screenshots"], f"failed-{fn.__name__}.png")
                try:
                    os.makedirs(setup["screenshots"], exist_ok=True)
                    ctx.driver.save_screenshot(shot)
                    where = ctx.driver.current_url
                except WebDriverException:
                    where = "(the browser is gone)"
                print(f"FAILED {fn.__name__} ({time.monotonic() - t0:.1f} s) on {where} "
                      f"(screenshot: {shot}):\n{detail}")
                failed.append(fn.__name__)
    finally:
        ctx.driver.quit()
    ran = len([fn for fn in SCENARIOS if not only or fn.__name__ in only])
    print(f"browser: {ran - len(failed)} passed, {len(failed)} failed "
          f"({time.monotonic() - started:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
