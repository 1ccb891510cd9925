// `vitte demo` in a real browser: a new user opens the chat page, accepts the
// terms, picks a persona, gets the greeting, writes, and gets a reply, all
// through the Telegram stand-in and the bot's real webhook path. Then the
// process is stopped with SIGTERM and must exit cleanly.
//
// Every wait is bounded, so a missing piece fails the test instead of hanging.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const VITTE_BIN = path.resolve(here, process.env.VITTE_BIN || '../target/debug/vitte');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const READY_LINE = /^Vitte demo: open (http:\/\/\S+?)\/? in your browser$/;
const STARTUP_MS = 60_000;
const BOT_STEP_MS = 30_000;
const EXIT_MS = 30_000;

/** Starts `vitte demo` in `workDir`, keeping the tail of its output for failure reports. */
function startDemo(workDir) {
  const env = {
    ...process.env,
    VITTE_LISTEN: '127.0.0.1:0',
    DATABASE_URL: `sqlite://${workDir}/demo.db`,
    NO_COLOR: '1',
  };
  // The embedded engines only: a Redis from the developer's shell is not the demo's.
  delete env.REDIS_URL;
  const child = spawn(VITTE_BIN, ['demo', '--page-listen', '127.0.0.1:0'], {
    cwd: workDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { text: '' };
  const keep = (chunk) => {
    output.text = (output.text + chunk.toString()).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', (error) => resolve({ code: null, signal: null, error }));
  });
  return { child, output, exited };
}

/** Resolves with `promise`, or rejects with `what` after `ms`. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The page URL from the demo's ready line on stdout. */
function readyUrl(demo) {
  return new Promise((resolve, reject) => {
    let pending = '';
    demo.child.stdout.on('data', (chunk) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) {
        const match = READY_LINE.exec(line.trim());
        if (match) resolve(match[1]);
      }
    });
    demo.exited.then(({ code, signal, error }) => {
      reject(new Error(`vitte demo ended before it was ready (code ${code}, signal ${signal}${error ? `, ${error.message}` : ''})`));
    });
  });
}

/** The texts of the bot's bubbles, in order. */
async function botTexts(page) {
  return page.locator('.row.in .bubble').allInnerTexts();
}

