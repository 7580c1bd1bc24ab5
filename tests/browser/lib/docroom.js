'use strict'
// What every browser test needs from the service: the built debug binary (DOCROOM_BIN, default
// ../../target/debug/docroom relative to tests/browser) started as a child process against the
// machine's shared Redis and PostgreSQL, with the test's own key prefix, database and data
// directories, all removed again by `cleanup()`. Chromium is Debian's (/usr/bin/chromium, or
// CHROMIUM); `npx playwright install` cannot download browsers here.
//
//   const dep = deployment('tb')            // one prefix + database, shared by its replicas
//   const service = await startDocroom(dep, 'replica-a')
//   ...
//   await stopDocroom(service)              // SIGTERM: docroom drains to PostgreSQL, then exits
//   await cleanup(dep)
//
// DOCROOM_TEST_LOG=1 streams the service's log live.

const { spawn } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const resp = require('../../shared/resp.js')
const os = require('node:os')
const path = require('node:path')

const { Client: PgClient } = require('pg')
const { chromium } = require('playwright-core')

const BIN = path.resolve(__dirname, '..', process.env.DOCROOM_BIN || '../../target/debug/docroom')
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
const REDIS = { host: '127.0.0.1', port: 6379 }

/** One deployment: a Redis key prefix `${tag}<16 hex>:` and a database, shared by its replicas. */
function deployment (tag) {
  if (!/^[a-z]{1,4}$/.test(tag)) throw new Error(`deployment tag ${tag}: 1-4 lowercase letters`)
  const unique = crypto.randomBytes(8).toString('hex')
  return {
    unique,
    prefix: `${tag}${unique}:`,
    dbName: `docroom_t_${unique}`,
    adminToken: `browser-admin-${crypto.randomBytes(6).toString('hex')}`,
    dataDirs: []
  }
}

/**
 * Starts docroom replica `replica` of `dep` on a free port, with a fresh data directory;
 * resolves with `{ child, base, logs }` once it logs `listening addr=IP:PORT` (a child process
 * has no other way to tell its port 0 back).
 */
function startDocroom (dep, replica, extraEnv = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`no docroom binary at ${BIN}: run \`cargo build\` first (or set DOCROOM_BIN)`)
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'docroom-browser-'))
  dep.dataDirs.push(dataDir)
  const env = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('DOCROOM')) env[key] = value
  }
  Object.assign(env, {
    NO_COLOR: '1',
    DOCROOM_LISTEN: '127.0.0.1:0',
    DOCROOM_REDIS_URL: `redis://${REDIS.host}:${REDIS.port}`,
    DOCROOM_DATABASE_URL: `postgres://${PG.user}@${PG.host}:${PG.port}/${dep.dbName}`,
    DOCROOM_DATA_DIR: dataDir,
    DOCROOM_ADMIN_TOKEN: dep.adminToken,
    DOCROOM__CACHE__KEY_PREFIX: dep.prefix,
    DOCROOM_REPLICA_ID: replica,
    DOCROOM_LOG: 'info'
  }, extraEnv)
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

/** SIGTERM, as an orchestrator stops it (SIGKILL only if it has not exited after 15 s). */
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
  return { code: child.exitCode, signal: child.signalCode }
}

/** Headless Debian Chromium. */
async function launchChromium () {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM)`)
  }
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
}

// --- Redis: the minimal RESP client of tests/shared/resp.js, on the shared Redis ------------

/** Sends one command to the shared Redis and resolves with its parsed reply (errors reject). */
function redisCommand (args, timeout = 3000) {
  return resp.redisCommand(REDIS, args, timeout)
}

/** Deletes `dep`'s keys only (SCAN MATCH prefix* + DEL: never FLUSHALL, never anyone else's). */
async function deleteKeys (dep) {
  if (!/^[a-z]{1,4}[0-9a-f]{16}:$/.test(dep.prefix)) throw new Error(`refusing to delete keys under ${dep.prefix}`)
  let deleted = 0
  let cursor = '0'
  do {
    const [next, keys] = await redisCommand(['SCAN', cursor, 'MATCH', `${dep.prefix}*`, 'COUNT', '1000'])
    if (keys.length) deleted += await redisCommand(['DEL', ...keys])
    cursor = next
  } while (cursor !== '0')
  return deleted
}

async function dropDatabase (dep) {
  const client = new PgClient({ ...PG, database: 'postgres' })
  await client.connect()
  try {
    await client.query(`DROP DATABASE IF EXISTS "${dep.dbName}" WITH (FORCE)`)
  } finally {
    await client.end()
  }
}

/** Removes what `dep` left in Redis, PostgreSQL and the file system (services already stopped). */
async function cleanup (dep) {
  await deleteKeys(dep)
  await dropDatabase(dep)
  for (const dir of dep.dataDirs) fs.rmSync(dir, { recursive: true, force: true })
}

module.exports = {
  cleanup,
  deleteKeys,
  deployment,
  launchChromium,
  startDocroom,
  stopDocroom
}
