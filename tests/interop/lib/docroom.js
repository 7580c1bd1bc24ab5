'use strict'
// What every interop test gets: its own docroom process (the built binary), Redis key prefix,
// PostgreSQL database and data directory, so tests never see each other in the machine's shared
// Redis and PostgreSQL. Faults go to a private redis-server, never to the shared one.
//
//   const { scenario } = require('./lib/docroom')
//   scenario('what it proves', async (ctx) => {
//     const app = await ctx.docroom()                  // or ctx.docroom({ redis: await ctx.privateRedis() })
//     const a = await ctx.provider(app, 'doc-id')      // a synced y-websocket provider
//   })
//
// Several replicas of one deployment: `ctx.docroom({ peerOf: app })` shares `app`'s Redis, key
// prefix and database (its own data directory); `ctx.nginx([app, peer])` puts Debian's nginx in
// front of them (lib/nginx.js), and `ctx.provider(lb, ...)` connects through it.
//
// `scenario` cleans up whatever the test made (providers, processes, database, keys, temp dirs)
// and prints the service's log when the test fails. DOCROOM_TEST_LOG=1 streams it live.

const { spawn } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const net = require('node:net')
const { redisCommand } = require('../../shared/resp.js')
const os = require('node:os')
const path = require('node:path')
const { test } = require('node:test')

const { Client: PgClient } = require('pg')
const WebSocket = require('ws')
const Y = require('yjs')
const { WebsocketProvider } = require('y-websocket')

const { Nginx } = require('./nginx')

const TEST_DIR = path.resolve(__dirname, '..')
/** The repository: the service runs from here, where its config/ is. */
const REPO = path.resolve(TEST_DIR, '..', '..')
const BIN = path.resolve(TEST_DIR, process.env.DOCROOM_BIN || '../../target/debug/docroom')
const ADMIN_TOKEN = 'interop-admin-token'
const SHARED_REDIS = { host: '127.0.0.1', port: 6379 }
const PG = { host: '127.0.0.1', port: 5432, user: 'postgres' }

/** Short timers so every story runs in seconds; a test's own `env` wins over these. */
const FAST_TIMERS = {
  DOCROOM__FLUSHER__BASE_PERIOD_MS: '200',
  DOCROOM__FLUSHER__ERROR_PERIOD_MS: '600',
  DOCROOM__FLUSHER__MAX_PERIOD_MS: '1200',
  DOCROOM__BREAKER__OPEN_MS: '500',
  DOCROOM__SESSION__HEARTBEAT_INTERVAL_MS: '100',
  DOCROOM__SERVER__SHUTDOWN_DRAIN_DEADLINE_MS: '10000'
}

/** Child processes (docroom, redis-server) still running: killed if this process goes first. */
const live = new Set()
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL')
})
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => process.exit(130))
}

