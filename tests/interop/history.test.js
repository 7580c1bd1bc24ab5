'use strict'
// SPEC §10: a document's history, with real providers as its members. A restore is a live
// change: members that stay connected (a Hocuspocus provider and a y-websocket provider) see the
// old content come back without reconnecting, and go on typing. Versions live in PostgreSQL, so
// every replica of a deployment lists and reads the same ones, and a SIGKILLed replica takes
// none of them with it.

const assert = require('node:assert/strict')
const { eventually, scenario } = require('./lib/docroom')
const { VERSIONS, openSynced } = require('./lib/hocuspocus')

const NEWEST = Object.keys(VERSIONS).sort((x, y) => parseInt(x) - parseInt(y)).pop()
/** Versions are cut at most this often while a document is edited. */
const HISTORY = { DOCROOM__HISTORY__INTERVAL_MS: '300' }

/** `GET /docs/{doc}/versions`, newest first. */
async function versions (app, doc) {
  const { status, body, text } = await app.get(`/docs/${encodeURIComponent(doc)}/versions`)
  assert.equal(status, 200, text)
  assert.ok(Array.isArray(body), text)
  return body
}

/** The `t` text of `doc` at version `v` as `GET /docs/{doc}/versions/{v}` renders it. */
async function textAt (app, doc, v) {
  const { status, body, text } = await app.get(`/docs/${encodeURIComponent(doc)}/versions/${v}`)
  assert.equal(status, 200, text)
  assert.equal(body.kind, 'yjs', text)
  return body.content.t
}

/** The shape SPEC §10 gives a listed version. */
function assertListed (v) {
  assert.ok(Number.isInteger(v.version) && v.version > 0, JSON.stringify(v))
  assert.ok(!Number.isNaN(Date.parse(v.at)), `at: ${JSON.stringify(v)}`)
  assert.ok(Array.isArray(v.users), JSON.stringify(v))
  assert.match(v.hash, /^[0-9a-f]{64}$/)
  assert.ok(Number.isInteger(v.bytes) && v.bytes > 0, JSON.stringify(v))
}

/** Waits for a listed version that reads `want`; answers it (the newest such). */
async function versionReading (app, doc, want, timeout = 15000) {
  return eventually(`a version of ${doc} reading ${JSON.stringify(want)}`, async () => {
    const listed = await versions(app, doc)
    const numbers = listed.map((v) => v.version)
    assert.deepEqual(numbers, [...numbers].sort((x, y) => y - x), 'not newest first')
    for (const v of listed) {
      assertListed(v)
      if (await textAt(app, doc, v.version) === want) return v
    }
    throw new Error(`none of ${JSON.stringify(listed)} reads ${JSON.stringify(want)}`)
  }, timeout)
}

