'use strict'
// A real load balancer in front of docroom (SPEC section 8, issue 12 item 6): Debian's nginx,
// configured by the repository's config/nginx/docroom.conf (round robin, no stickiness,
// WebSocket upgrade), with real y-websocket providers connecting through it.

const assert = require('node:assert/strict')
const { Y, eventually, scenario } = require('./lib/docroom')
const { findNginx } = require('./lib/nginx')

const skip = findNginx() ? false : 'nginx is not installed (scripts/test installs it as root: apt-get install nginx)'

const TYPISTS = 4

/** Types one marked line per provider, then waits until every provider holds every line. */
async function typeAndConverge (providers, doc) {
  providers.forEach((p, i) => p.doc.getText('text').insert(0, `[typist ${i}]`))
  await eventually('every provider to hold every typist\'s line', () => {
    for (const [n, p] of providers.entries()) {
      const text = p.doc.getText('text').toString()
      for (let i = 0; i < providers.length; i++) {
        assert.ok(text.includes(`[typist ${i}]`), `provider ${n} on ${doc} lacks typist ${i}: ${JSON.stringify(text)}`)
      }
    }
  }, 20000)
}

/** After the replicas stopped: the row in PostgreSQL holds every typist's line. */
async function assertPersisted (app, doc, typists) {
  const row = await app.pgRow(doc)
  assert.ok(row && row.state, `no yjs row for ${doc} in postgres`)
  const loaded = new Y.Doc()
  Y.applyUpdate(loaded, row.state)
  const text = loaded.getText('text').toString()
  for (let i = 0; i < typists; i++) assert.ok(text.includes(`[typist ${i}]`), `postgres lacks typist ${i}: ${JSON.stringify(text)}`)
}

scenario('providers through nginx in front of one replica converge and the document reaches PostgreSQL', async (ctx) => {
  const app = await ctx.docroom({ env: { DOCROOM_REPLICA_ID: 'solo' } })
  const lb = await ctx.nginx([app])
  const providers = []
  for (let i = 0; i < TYPISTS; i++) providers.push(await ctx.provider(lb, 'through-nginx'))

  await typeAndConverge(providers, 'through-nginx')
  const { body: rooms } = await app.get('/admin/rooms')
  assert.deepEqual(rooms.map((r) => [r.doc, r.members]), [['through-nginx', TYPISTS]])

  for (const p of providers) p.destroy()
  assert.deepEqual(await app.stop(), { code: 0, signal: null })
  await assertPersisted(app, 'through-nginx', TYPISTS)
}, { skip })

scenario('providers spread by nginx over two replicas converge and PostgreSQL holds every edit after both stop', async (ctx) => {
  const a = await ctx.docroom({ env: { DOCROOM_REPLICA_ID: 'replica-a' } })
  const b = await ctx.docroom({ peerOf: a, env: { DOCROOM_REPLICA_ID: 'replica-b' } })
  const lb = await ctx.nginx([a, b])
  const providers = []
  for (let i = 0; i < TYPISTS; i++) providers.push(await ctx.provider(lb, 'spread'))

  // Round robin without stickiness: the document has a room, with members, on both replicas.
  await eventually('the room on both replicas', async () => {
    for (const app of [a, b]) {
      const { body } = await app.get('/admin/rooms')
      assert.ok(body.some((r) => r.doc === 'spread' && r.members >= 1), `${app.env.DOCROOM_REPLICA_ID}: ${JSON.stringify(body)}`)
    }
  })
  // The replicas of one deployment see each other.
  await eventually('each replica listing both', async () => {
    for (const app of [a, b]) {
      const { body } = await app.get('/admin/replicas')
      assert.deepEqual(body.map((r) => r.replica), ['replica-a', 'replica-b'])
    }
  })

  // Needs cross-replica fan-out: the providers on a receive b's edits only through Redis.
  await typeAndConverge(providers, 'spread')

  for (const p of providers) p.destroy()
  assert.deepEqual(await a.stop(), { code: 0, signal: null })
  assert.deepEqual(await b.stop(), { code: 0, signal: null })
  await assertPersisted(a, 'spread', TYPISTS)
}, { skip })
