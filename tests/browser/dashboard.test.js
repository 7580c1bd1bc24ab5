'use strict'
// The admin dashboard (GET /admin/, issue 6 item 8) in a real headless Chromium, driven the way an
// operator uses it: enter the token, read the breaker state, force it open, hand it back.
//
// It runs the built debug binary against the machine's shared Redis and PostgreSQL with its own
// key prefix, database and data directories, and removes all three afterwards (lib/docroom.js).
//
//   cargo build && (cd tests/browser && npm ci && npm test)
//
// DOCROOM_SCREENSHOT=path keeps a screenshot of the page with the breaker forced open.

const os = require('node:os')
const path = require('node:path')
const { after, before, test } = require('node:test')
const assert = require('node:assert/strict')

const { cleanup, deployment, launchChromium, startDocroom, stopDocroom } = require('./lib/docroom')

const DEP = deployment('tb')
const ADMIN_TOKEN = DEP.adminToken
const WAIT = 10000

const REPLICA = 'browser-replica'
const PEER = 'browser-peer'
/** Replicas list each other within a fraction of a second. */
const FAST_HEARTBEAT = { DOCROOM__REPLICAS__HEARTBEAT_INTERVAL_MS: '200' }

let service = null // { child, base, logs }: the replica whose dashboard is opened
let peer = null // a second replica of the same deployment (same Redis prefix and database)
let browser = null

/** The admin API called directly, not through the page: what the service really holds. */
async function adminApi (method, route, body) {
  const res = await fetch(`${service.base}/admin/${route}`, {
    method,
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  assert.equal(res.status, 200, `${method} /admin/${route}`)
  return res.json()
}

/** Waits until the element's text is exactly `expected` (whitespace trimmed). */
async function waitForText (page, selector, expected) {
  try {
    await page.waitForFunction(
      ([sel, want]) => document.querySelector(sel)?.textContent.trim() === want,
      [selector, expected],
      { timeout: WAIT }
    )
  } catch (e) {
    const actual = await page.locator(selector).textContent().catch(() => '(missing)')
    throw new Error(`${selector} never read ${JSON.stringify(expected)}; it reads ${JSON.stringify(actual)}`)
  }
}

/** A fresh browser context (its own sessionStorage) with a page on the dashboard. */
async function openDashboard () {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } })
  const page = await context.newPage()
  const problems = []
  // The page is self-contained: nothing may be fetched from anywhere but the service.
  page.on('request', (req) => {
    if (!req.url().startsWith(service.base + '/')) problems.push(`external request: ${req.url()}`)
  })
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  const response = await page.goto(`${service.base}/admin/`)
  assert.equal(response.status(), 200, 'GET /admin/')
  assert.match(response.headers()['content-type'], /text\/html/)
  return { context, page, problems }
}

before(async () => {
  service = await startDocroom(DEP, REPLICA, FAST_HEARTBEAT)
  peer = await startDocroom(DEP, PEER, FAST_HEARTBEAT)
  browser = await launchChromium()
})

after(async () => {
  const errors = []
  for (const step of [
    async () => { if (browser) await browser.close() },
    () => stopDocroom(service),
    () => stopDocroom(peer),
    () => cleanup(DEP)
  ]) {
    try { await step() } catch (e) { errors.push(e) }
  }
  if (errors.length) throw errors[0]
})

