'use strict'
// A Yjs document outlives its room and the process: once every provider has left, PostgreSQL
// holds it, and a restarted service with an empty Redis serves it to a new provider.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const { Y, eventually, scenario, snapshot } = require('./lib/docroom')

const ROOTS = { text: 'text', map: 'map', list: 'array' }

scenario('after everyone leaves and a restart with Redis emptied, a new provider loads the document from PostgreSQL', async (ctx) => {
  const app = await ctx.docroom()
  const a = await ctx.provider(app, 'persist')
  const b = await ctx.provider(app, 'persist')
  a.doc.getText('text').insert(0, 'Persisted text, ')
  b.doc.getText('text').insert(0, 'with edits from both. ')
  a.doc.getMap('map').set('title', 'A document')
  b.doc.getMap('map').set('tags', ['yjs', 'docroom'])
  b.doc.getArray('list').push([1, 2, 3])
  a.doc.getText('text').delete(0, 5)
  const expected = await eventually('a and b to converge', () => {
    const [sa, sb] = [snapshot(a.doc, ROOTS), snapshot(b.doc, ROOTS)]
    assert.deepEqual(sa, sb)
    assert.deepEqual(sa.list, [1, 2, 3])
    return sa
  })

  // Everyone leaves; the last one out makes the room persist the document to PostgreSQL.
  a.destroy()
  b.destroy()
  const row = await eventually('the document in PostgreSQL', async () => {
    const row = await app.pgRow('persist')
    assert.ok(row, 'no row yet')
    assert.ok(row.state, 'no state yet')
    const doc = new Y.Doc()
    Y.applyUpdate(doc, row.state)
    assert.deepEqual(snapshot(doc, ROOTS), expected)
    // Its room retired: the appended updates are folded into the row's state.
    assert.equal(row.waiting, 0, 'updates not folded yet')
    return row
  })
  assert.equal(row.kind, 'yjs')
  assert.equal(row.content, null, 'a yjs document keeps no jsonb content')
  assert.match(row.content_hash, /^[0-9a-f]{64}$/)

  // Restart with this test's Redis keys gone and an empty data directory: only PostgreSQL is left.
  await app.stop()
  await app.deleteRedisKeys()
  assert.deepEqual(await app.redisKeys(), [])
  fs.rmSync(app.dataDir, { recursive: true, force: true })
  fs.mkdirSync(app.dataDir)
  await app.start()

  const { status, body, text } = await app.get('/docs/persist')
  assert.equal(status, 200, text)
  assert.equal(body.doc, 'persist')
  assert.equal(body.kind, 'yjs')
  assert.equal(body.hash, row.content_hash)
  assert.equal(Buffer.from(body.state, 'base64').toString('hex'), row.state.toString('hex'))
  assert.equal(body.content.text, expected.text)
  assert.deepEqual(body.content.map, expected.map)
  // (body.content.list is not checked here: see rendering.test.js)

  const c = await ctx.provider(app, 'persist')
  assert.deepEqual(snapshot(c.doc, ROOTS), expected)

  // The loaded document is live: editing it goes on from where it was.
  c.doc.getMap('map').set('after-restart', true)
  await eventually('the edit after the restart in GET /docs', async () => {
    const { body } = await app.get('/docs/persist')
    assert.equal(body.content.map['after-restart'], true)
    assert.equal(body.content.text, expected.text)
  })
})