function track (child) {
  live.add(child)
  child.on('exit', () => live.delete(child))
  return child
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Polls `check` until it returns without throwing (and returns its value); after `timeout` ms
 * throws its last error. `timeout` is an upper bound for waiting, never a claim about speed.
 */
async function eventually (what, check, timeout = 10000) {
  const deadline = Date.now() + timeout
  for (;;) {
    try {
      return await check()
    } catch (e) {
      if (Date.now() >= deadline) {
        e.message = `timed out after ${timeout} ms waiting for ${what}: ${e.message}`
        throw e
      }
    }
    await sleep(25)
  }
}

function freePort () {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

// --- Redis: the minimal RESP client of tests/shared/resp.js ---------------------------------

async function redisKeys (server, prefix) {
  const keys = []
  let cursor = '0'
  do {
    const [next, batch] = await redisCommand(server, ['SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', '1000'])
    keys.push(...batch)
    cursor = next
  } while (cursor !== '0')
  return keys
}

/** Deletes this test's keys (SCAN + DEL: never FLUSHALL, never anyone else's). */
async function deleteKeys (server, prefix) {
  if (!/^i[0-9a-f]{16}:$/.test(prefix)) throw new Error(`refusing to delete keys under ${prefix}`)
  const keys = await redisKeys(server, prefix)
  for (let i = 0; i < keys.length; i += 500) {
    await redisCommand(server, ['DEL', ...keys.slice(i, i + 500)])
  }
  return keys.length
}

/** A private, non-persistent redis-server that a test may SIGKILL and restart empty. */
class PrivateRedis {
  constructor (port, dir) {
    this.host = '127.0.0.1'
    this.port = port
    this.dir = dir
    this.child = null
  }

  static async start () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'docroom-interop-redis-'))
    for (let attempt = 0; attempt < 5; attempt++) {
      const redis = new PrivateRedis(await freePort(), dir)
      if (await redis.launch()) return redis
      redis.kill()
    }
    throw new Error('could not start a private redis-server')
  }

  get url () {
    return `redis://${this.host}:${this.port}`
  }

  async launch () {
    this.child = track(spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', this.dir
    ], { stdio: 'ignore' }))
    const child = this.child
    let exited = false
    child.on('exit', () => { exited = true })
    child.on('error', () => { exited = true })
    const deadline = Date.now() + 10000
    while (Date.now() < deadline && !exited) {
      try {
        if (await redisCommand(this, ['PING'], 500) === 'PONG') return true
      } catch {}
      await sleep(25)
    }
    return false
  }

  /** SIGKILL: its data is gone with it. */
  kill () {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL')
    }
    this.child = null
  }

  /** Starts it again, empty, on the same port. */
  async restart () {
    this.kill()
    await sleep(50)
    if (!(await this.launch())) throw new Error(`the private redis did not come back on ${this.port}`)
  }

  cleanup () {
    this.kill()
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

// --- PostgreSQL ---------------------------------------------------------------------------------

async function withPg (database, fn) {
  const client = new PgClient({ ...PG, database })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

// --- the service --------------------------------------------------------------------------------

/**
 * One docroom process; `restart` keeps its prefix, database and data directory. With `peerOf`
 * it is another replica of that one's deployment: same Redis, key prefix and database.
 */
class Docroom {
  constructor ({ redis, env = {}, peerOf } = {}) {
    const suffix = crypto.randomBytes(8).toString('hex')
    this.prefix = peerOf ? peerOf.prefix : `i${suffix}:`
    this.dbName = peerOf ? peerOf.dbName : `docroom_t_${suffix}`
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'docroom-interop-data-'))
    this.redis = peerOf ? peerOf.redis : redis ? { host: redis.host, port: redis.port } : SHARED_REDIS
    this.env = {
      DOCROOM_LISTEN: '127.0.0.1:0',
      DOCROOM_REDIS_URL: `redis://${this.redis.host}:${this.redis.port}`,
      DOCROOM_DATABASE_URL: `postgres://${PG.user}@${PG.host}:${PG.port}/${this.dbName}`,
      DOCROOM_DATA_DIR: this.dataDir,
      DOCROOM_ADMIN_TOKEN: ADMIN_TOKEN,
      DOCROOM__CACHE__KEY_PREFIX: this.prefix,
      DOCROOM_LOG: 'info',
      ...FAST_TIMERS,
      ...env
    }
    this.logs = []
    this.child = null
    this.addr = null
    this.generation = 0
  }

  async start () {
    if (!fs.existsSync(BIN)) {
      throw new Error(`docroom binary not found at ${BIN}: run \`cargo build\` or set DOCROOM_BIN`)
    }
    this.generation += 1
    const label = `[docroom ${this.prefix}#${this.generation}]`
    const env = { NO_COLOR: '1', RUST_BACKTRACE: '1' }
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith('DOCROOM')) env[k] = v
    }
    const child = track(spawn(BIN, ['serve'], {
      cwd: REPO,
      env: { ...env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe']
    }))
    this.child = child
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
    this.exited = exited
    const listening = new Promise((resolve, reject) => {
      child.on('error', reject)
      exited.then((status) => reject(new Error(`docroom exited before listening: ${JSON.stringify(status)}\n${this.logs.slice(-30).join('\n')}`)))
      const onLine = (line) => {
        this.logs.push(`${label} ${line}`)
        if (process.env.DOCROOM_TEST_LOG) process.stderr.write(`${label} ${line}\n`)
        const m = /listening.*addr=([0-9.]+:\d+)/.exec(line)
        if (m) resolve(m[1])
      }
      lines(child.stderr, onLine)
      lines(child.stdout, onLine)
    })
    let timer
    const timeout = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error('docroom did not log `listening addr=` within 30 s')), 30000)
    })
    try {
      this.addr = await Promise.race([listening, timeout])
    } finally {
      clearTimeout(timer)
    }
    await eventually('/healthz', async () => {
      const reply = await fetch(this.url('/healthz'))
      if (reply.status !== 200) throw new Error(`status ${reply.status}`)
    })
    return this
  }

  url (route) {
    return `http://${this.addr}${route}`
  }

  /** What a `WebsocketProvider` takes as its server URL: the room is appended to it. */
  get yjsUrl () {
    return `ws://${this.addr}/yjs`
  }

  /** `GET route` (an `/admin/...` route gets the token): `{ status, body }`. */
  async get (route) {
    const headers = route.startsWith('/admin/') ? { authorization: `Bearer ${ADMIN_TOKEN}` } : {}
    const reply = await fetch(this.url(route), { headers })
    const text = await reply.text()
    let body = null
    try { body = JSON.parse(text) } catch {}
    return { status: reply.status, body, text }
  }

  async post (route, json) {
    const reply = await fetch(this.url(route), {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(json)
    })
    const text = await reply.text()
    let body = null
    try { body = JSON.parse(text) } catch {}
    return { status: reply.status, body, text }
  }

  /** SIGTERM (the service drains) and waits for the exit; resolves with its status. */
  async stop (signal = 'SIGTERM', within = 30000) {
    const child = this.child
    if (!child) return null
    child.kill(signal)
    let timer
    const status = await Promise.race([
      this.exited,
      new Promise((resolve) => { timer = setTimeout(() => resolve(null), within) })
    ])
    clearTimeout(timer)
    if (status === null) {
      child.kill('SIGKILL')
      await this.exited
      throw new Error(`docroom did not exit within ${within} ms of ${signal}`)
    }
    this.child = null
    return status
  }

  async restart () {
    await this.stop()
    return this.start()
  }

  /** This test's Redis keys, without the prefix. */
  async redisKeys () {
    return (await redisKeys(this.redis, this.prefix)).map((k) => k.slice(this.prefix.length)).sort()
  }

  async deleteRedisKeys () {
    return deleteKeys(this.redis, this.prefix)
  }

  /**
   * The `documents` row of `doc` as PostgreSQL has it, or null. A Yjs row's `state` is given
   * merged with the updates flushes appended after it (`document_updates`), as docroom loads it;
   * `waiting` counts those updates.
   */
  async pgRow (doc) {
    return withPg(this.dbName, async (pg) => {
      const { rows } = await pg.query(
        `SELECT kind, state, content, content_hash,
                ARRAY(SELECT update FROM document_updates u WHERE u.doc_id = d.doc_id ORDER BY seq) AS updates
         FROM documents d WHERE doc_id = $1`, [doc])
      const row = rows[0]
      if (!row) return null
      if (row.state && row.updates.length > 0) row.state = Y.mergeUpdates([row.state, ...row.updates])
      // Updates not folded into the row's state yet (a document at rest has none).
      row.waiting = row.updates.length
      delete row.updates
      return row
    })
  }

  async cleanup () {
    if (this.child) {
      this.child.kill('SIGKILL')
      await this.exited
      this.child = null
    }
    if (process.env.DOCROOM_TEST_KEEP) {
      process.stderr.write(`keeping database ${this.dbName}, prefix ${this.prefix}, dir ${this.dataDir}\n`)
      return
    }
    const errors = []
    await withPg('postgres', (pg) => pg.query(`DROP DATABASE IF EXISTS "${this.dbName}" WITH (FORCE)`))
      .catch((e) => errors.push(`drop database ${this.dbName}: ${e.message}`))
    await this.deleteRedisKeys().catch((e) => {
      // a private Redis that is gone took the keys with it
      if (this.redis === SHARED_REDIS) errors.push(`delete keys ${this.prefix}*: ${e.message}`)
    })
    fs.rmSync(this.dataDir, { recursive: true, force: true })
    if (errors.length) process.stderr.write(`cleanup: ${errors.join('; ')}\n`)
  }
}