test('an operator logs in, sees the breaker closed, forces it open and hands it back', { timeout: 60000 }, async (t) => {
  const { context, page, problems } = await openDashboard()
  try {
    // Before the token, only the login form shows.
    assert.equal(await page.locator('#panels').isVisible(), false, 'panels shown before login')
    await page.getByLabel(/admin token/i).fill(ADMIN_TOKEN)
    await page.getByRole('button', { name: 'Connect' }).click()

    await waitForText(page, '#breaker-state', 'closed')
    assert.equal(await page.locator('#login').isVisible(), false, 'login form still shown')
    await waitForText(page, '#flusher-period', '10 s')
    assert.equal((await adminApi('GET', 'breaker')).state, 'closed')

    // A live room shows up with its member count, without reloading the page.
    const editor = await context.newPage()
    await editor.goto(`${service.base}/healthz`)
    await editor.evaluate((url) => new Promise((resolve, reject) => {
      window.socket = new WebSocket(url)
      window.socket.onmessage = () => resolve()
      window.socket.onerror = () => reject(new Error('websocket failed'))
    }), service.base.replace('http', 'ws') + '/docs/dashboard-room/ws')
    await page.waitForFunction(
      () => [...document.querySelectorAll('#rooms tr')].some((tr) => {
        const cells = [...tr.cells].map((c) => c.textContent)
        return cells[0] === 'dashboard-room' && cells[1] === 'json' && cells[2] === '1'
      }),
      null,
      { timeout: WAIT }
    )
    // Both replicas of the deployment are listed, this one with its room and connection.
    await page.waitForFunction(
      ([self, other]) => {
        const rows = [...document.querySelectorAll('#replicas tr')].map((tr) => [...tr.cells].map((c) => c.textContent))
        return rows.length === 2 &&
          rows.some((c) => c[0] === self && c[1] === '1' && c[2] === '1' && !Number.isNaN(Date.parse(c[3]))) &&
          rows.some((c) => c[0] === other && c[1] === '0' && c[2] === '0')
      },
      [REPLICA, PEER],
      { timeout: WAIT }
    )
    await waitForText(page, '#replica-count', '2')

    await page.getByRole('button', { name: 'Force open' }).click()
    await waitForText(page, '#breaker-state', 'open (forced)')
    assert.match(await page.locator('#breaker-state').getAttribute('class'), /\bopen\b/)
    const forced = await adminApi('GET', 'breaker')
    assert.equal(forced.state, 'open', JSON.stringify(forced))
    assert.equal(forced.forced, true, JSON.stringify(forced))
    // It stays open across the page's live refreshes, and the history records the change.
    await page.waitForTimeout(1500)
    await waitForText(page, '#breaker-state', 'open (forced)')
    const history = await page.locator('#breaker-history li').allTextContents()
    assert.ok(history.some((h) => h.endsWith(' open (forced)')), `history: ${history}`)
    assert.ok(history.some((h) => h.endsWith(' closed')), `history: ${history}`)

    const shot = process.env.DOCROOM_SCREENSHOT || path.join(os.tmpdir(), `docroom-dashboard-${DEP.unique}.png`)
    await page.screenshot({ path: shot, fullPage: true })
    t.diagnostic(`screenshot: ${shot}`)

    await page.getByRole('button', { name: 'Flush now' }).click()
    await page.waitForFunction(
      () => /^flushed \d+, failed 0$/.test(document.querySelector('#flush-result').textContent),
      null,
      { timeout: WAIT }
    )

    await page.getByRole('button', { name: 'Automatic' }).click()
    await waitForText(page, '#breaker-state', 'closed')
    const auto = await adminApi('GET', 'breaker')
    assert.equal(auto.state, 'closed', JSON.stringify(auto))
    assert.equal(auto.forced, false, JSON.stringify(auto))

    // A document written over HTTP gets a version once its room retires; the operator looks
    // its versions up.
    const put = await fetch(`${service.base}/docs/dashboard-versions`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'versioned' })
    })
    assert.equal(put.status, 200)
    await page.locator('#versions-doc').fill('dashboard-versions')
    await page.waitForFunction(async () => {
      document.querySelector('#versions-form button').click()
      await new Promise((resolve) => setTimeout(resolve, 200))
      return document.querySelectorAll('#versions tr').length >= 1
    }, null, { timeout: WAIT, polling: 500 })
    assert.match(await page.locator('#versions-status').textContent(), /^\d+ version\(s\), newest first$/)
    const cells = await page.locator('#versions tr').first().locator('td').allTextContents()
    assert.equal(cells[0], '1', `the first version: ${cells}`)

    await editor.evaluate(() => window.socket.close())
    assert.deepEqual(problems, [])
  } finally {
    await context.close()
  }
})

test('a wrong token is refused with the 401 message and shows nothing', { timeout: 60000 }, async () => {
  const { context, page, problems } = await openDashboard()
  try {
    await page.getByLabel(/admin token/i).fill('not-the-' + ADMIN_TOKEN)
    await page.getByRole('button', { name: 'Connect' }).click()
    await page.waitForFunction(
      () => document.querySelector('#error').textContent.includes('401'),
      null,
      { timeout: WAIT }
    )
    assert.match(await page.locator('#error').textContent(), /token refused \(401\)/)
    assert.equal(await page.locator('#panels').isVisible(), false, 'panels shown for a wrong token')
    assert.equal(await page.locator('#breaker-state').textContent(), '-')
    // The page keeps the operator's breaker alone.
    assert.equal((await adminApi('GET', 'breaker')).forced, false)
    assert.deepEqual(problems, [])
  } finally {
    await context.close()
  }
})
