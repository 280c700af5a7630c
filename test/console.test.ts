// The web console, used as a person would use it, in headless Chromium: the
// executions page and its "retrying now" view, an execution's page with its
// attempts on the timeline, cancel and re-run with their confirmations, a live
// update arriving, and the token form. Screenshots go to test/artifacts/.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { Authorizer } from "../server/api/auth.js";
import { millis, seconds, startTestCoordinator, tempDir } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import { fail, leaseNow, submit, succeed } from "./wire-helpers.js";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = join(import.meta.dirname, "artifacts");
// CI installs Chromium (.ci/run); elsewhere these tests need it too, unless told to skip.
const available = existsSync(CHROMIUM) || process.env.CI === "true";

let browser: Browser;
let c: TestCoordinator;
let base: string;

beforeAll(async () => {
  if (!available) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
});

afterAll(async () => {
  await browser?.close();
});

afterEach(async () => {
  await c?.close();
});

async function start(options: Parameters<typeof startTestCoordinator>[0] = {}) {
  c = await startTestCoordinator({ httpListen: "127.0.0.1:0", ...options });
  base = `http://127.0.0.1:${c.server.httpPort}`;
}

async function open(path: string, viewport = { width: 1280, height: 860 }): Promise<Page> {
  const page = await browser.newPage({ viewport });
  // Well inside the test's own timeout, so that a step that waits in vain says which.
  page.setDefaultTimeout(10_000);
  const outside: string[] = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(base)) outside.push(request.url());
  });
  page.on("pageerror", (error) => {
    throw error;
  });
  await page.goto(`${base}${path}`);
  page.on("close", () => expect(outside, "requests to other hosts").toEqual([]));
  return page;
}

const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