scenario(`a restore reaches a ${NEWEST} Hocuspocus provider and a y-websocket provider live: no reconnect, and both type on from the restored text`, async (ctx) => {
  const app = await ctx.docroom({ env: HISTORY })
  const doc = 'history-live'
  const hp = await openSynced(ctx, NEWEST, app, doc)
  const ys = await ctx.provider(app, doc)
  const hpText = () => hp.document.getText('t').toString()
  const ysText = () => ys.doc.getText('t').toString()

  // Every connect, disconnect and close either provider goes through from now on.
  const seen = { hp: [], ys: [] }
  const socket = hp.configuration.websocketProvider
  for (const event of ['connect', 'disconnect', 'close', 'open']) {
    socket.on(event, () => seen.hp.push(event))
  }
  ys.on('status', ({ status }) => seen.ys.push(status))
  ys.on('connection-close', () => seen.ys.push('connection-close'))
  ys.on('connection-error', () => seen.ys.push('connection-error'))
  const hpWs = socket.webSocket
  const ysWs = ys.ws
  assert.ok(hpWs && ysWs, 'both providers have a socket')

  hp.document.getText('t').insert(0, 'alpha')
  await eventually('alpha at both members', () => assert.equal(ysText(), 'alpha'))
  const alpha = await versionReading(app, doc, 'alpha')

  ys.doc.getText('t').insert(5, ' beta')
  await eventually('" beta" at both members', () => {
    assert.equal(hpText(), 'alpha beta')
    assert.equal(ysText(), 'alpha beta')
  })
  await eventually('" beta" acknowledged', async () => {
    const { body } = await app.get(`/docs/${doc}`)
    assert.equal(body.content.t, 'alpha beta')
  })

  const before = await versions(app, doc)
  const restored = await app.post(`/docs/${doc}/restore`, { version: alpha.version })
  assert.equal(restored.status, 200, restored.text)
  assert.match(restored.body.hash, /^[0-9a-f]{64}$/, restored.text)
  assert.ok(['cache', 'fallback', 'duplicate'].includes(restored.body.stored), restored.text)

  await eventually('both members back at "alpha"', () => {
    assert.equal(hpText(), 'alpha')
    assert.equal(ysText(), 'alpha')
  })
  const { body: now } = await app.get(`/docs/${doc}`)
  assert.equal(now.content.t, 'alpha')

  // The restore cut the content it replaced (unless the last version already held it) and then
  // what it restored: by the caller ("server" without a token), newer than what it replaced.
  const listed = await versions(app, doc)
  const newestBefore = Math.max(...before.map((v) => v.version))
  const [restoredVersion] = listed
  assert.ok(restoredVersion.version > newestBefore, `no version after the restore: ${JSON.stringify(listed)}`)
  assert.equal(await textAt(app, doc, restoredVersion.version), 'alpha')
  assert.deepEqual(restoredVersion.users, ['server'])
  assert.equal(restoredVersion.hash, now.hash, 'the restored version is the content GET /docs reads')
  const replaced = []
  for (const v of listed.filter((v) => v.version > alpha.version && v.version < restoredVersion.version)) {
    if (await textAt(app, doc, v.version) === 'alpha beta') replaced.push(v.version)
  }
  assert.ok(replaced.length > 0, `no version of the replaced "alpha beta" before the restored one: ${JSON.stringify(listed)}`)

  hp.document.getText('t').insert(5, ' gamma')
  await eventually('both members at "alpha gamma"', () => {
    assert.equal(hpText(), 'alpha gamma')
    assert.equal(ysText(), 'alpha gamma')
  })
  ys.doc.getText('t').insert(0, '> ')
  await eventually('both members at "> alpha gamma"', () => {
    assert.equal(hpText(), '> alpha gamma')
    assert.equal(ysText(), '> alpha gamma')
  })
  await eventually('GET /docs at "> alpha gamma"', async () => {
    const { body } = await app.get(`/docs/${doc}`)
    assert.equal(body.content.t, '> alpha gamma')
  })

  // Neither provider's connection closed or was replaced on the way.
  assert.deepEqual(seen, { hp: [], ys: [] })
  assert.equal(socket.webSocket, hpWs, 'the hocuspocus provider opened another socket')
  assert.equal(ys.ws, ysWs, 'the y-websocket provider opened another socket')
  assert.equal(ys.wsconnected, true)
  assert.equal(hp.events.closes + hp.events.disconnects, 0)

  // The version read back is the document as it was: its old version still reads "alpha".
  assert.equal(await textAt(app, doc, alpha.version), 'alpha')
})

scenario('versions cut on one replica are listed and read alike by another, and by both after the first is SIGKILLed and restarted', async (ctx) => {
  const a = await ctx.docroom({ env: { ...HISTORY, DOCROOM_REPLICA_ID: 'history-a' } })
  const b = await ctx.docroom({ peerOf: a, env: { ...HISTORY, DOCROOM_REPLICA_ID: 'history-b' } })
  const doc = 'history-replicas'
  const p = await ctx.provider(a, doc)
  p.doc.getText('t').insert(0, 'typed on a')

  const v = await versionReading(b, doc, 'typed on a')
  assert.deepEqual(v.users, ['anonymous'])
  const listedOnB = await versions(b, doc)
  assert.deepEqual(await versions(a, doc), listedOnB)

  // A SIGKILL: no drain, no goodbye.
  p.shouldConnect = false
  assert.deepEqual(await a.stop('SIGKILL'), { code: null, signal: 'SIGKILL' })

  assert.equal(await textAt(b, doc, v.version), 'typed on a')
  const stillOnB = await versions(b, doc)
  for (const listed of listedOnB) {
    assert.deepEqual(stillOnB.find((x) => x.version === listed.version), listed, 'a version changed after the SIGKILL')
  }

  await a.start()
  assert.equal(await textAt(a, doc, v.version), 'typed on a')
  const onA = await versions(a, doc)
  for (const listed of listedOnB) {
    assert.deepEqual(onA.find((x) => x.version === listed.version), listed, 'a version changed after the restart')
  }

  // History goes on after the crash, with larger numbers, from a member of the other replica.
  const q = await ctx.provider(b, doc)
  assert.equal(q.doc.getText('t').toString(), 'typed on a')
  q.doc.getText('t').insert(10, ', then on b')
  const later = await versionReading(a, doc, 'typed on a, then on b')
  assert.ok(later.version > v.version, `${later.version} after ${v.version}`)
  assert.equal(await textAt(b, doc, later.version), 'typed on a, then on b')
  assert.equal(await textAt(b, doc, v.version), 'typed on a')
})