function lines (stream, onLine) {
  let rest = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk) => {
    rest += chunk
    let i
    while ((i = rest.indexOf('\n')) >= 0) {
      onLine(rest.slice(0, i).replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')) // eslint-disable-line no-control-regex
      rest = rest.slice(i + 1)
    }
  })
}

// --- Yjs clients ----------------------------------------------------------------------------------

/**
 * A `WebsocketProvider` on a fresh `Y.Doc`, exactly as an editor would open one (only the URL is
 * docroom's), and synced with the server. The BroadcastChannel is off: Node 20 has one, and two
 * providers of one process would otherwise sync through it instead of through docroom.
 */
async function openProvider (app, docId, { awareness, timeout = 10000 } = {}) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(app.yjsUrl, docId, doc, {
    WebSocketPolyfill: WebSocket,
    disableBc: true
  })
  if (awareness) provider.awareness.setLocalState(awareness)
  await eventually(`provider ${doc.clientID} on ${docId} to sync`, () => {
    if (!provider.synced) throw new Error(`not synced (status: connected=${provider.wsconnected})`)
  }, timeout)
  return provider
}

/**
 * Cuts a provider's connection the way a crashed tab or a lost network does: no close frame and
 * no awareness goodbye, and no reconnect.
 */
function dropConnection (provider) {
  provider.shouldConnect = false
  const ws = provider.ws
  if (ws) ws.terminate()
}