describe.runIf(available)("the console in a browser", () => {
  test("the executions page lists executions newest first with state, attempts, age, last failure and a countdown; 'retrying now' shows the waiting retries", async () => {
    await start();
    const charged = await submit(c, "charge_card", { retryPolicy: { limit: 3, backoffMin: millis(200) }, labels: { tenant: "acme" } });
    await fail(c, (await leaseNow(c, ["charge_card"]))[0]!, { type: "ConnectionError", message: "connection refused by payments.example" });
    await new Promise((resolve) => setTimeout(resolve, 250));
    await succeed(c, (await leaseNow(c, ["charge_card"]))[0]!, { charged: 42 });
    const waiting = await submit(c, "sync_crm", { retryPolicy: { limit: 2, backoffMin: seconds(600) }, idempotencyKey: "crm-sync-1" });
    await fail(c, (await leaseNow(c, ["sync_crm"]))[0]!, { type: "RateLimited", message: "HTTP 429 from the CRM" });
    const failed = await submit(c, "send_email");
    await fail(c, (await leaseNow(c, ["send_email"]))[0]!, { type: "SmtpError", message: "mailbox unavailable", nonRetryable: true });

    const page = await open("/");
    const rows = page.locator("table.executions tbody tr");
    await expect.poll(() => rows.count()).toBe(3);
    expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-id")))).toEqual([failed.id, waiting.id, charged.id]);
    const retryRow = page.locator(`tr[data-id="${waiting.id}"]`);
    await expect.poll(() => retryRow.textContent()).toMatch(/sync_crm\s*PENDING\s*1.*retry in (9m 5\ds|10m 00s) · backoff.*RateLimited: HTTP 429 from the CRM/);
    expect(await page.locator(`tr[data-id="${failed.id}"] .badge`).textContent()).toBe("FAILED");
    expect(await page.locator(`tr[data-id="${failed.id}"] .failure`).textContent()).toBe("SmtpError: mailbox unavailable");
    await shot(page, "executions");
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, "executions-phone");
    await page.setViewportSize({ width: 1280, height: 860 });

    await page.getByRole("navigation", { name: "Views" }).getByRole("link", { name: "Retrying now" }).click();
    await expect.poll(() => rows.count()).toBe(1);
    expect(await rows.first().getAttribute("data-id")).toBe(waiting.id);
    await shot(page, "retrying-now");


    // Open one by its idempotency key; an unknown one is said so.
    await page.getByLabel("Id or idempotency key").fill("nightly-2026-11-30");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.getByRole("alert").getByText("No execution has the id or idempotency key “nightly-2026-11-30”.").waitFor();
    await page.getByLabel("Id or idempotency key").fill("crm-sync-1");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL(`**/#/executions/${waiting.id}`);
    await page.locator(".execution-header").getByText("sync_crm").waitFor();

    await page.goto(`${base}/#/executions`);
    await page.getByLabel("State").selectOption("FAILED");
    await page.getByRole("button", { name: "Apply" }).click();
    await expect.poll(() => rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-id")))).toEqual([failed.id]);

    // By label: typed in, or followed from an execution's page.
    await page.goto(`${base}/#/executions`);
    await page.getByLabel("Label", { exact: true }).fill("tenant=acme");
    await page.getByRole("button", { name: "Apply" }).click();
    await expect.poll(() => rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-id")))).toEqual([charged.id]);
    await page.goto(`${base}/#/executions/${charged.id}`);
    await page.getByRole("link", { name: "tenant=acme" }).click();
    await page.waitForURL("**/#/executions?label=tenant%3Dacme");
    await expect.poll(() => rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-id")))).toEqual([charged.id]);
    expect(await page.getByLabel("Label", { exact: true }).inputValue()).toBe("tenant=acme");

    // Behind a backlog of 1,200 newer PENDING executions, the waiting retry is
    // still found; a re-run is shown as such, and a delayed first attempt "starts".
    await c.executions.submitBatch({ submissions: Array.from({ length: 1000 }, () => ({ task: "backlog" })) });
    await c.executions.submitBatch({ submissions: Array.from({ length: 200 }, () => ({ task: "backlog" })) });
    await c.executions.rerunExecution({ executionId: failed.id });
    const later = await submit(c, "nightly_report", { delay: seconds(3600) });
    await page.goto(`${base}/#/executions?view=retrying`);
    await expect.poll(() => rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-id")))).toEqual([failed.id, waiting.id]);
    expect(await page.locator(`tr[data-id="${failed.id}"] .countdown`).textContent()).toBe("due now · re-run");
    await page.goto(`${base}/#/executions?task=nightly_report`);
    await expect.poll(() => page.locator(`tr[data-id="${later.id}"] .countdown`).textContent()).toMatch(/^starts in (59m 5\ds|1h 00m)$/);
    await page.close();
  });

  test("the tasks page shows each task's declared policy in the CLI's words, its executions by state and its workers, and flags due work that no worker takes; the workers page lists the workers", async () => {
    await start();
    await c.workers.declareTasks({
      workerId: "billing-7",
      tasks: [
        { name: "charge_card", retryPolicy: { limit: 3, backoffMin: seconds(1), backoffMax: seconds(30), backoffCoefficient: 2 } },
        // Left out, an unlimited policy's backoffs are the wire's default range, 1–60 s.
        { name: "poll_feed", retryPolicy: { unlimited: true } },
      ],
    });
    await submit(c, "charge_card");
    await succeed(c, (await leaseNow(c, ["charge_card"]))[0]!);
    await submit(c, "export_report");

    const page = await open("/#/tasks");
    const charge = page.locator('tr[data-task="charge_card"]');
    await charge.waitFor();
    // billing-7 declared it, and the test's own worker leased its work.
    expect(await charge.textContent()).toMatch(/charge_card3 retries, after 1 s × 2\^\(k−1\), at most 30 s.*SUCCEEDED\s*1.*2 seen, last/);
    expect(await page.locator('tr[data-task="poll_feed"]').textContent()).toMatch(/poll_feedunlimited retries, each after 1–60 s \(random\)/);
    const orphan = page.locator('tr[data-task="export_report"]');
    expect(await orphan.textContent()).toMatch(/export_reportNO WORKERnot declared.*PENDING\s*1.*10 failed, 0 retried0 seen/);
    await shot(page, "tasks");
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, "tasks-phone");
    await page.setViewportSize({ width: 1280, height: 860 });
    await page.locator('tr[data-task="export_report"] a.count').click();
    await expect.poll(() => page.locator("table.executions tbody tr").count()).toBe(1);

    await page.getByRole("link", { name: "Workers" }).click();
    const worker = page.locator('tr[data-worker="billing-7"]');
    await worker.waitFor();
    expect(await worker.textContent()).toMatch(/billing-7.*charge_card/);
    await shot(page, "workers");
    await page.close();
  });

  test("an execution's page draws every attempt on the timeline with its failure and the rule that set each wait, and shows arguments and result", async () => {
    await start();
    const e = await submit(c, "charge_card", { retryPolicy: { limit: 3, backoffMin: millis(300) }, idempotencyKey: "order-17" });
    for (const message of ["connection refused", "read timeout"]) {
      await fail(c, (await leaseNow(c, ["charge_card"]))[0]!, { type: "ConnectionError", message });
      await new Promise((resolve) => setTimeout(resolve, 320));
    }
    await succeed(c, (await leaseNow(c, ["charge_card"]))[0]!, { charged: 42, currency: "EUR" });

    const page = await open(`/#/executions/${e.id}`);
    await page.locator(".execution-header .badge").getByText("SUCCEEDED").waitFor();
    expect(await page.locator("svg.timeline .bar").count()).toBe(3);
    expect(await page.locator("svg.timeline .bar.state-failed").count()).toBe(2);
    expect(await page.locator("svg.timeline .wait-label").allTextContents()).toEqual([expect.stringMatching(/· backoff$/), expect.stringMatching(/· backoff$/)]);
    const attempts = page.locator("li.attempt");
    expect(await attempts.count()).toBe(3);
    expect(await attempts.nth(0).locator("summary").textContent()).toBe("ConnectionError: connection refused");
    expect(await attempts.nth(1).locator("summary").textContent()).toBe("ConnectionError: read timeout");
    expect(await attempts.nth(0).locator(".decision").textContent()).toMatch(/^Then waited 3\d\d ms \(backoff\)\. Decided under: 3 retries, after 0.3 s\.$/);
    expect(await page.locator(".payloads pre").last().textContent()).toBe('{\n  "charged": 42,\n  "currency": "EUR"\n}');
    expect(await page.locator("dl.facts").textContent()).toContain("order-17");
    await shot(page, "execution");
    // And on a phone.
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, "execution-phone");
    await page.close();
  });

  test("cancel and re-run ask first, are shown only when they apply, and a live update arrives without a reload", async () => {
    await start();
    const e = await submit(c, "export_report");
    const page = await open(`/#/executions/${e.id}`);
    await page.locator(".execution-header .badge").getByText("PENDING").waitFor();
    expect(await page.getByRole("button", { name: "Re-run" }).count()).toBe(0);

    // Refusing the confirmation changes nothing.
    page.once("dialog", (dialog) => void dialog.dismiss());
    await page.getByRole("button", { name: "Cancel" }).click();
    expect(await page.locator(".execution-header .badge").textContent()).toBe("PENDING");

    page.once("dialog", (dialog) => void dialog.accept());
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.locator(".execution-header .badge").getByText("CANCELLED").waitFor();
    expect(await page.getByRole("button", { name: "Cancel" }).count()).toBe(0);

    page.once("dialog", (dialog) => void dialog.accept());
    await page.getByRole("button", { name: "Re-run" }).click();
    await page.locator(".execution-header .badge").getByText("PENDING").waitFor();

    // A worker leases and finishes it elsewhere: the page follows.
    const [attempt] = await leaseNow(c, ["export_report"]);
    await page.locator(".execution-header .badge").getByText("RUNNING").waitFor();
    await fail(c, attempt!, { type: "DiskFull", message: "no space left on device", nonRetryable: true });
    await page.locator(".execution-header .badge").getByText("FAILED").waitFor();
    expect(await page.locator("li.attempt summary").textContent()).toBe("DiskFull: no space left on device");
    await shot(page, "after-rerun");
    await page.close();
  });

  test("a filtered list whose first page comes back short (more executions with the label than one walk reads) is read on until its matches show", async () => {
    await start();
    const failed = await submit(c, "import_feed", { labels: { tenant: "acme" } });
    await fail(c, (await leaseNow(c, ["import_feed"]))[0]!, { type: "ParseError", message: "bad row 17", nonRetryable: true });
    // Newer than it: more of the same tenant than a page by label walks.
    for (let i = 0; i < 3; i++) {
      await c.executions.submitBatch({ submissions: Array.from({ length: 1000 }, () => ({ task: "import_feed", labels: { tenant: "acme" }, delay: seconds(3600) })) });
    }
    const page = await open("/#/executions?label=tenant%3Dacme&state=FAILED");
    const rows = page.locator("table.executions tbody tr");
    await expect.poll(() => rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-id")))).toEqual([failed.id]);
    expect(await page.getByText("No executions match.").count()).toBe(0);
    await page.close();
  });

  test("works with the keyboard alone: Tab reaches every control, each control has a label, Enter filters and opens an execution, and a confirmed re-run follows", async () => {
    await start();
    const failed = await submit(c, "send_invoice");
    await fail(c, (await leaseNow(c, ["send_invoice"]))[0]!, { type: "SmtpError", message: "mailbox full", nonRetryable: true });
    await submit(c, "other_task");
    const page = await open("/");
    await page.locator("table.executions tbody tr").first().waitFor();

    // Every control on every page is named: a label, an aria-label or its text.
    for (const route of ["#/executions", "#/executions?view=retrying", `#/executions/${failed.id}`, "#/tasks", "#/workers"]) {
      await page.goto(`${base}/${route}`);
      await page.locator("main:not([aria-busy])").waitFor();
      const unnamed = await page.locator("input, select, button, a, summary").evaluateAll((elements) =>
        elements
          .filter((el) => !(el as unknown as { labels?: { length: number } }).labels?.length && !el.getAttribute("aria-label") && !el.textContent?.trim())
          .map((el) => el.outerHTML),
      );
      expect(unnamed, route).toEqual([]);
      await expect.poll(() => page.title(), { message: route }).toMatch(/ · Reprise$/);
    }

    // From the top of the executions page, Tab until the task filter has focus, type, and press Enter.
    await page.goto(`${base}/#/executions`);
    await page.locator("table.executions tbody tr").first().waitFor();
    const focused = page.locator(":focus");
    const focusedName = async () => ((await focused.count()) === 0 ? "" : ((await focused.getAttribute("name")) ?? (await focused.textContent()) ?? ""));
    const tabTo = async (reached: () => Promise<boolean>, what: string) => {
      for (let presses = 0; presses < 40; presses++) {
        if (await reached()) return;
        await page.keyboard.press("Tab");
      }
      throw new Error(`Tab never reached ${what}`);
    };
    await tabTo(async () => (await focusedName()) === "task", "the task filter");
    await page.keyboard.type("send_invoice");
    await page.keyboard.press("Enter");
    await page.waitForURL("**/#/executions?task=send_invoice");
    const rows = page.locator("table.executions tbody tr");
    await expect.poll(() => rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-id")))).toEqual([failed.id]);

    // Tab to the execution's link and open it with Enter; then Tab to Re-run, and confirm it with the keyboard.
    await tabTo(async () => (await page.locator(`tr[data-id="${failed.id}"] a:focus`).count()) === 1, "the execution's link");
    await page.keyboard.press("Enter");
    await page.waitForURL(`**/#/executions/${failed.id}`);
    await page.locator(".execution-header .badge").getByText("FAILED").waitFor();
    await tabTo(async () => (await focusedName()) === "Re-run", "the Re-run button");
    page.once("dialog", (dialog) => void dialog.accept());
    await page.keyboard.press("Enter");
    await page.locator(".execution-header .badge").getByText("PENDING").waitFor();
    // The latest failure's stack trace is shown open, and the keyboard closes and opens it.
    const details = page.locator("li.attempt details");
    expect(await details.getAttribute("open")).toBe("");
    await tabTo(async () => (await page.locator("summary:focus").count()) === 1, "the failure's summary");
    await page.keyboard.press("Enter");
    expect(await details.getAttribute("open")).toBeNull();
    await page.keyboard.press("Enter");
    expect(await details.getAttribute("open")).toBe("");
    await page.close();
  });

  test("with bearer tokens the page asks for a token, sends it as a header and never puts it in a URL", async () => {
    const TOKEN = "caller-token-0123456789";
    const file = join(tempDir(), "tokens");
    writeFileSync(file, `caller ${TOKEN}\n`);
    await start({ authorizer: Authorizer.fromFile(file) });
    const page = await open("/");
    const urls: string[] = [];
    page.on("request", (request) => urls.push(request.url()));
    await page.getByLabel("Bearer token").waitFor();
    await shot(page, "token");
    await page.getByLabel("Bearer token").fill(TOKEN);
    await page.getByRole("button", { name: "Use this token" }).click();
    await page.locator("table.executions").waitFor();
    expect(urls.some((url) => url.includes(TOKEN))).toBe(false);
    expect(page.url()).not.toContain(TOKEN);
    await page.close();
  });
});