scenario('with a long interval, a version is cut when the last member leaves', async (ctx) => {
  const app = await ctx.docroom({ env: { DOCROOM__HISTORY__INTERVAL_MS: '600000' } })
  const doc = 'history-leave'
  const p = await ctx.provider(app, doc)
  p.doc.getText('t').insert(0, 'first')
  p.doc.getText('t').insert(5, ' and last')
  await eventually('the edits acknowledged', async () => {
    const { body } = await app.get(`/docs/${doc}`)
    assert.equal(body.content.t, 'first and last')
  })
  p.destroy()
  const last = await versionReading(app, doc, 'first and last')
  assert.deepEqual(last.users, ['anonymous'])
  const { body: now } = await app.get(`/docs/${doc}`)
  assert.equal(last.hash, now.hash, 'the version cut on leaving is the content at rest')
  // Within the interval, leaving is what cut it: the only version.
  assert.deepEqual((await versions(app, doc)).map((v) => v.version), [last.version])
})

scenario('a restore posted to a replica with no member reaches members on two other replicas live', async (ctx) => {
  const a = await ctx.docroom({ env: { ...HISTORY, DOCROOM_REPLICA_ID: 'restore-a' } })
  const b = await ctx.docroom({ peerOf: a, env: { ...HISTORY, DOCROOM_REPLICA_ID: 'restore-b' } })
  const c = await ctx.docroom({ peerOf: a, env: { ...HISTORY, DOCROOM_REPLICA_ID: 'restore-c' } })
  const doc = 'history-across'
  const hp = await openSynced(ctx, NEWEST, a, doc)
  const ys = await ctx.provider(b, doc)
  const texts = () => [hp.document.getText('t').toString(), ys.doc.getText('t').toString()]
  const reconnects = []
  hp.configuration.websocketProvider.on('disconnect', () => reconnects.push('hp'))
  ys.on('connection-close', () => reconnects.push('ys'))

  ys.doc.getText('t').insert(0, 'kept')
  await eventually('"kept" on both', () => assert.deepEqual(texts(), ['kept', 'kept']))
  const kept = await versionReading(c, doc, 'kept')
  hp.document.getText('t').insert(4, ' and lost')
  await eventually('" and lost" on both', () => assert.deepEqual(texts(), ['kept and lost', 'kept and lost']))
  await eventually('" and lost" acknowledged', async () => {
    const { body } = await c.get(`/docs/${doc}`)
    assert.equal(body.content.t, 'kept and lost')
  })

  const restored = await c.post(`/docs/${doc}/restore`, { version: kept.version })
  assert.equal(restored.status, 200, restored.text)
  await eventually('both members back at "kept"', () => assert.deepEqual(texts(), ['kept', 'kept']))
  ys.doc.getText('t').insert(4, '!')
  await eventually('both members at "kept!"', () => assert.deepEqual(texts(), ['kept!', 'kept!']))
  for (const app of [a, b, c]) {
    await eventually(`GET /docs on ${app.env.DOCROOM_REPLICA_ID}`, async () => {
      const { body } = await app.get(`/docs/${doc}`)
      assert.equal(body.content.t, 'kept!')
    })
  }
  assert.deepEqual(reconnects, [])
})