/**
 * Destroys a provider and what it keeps alive: its awareness has a timer of its own (stopped when
 * its document is destroyed), which would keep the test process from exiting.
 */
function closeProvider (provider) {
  provider.destroy()
  provider.awareness.destroy()
  provider.doc.destroy()
}

/** A comparable picture of a document: the JSON of the named roots and the state vector. */
function snapshot (doc, roots = { text: 'text', map: 'map' }) {
  const out = {}
  for (const [name, type] of Object.entries(roots)) {
    out[name] = type === 'text' ? doc.getText(name).toString()
      : type === 'map' ? doc.getMap(name).toJSON()
        : doc.getArray(name).toJSON()
  }
  const sv = Y.decodeStateVector(Y.encodeStateVector(doc))
  out.stateVector = Object.fromEntries([...sv.entries()].sort((a, b) => a[0] - b[0]))
  return out
}

// --- the scenario wrapper -------------------------------------------------------------------------

class Context {
  constructor () {
    this.apps = []
    this.redises = []
    this.providers = []
    this.balancers = []
    this.deferred = []
  }

  /** Debian's nginx in front of `apps` (config/nginx/docroom.conf), cleaned up with the test. */
  async nginx (apps) {
    const lb = await Nginx.start(apps, track)
    this.balancers.push(lb)
    return lb
  }

  /** Runs `fn` at cleanup, before the providers and processes go (Hocuspocus providers...). */
  defer (fn) {
    this.deferred.push(fn)
  }

  /** Starts a docroom (`{ redis, env }`), cleaned up with the test. */
  async docroom (opts) {
    const app = new Docroom(opts)
    this.apps.push(app)
    return app.start()
  }

  async privateRedis () {
    const redis = await PrivateRedis.start()
    this.redises.push(redis)
    return redis
  }

  async provider (app, docId, opts) {
    const provider = await openProvider(app, docId, opts)
    this.providers.push(provider)
    return provider
  }

  async cleanup () {
    for (const fn of this.deferred.reverse()) {
      try { fn() } catch {}
    }
    for (const p of this.providers) closeProvider(p)
    for (const lb of this.balancers) lb.cleanup()
    for (const app of this.apps) await app.cleanup()
    for (const redis of this.redises) redis.cleanup()
  }

  dumpLogs () {
    for (const app of this.apps) {
      process.stderr.write(`--- last lines of ${app.prefix} (${app.logs.length} lines) ---\n`)
      process.stderr.write(app.logs.slice(-80).join('\n') + '\n')
    }
    for (const lb of this.balancers) {
      process.stderr.write(`--- nginx on ${lb.addr} ---\n${lb.logs.slice(-40).join('\n')}\n`)
    }
  }
}

/** A `node:test` test with a `Context`: cleanup always, the service's log on failure. */
function scenario (name, fn, options = {}) {
  test(name, { timeout: 60000, ...options }, async () => {
    const ctx = new Context()
    try {
      await fn(ctx)
    } catch (e) {
      if (!options.todo) ctx.dumpLogs()
      throw e
    } finally {
      await ctx.cleanup()
    }
  })
}

module.exports = {
  ADMIN_TOKEN,
  Docroom,
  PrivateRedis,
  Y,
  closeProvider,
  dropConnection,
  eventually,
  openProvider,
  redisCommand,
  scenario,
  sleep,
  snapshot
}
