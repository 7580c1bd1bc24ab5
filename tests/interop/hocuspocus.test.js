'use strict'
// SPEC §5b: the published @hocuspocus/provider 2.x, 3.x and 4.x, unchanged, against docroom's
// /hocuspocus — alone, together, beside y-websocket, with tokens, and across a restart.

const assert = require('node:assert/strict')
const { eventually, scenario, sleep } = require('./lib/docroom')
const { VERSIONS, jwt, openHp, openSocket, openSynced, synced } = require('./lib/hocuspocus')

const SECRET = 'interop-hocuspocus-secret'
const text = (p) => p.document.getText('t').toString()

for (const version of Object.keys(VERSIONS)) {
  scenario(`${version}: two providers sync, converge, see each other's awareness, and end with no unsynced changes`, async (ctx) => {
    const app = await ctx.docroom()
    const a = await openSynced(ctx, version, app, 'hp-doc', { awareness: { name: 'a' } })
    const b = await openSynced(ctx, version, app, 'hp-doc', { awareness: { name: 'b' } })

    a.document.getText('t').insert(0, 'from a. ')
    b.document.getText('t').insert(0, 'from b. ')

    await eventually('convergence', () => {
      assert.equal(text(a), text(b))
      assert.match(text(a), /from a/)
      assert.match(text(a), /from b/)
    })
    await eventually('no unsynced changes', () => {
      assert.equal(a.hasUnsyncedChanges, false)
      assert.equal(b.hasUnsyncedChanges, false)
    })
    const names = (p) => [...p.awareness.getStates().values()].map((s) => s.user && s.user.name).filter(Boolean).sort()
    await eventually('awareness both ways', () => {
      assert.deepEqual(names(a), ['a', 'b'])
      assert.deepEqual(names(b), ['a', 'b'])
    })
    b.destroy()
    await eventually('b removed from a\'s awareness', () => assert.deepEqual(names(a), ['a']))
  })

  scenario(`${version}: two documents over one socket are routed to their own documents`, async (ctx) => {
    const app = await ctx.docroom()
    const socket = openSocket(ctx, version, app)
    const one = await synced(openHp(ctx, version, app, 'hp-one', { socket }))
    const two = await synced(openHp(ctx, version, app, 'hp-two', { socket }))
    const oneElsewhere = await openSynced(ctx, version, app, 'hp-one')
    const twoElsewhere = await openSynced(ctx, version, app, 'hp-two')

    one.document.getText('t').insert(0, 'first')
    two.document.getText('t').insert(0, 'second')

    await eventually('each document reached its own peer', () => {
      assert.equal(text(oneElsewhere), 'first')
      assert.equal(text(twoElsewhere), 'second')
    })
    await eventually('no unsynced changes', () => {
      assert.equal(one.hasUnsyncedChanges, false)
      assert.equal(two.hasUnsyncedChanges, false)
    })
  })

  scenario(`${version}: a bad token fails authentication; a read-only token syncs, and its edits reach nobody`, async (ctx) => {
    const app = await ctx.docroom({ env: { DOCROOM_JWT_SECRET: SECRET } })
    const bad = openHp(ctx, version, app, 'hp-secret', { token: 'not-a-token' })
    await eventually('authenticationFailed', () => assert.equal(bad.events.failed.length, 1))

    const writer = await openSynced(ctx, version, app, 'hp-secret', { token: jwt(SECRET, ['hp-secret'], 'rw') })
    writer.document.getText('t').insert(0, 'written')
    const reader = await openSynced(ctx, version, app, 'hp-secret', { token: jwt(SECRET, ['hp-secret'], 'ro') })
    await eventually('the reader has the text', () => assert.equal(text(reader), 'written'))
    await eventually('a synced reader has no unsynced changes', () => assert.equal(reader.hasUnsyncedChanges, false))
    // 2.x's onAuthenticated carries no scope.
    if (version !== '2.x') assert.deepEqual(reader.events.authenticated, ['readonly'])

    reader.document.getText('t').insert(0, 'refused ')
    writer.document.getText('t').insert(7, '!')
    await eventually('the writer\'s later edit reaches the reader', () => assert.equal(text(reader), 'refused written!'))
    const late = await openSynced(ctx, version, app, 'hp-secret', { token: jwt(SECRET, ['hp-secret'], 'rw') })
    assert.equal(text(writer), 'written!')
    assert.equal(text(late), 'written!')
  })

  scenario(`${version}: a document survives a restart with Redis emptied, beside a y-websocket provider, under an id with / : spaces and non-ASCII`, async (ctx) => {
    const app = await ctx.docroom()
    const id = 'org/team: notes é文'
    const hp = await openSynced(ctx, version, app, id)
    const ys = await ctx.provider(app, encodeURIComponent(id))
    hp.document.getText('t').insert(0, 'hocuspocus ')
    ys.doc.getText('t').insert(0, 'y-websocket ')
    await eventually('both protocols converge', () => {
      assert.equal(text(hp), ys.doc.getText('t').toString())
      assert.match(text(hp), /hocuspocus/)
      assert.match(text(hp), /y-websocket/)
    })
    await eventually('stored', () => assert.equal(hp.hasUnsyncedChanges, false))
    const expected = text(hp)

    hp.destroy()
    ys.destroy()
    await app.stop()
    await app.deleteRedisKeys()
    await app.start()

    const again = await openSynced(ctx, version, app, id)
    assert.equal(text(again), expected)
    const { status, body } = await app.get(`/docs/${encodeURIComponent(id)}`)
    assert.equal(status, 200)
    assert.equal(body.content.t, expected)
  })
}

scenario('a lone idle provider of each version, with default timers, is still connected after 70 s', async (ctx) => {
  const app = await ctx.docroom({ env: { DOCROOM__SESSION__HEARTBEAT_INTERVAL_MS: '5000', DOCROOM__SESSION__CLIENT_TIMEOUT_MS: '60000' } })
  const providers = {}
  for (const version of Object.keys(VERSIONS)) {
    providers[version] = await openSynced(ctx, version, app, `hp-idle-${version}`)
  }

  await sleep(70000)

  for (const [version, p] of Object.entries(providers)) {
    assert.equal(p.events.closes, 0, `${version} closed`)
    assert.equal(p.events.disconnects, 0, `${version} disconnected`)
    assert.equal(p.configuration.websocketProvider.status, 'connected', version)
  }
}, { timeout: 120000 })