test('a new user chats with a persona on the demo page', { timeout: 240_000 }, async (t) => {
  const workDir = await mkdtemp(path.join(tmpdir(), 'vitte-e2e-'));
  const shotDir = await mkdtemp(path.join(tmpdir(), 'vitte-e2e-shot-'));
  const demo = startDemo(workDir);
  let browser = null;
  let page = null;
  const pageErrors = [];

  t.after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (demo.child.exitCode === null && demo.child.signalCode === null) {
      demo.child.kill('SIGKILL');
      await within(10_000, 'vitte demo to die', demo.exited).catch(() => {});
    }
    await rm(workDir, { recursive: true, force: true });
  });

  try {
    const url = await within(STARTUP_MS, 'the "Vitte demo: open ... in your browser" line', readyUrl(demo));
    t.diagnostic(`page at ${url}`);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
    const context = await browser.newContext({ viewport: { width: 1100, height: 860 }, locale: 'en-US' });
    page = await context.newPage();
    page.setDefaultTimeout(BOT_STEP_MS);
    page.setDefaultNavigationTimeout(BOT_STEP_MS);
    page.on('pageerror', (error) => pageErrors.push(error.message));

    const response = await page.goto(`${url}/`);
    assert.equal(response.status(), 200);

    // The terms arrive by themselves: a new user's /start is sent automatically.
    const withButtons = page.locator('.row.in', { has: page.locator('.kb-btn') });
    const terms = withButtons.first();
    await terms.waitFor({ state: 'visible' });
    assert.equal(await terms.locator('.kb-btn').count(), 1, 'the terms have one accept button');
    assert.ok((await terms.locator('.text').innerText()).trim().length > 20, 'the terms have a text');
    await page.locator('.row.out', { hasText: '/start' }).first().waitFor();

    await terms.locator('.kb-btn').click();

    // The persona list follows, with a button per persona.
    const personas = withButtons.nth(1);
    await personas.waitFor({ state: 'visible' });
    const choice = personas.locator('.kb-btn').first();
    const persona = (await choice.innerText()).trim();
    assert.ok(persona.length > 0, 'the persona button has a name');
    t.diagnostic(`picking ${persona}`);

    const before = await page.locator('.row.in').count();
    await choice.click();

    // The chosen message (a picture with a caption, or text) and the greeting.
    await page.waitForFunction(
      (n) => document.querySelectorAll('.row.in').length >= n,
      before + 2,
      { timeout: BOT_STEP_MS },
    );
    const afterChoice = (await botTexts(page)).slice(before);
    assert.ok(afterChoice.some((text) => text.includes(persona)), `a bubble names ${persona}: ${JSON.stringify(afterChoice)}`);
    const greeting = afterChoice[afterChoice.length - 1];
    assert.ok(greeting.trim().length > 10, `the greeting has a text: ${JSON.stringify(greeting)}`);
    const photos = page.locator('img.photo');
    if ((await photos.count()) > 0) {
      await page.waitForFunction(
        () => [...document.querySelectorAll('img.photo')].every((img) => img.complete && img.naturalWidth > 0),
        null,
        { timeout: BOT_STEP_MS },
      );
    }

    // Now a message of our own, and the persona's reply.
    const repliesBefore = await page.locator('.row.in').count();
    const said = 'Hi! What are you up to today?';
    await page.locator('#input').fill(said);
    await page.locator('#input').press('Enter');
    const mine = page.locator('.row.out', { hasText: said });
    await mine.waitFor({ state: 'visible' });
    await page.waitForFunction(
      (text) => [...document.querySelectorAll('.row.out')].some((row) => row.dataset.messageId && row.innerText.includes(text)),
      said,
      { timeout: BOT_STEP_MS },
    );
    await page.waitForFunction(
      (n) => {
        const replies = [...document.querySelectorAll('.row.in')].slice(n);
        return replies.some((row) => (row.querySelector('.text')?.innerText || '').trim().length > 0);
      },
      repliesBefore,
      { timeout: BOT_STEP_MS },
    );
    const myId = Number(await mine.getAttribute('data-message-id'));
    const replyId = Number(await page.locator('.row.in').last().getAttribute('data-message-id'));
    assert.ok(replyId > myId, `the reply (${replyId}) comes after the message (${myId})`);

    const reply = await page.locator('.row.in .text').last().innerText();
    t.diagnostic(`reply: ${JSON.stringify(reply.slice(0, 200))}`);

    // The reply is on screen: the chat followed it to the bottom.
    await page.waitForFunction(
      () => {
        const chat = document.getElementById('chat');
        return chat.scrollHeight - chat.scrollTop - chat.clientHeight < 4;
      },
      null,
      { timeout: 5_000 },
    );
    // A streamed reply may still be growing; give it a moment to finish for
    // the picture, without making that a condition.
    await page
      .waitForFunction(() => !document.getElementById('bot-status').classList.contains('typing'), null, { timeout: 10_000 })
      .catch(() => {});

    const shot = path.join(shotDir, 'demo.png');
    await page.screenshot({ path: shot, animations: 'disabled' });
    t.diagnostic(`screenshot: ${shot}`);

    assert.deepEqual(pageErrors, [], 'no script errors on the page');
  } catch (error) {
    if (page) {
      const shot = path.join(shotDir, 'failure.png');
      await page.screenshot({ path: shot }).catch(() => {});
      t.diagnostic(`failure screenshot: ${shot}`);
    }
    error.message += `\n--- vitte demo output (tail) ---\n${demo.output.text}`;
    throw error;
  }

  await browser.close();
  browser = null;
  demo.child.kill('SIGTERM');
  const { code, signal } = await within(EXIT_MS, 'vitte demo to exit after SIGTERM', demo.exited);
  assert.equal(signal, null, `vitte demo was killed by ${signal}\n${demo.output.text}`);
  assert.equal(code, 0, `vitte demo exited with ${code}\n${demo.output.text}`);
});
