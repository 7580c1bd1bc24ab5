'use strict'
// The admin dashboard (GET /admin/, issue 6 item 8) in a real headless Chromium, driven the way an
// operator uses it: enter the token, read the breaker state, force it open, hand it back.
//
// It runs the built debug binary (DOCROOM_BIN, default ../../target/debug/docroom, relative to
// this directory) against the machine's shared Redis and PostgreSQL with its own key prefix,
// database and data directory, and removes all three afterwards. Chromium is Debian's
// (/usr/bin/chromium, or CHROMIUM); `npx playwright install` cannot download browsers here.
//
//   cargo build && (cd tests/browser && npm ci && npm test)
//
// DOCROOM_SCREENSHOT=path keeps a screenshot of the page with the breaker forced open.

const { spawn } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { after, before, test } = require('node:test')
const assert = require('node:assert/strict')

const { Client: PgClient } = require('pg')
const { chromium } = require('playwright-core')

const BIN = path.resolve(__dirname, process.env.DOCROOM_BIN || '../../target/debug/docroom')
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
]
const PG = { host: '127.0.0.1', port: 5432, user: 'postgres' }
const ADMIN_TOKEN = 'browser-admin-' + crypto.randomBytes(6).toString('hex')
const UNIQUE = crypto.randomBytes(8).toString('hex')
const DB_NAME = `docroom_t_${UNIQUE}`
const WAIT = 10000

const REPLICA = 'browser-replica'
const PEER = 'browser-peer'

let service = null // { child, base, logs }: the replica whose dashboard is opened
let peer = null // a second replica of the same deployment (same Redis prefix and database)
let browser = null
const dataDirs = []

/**
 * Starts docroom replica `replica` on a free port; resolves with `{ child, base, logs }` once it
 * logs `listening addr=IP:PORT`.
 */
function startDocroom (replica) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`no docroom binary at ${BIN}: run \`cargo build\` first (or set DOCROOM_BIN)`)
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'docroom-browser-'))
  dataDirs.push(dataDir)
  const env = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('DOCROOM')) env[key] = value
  }
  Object.assign(env, {
    NO_COLOR: '1',
    DOCROOM_LISTEN: '127.0.0.1:0',
    DOCROOM_REDIS_URL: 'redis://127.0.0.1:6379',
    DOCROOM_DATABASE_URL: `postgres://${PG.user}@${PG.host}:${PG.port}/${DB_NAME}`,
    DOCROOM_DATA_DIR: dataDir,
    DOCROOM_ADMIN_TOKEN: ADMIN_TOKEN,
    DOCROOM__CACHE__KEY_PREFIX: `tb${UNIQUE}:`,
    DOCROOM_REPLICA_ID: replica,
    DOCROOM__REPLICAS__HEARTBEAT_INTERVAL_MS: '200',
    DOCROOM_LOG: 'info'
  })
  const child = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const logs = []
  let started = null
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error('docroom did not log `listening addr=` within 60 s:\n' + logs.join('\n')))
    }, 60000)
    let pending = ''
    const onData = (chunk) => {
      pending += chunk.toString()
      const lines = pending.split('\n')
      pending = lines.pop()
      for (const line of lines) {
        logs.push(line)
        if (process.env.DOCROOM_TEST_LOG) process.stderr.write(`[${replica}] ${line}\n`)
        const match = /listening.*addr=([0-9.]+:\d+)/.exec(line)
        if (match && !started) {
          clearTimeout(timer)
          started = { child, base: `http://${match[1]}`, logs }
          resolve(started)
        }
      }
    }
    child.stderr.on('data', onData)
    child.stdout.on('data', onData)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (!started) {
        reject(new Error(`docroom exited (${code ?? signal}) before listening:\n${logs.join('\n')}`))
      }
    })
  })
}

async function stopDocroom (service) {
  if (!service) return
  const { child } = service
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 15000)
    await exited
    clearTimeout(timer)
  }
}

async function dropDatabase () {
  const client = new PgClient({ ...PG, database: 'postgres' })
  await client.connect()
  try {
    await client.query(`DROP DATABASE IF EXISTS "${DB_NAME}" WITH (FORCE)`)
  } finally {
    await client.end()
  }
}

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
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM)`)
  }
  service = await startDocroom(REPLICA)
  peer = await startDocroom(PEER)
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
})

after(async () => {
  const errors = []
  for (const step of [
    async () => { if (browser) await browser.close() },
    () => stopDocroom(service),
    () => stopDocroom(peer),
    dropDatabase,
    async () => { for (const dir of dataDirs) fs.rmSync(dir, { recursive: true, force: true }) }
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

    const shot = process.env.DOCROOM_SCREENSHOT || path.join(os.tmpdir(), `docroom-dashboard-${UNIQUE}.png`)
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
