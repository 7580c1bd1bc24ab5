'use strict'
// SPEC §9 webhooks, with real y-websocket providers as the members whose typing and comings and
// goings the events tell: a Node receiver checks every request's signature; a deployment of two
// replicas sends one `document.changed` per window; a receiver that fails gets the same events
// again, same delivery ids, in order; a replica SIGKILLed before a window closes, or in the
// middle of sending it, loses no event.

const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const http = require('node:http')
const WebSocket = require('ws')
const { WebsocketProvider } = require('y-websocket')
const { Y, eventually, scenario, sleep } = require('./lib/docroom')

const SECRET = 'interop-webhook-secret'
const JWT_SECRET = 'interop-webhook-jwt-secret'

/**
 * A webhook receiver on a free port: records every request (raw body, headers, whether its
 * signature is right) and answers what `answer(request, earlier)` says (200 by default; `null`
 * leaves the request hanging).
 */
async function receiver (ctx, answer = () => 200) {
  const requests = []
  const hanging = []
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks)
      const signature = String(req.headers['x-docroom-signature'] || '')
      const expected = Buffer.from('sha256=' + crypto.createHmac('sha256', SECRET).update(raw).digest('hex'))
      const given = Buffer.from(signature)
      let body = null
      try { body = JSON.parse(raw.toString('utf8')) } catch {}
      const r = {
        method: req.method,
        path: req.url,
        contentType: req.headers['content-type'],
        event: req.headers['x-docroom-event'],
        delivery: req.headers['x-docroom-delivery'],
        signature,
        valid: given.length === expected.length && crypto.timingSafeEqual(given, expected),
        raw: raw.toString('utf8'),
        body
      }
      r.status = answer(r, requests.slice())
      requests.push(r)
      if (r.status === null) {
        hanging.push(res)
        return
      }
      res.writeHead(r.status, { 'content-type': 'text/plain' })
      res.end(r.status < 300 ? 'ok' : 'not now')
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  ctx.defer(() => {
    server.close()
    server.closeAllConnections()
  })
  const url = `http://127.0.0.1:${server.address().port}/hook`
  return {
    url,
    requests,
    /** The requests answered 2xx, optionally only those of `doc` and `event`. */
    taken (doc, event) {
      return requests.filter((r) => r.status !== null && r.status < 300 &&
        (!doc || (r.body && r.body.doc === doc)) && (!event || r.event === event))
    },
    of (doc) {
      return requests.filter((r) => r.body && r.body.doc === doc)
    }
  }
}

/** Settings of a deployment whose webhooks go to `hook`. */
function settings (hook, extra = {}) {
  return {
    DOCROOM_JWT_SECRET: JWT_SECRET,
    DOCROOM__WEBHOOKS__URL: hook.url,
    DOCROOM__WEBHOOKS__SECRET: SECRET,
    DOCROOM__WEBHOOKS__DEBOUNCE_MS: '300',
    DOCROOM__WEBHOOKS__MAX_WAIT_MS: '2000',
    DOCROOM__WEBHOOKS__POLL_MS: '50',
    DOCROOM__WEBHOOKS__TIMEOUT_MS: '2000',
    ...extra
  }
}

/** A token for `sub` on every document. */
function token (sub) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const head = b64({ alg: 'HS256', typ: 'JWT' })
  const body = b64({ docs: ['*'], scope: 'rw', sub, exp: Math.floor(Date.now() / 1000) + 3600 })
  const sig = crypto.createHmac('sha256', JWT_SECRET).update(`${head}.${body}`).digest('base64url')
  return `${head}.${body}.${sig}`
}

/** A synced y-websocket provider of `doc` on `app` whose token names `sub` (lib/docroom's way). */
async function member (ctx, app, doc, sub) {
  const provider = new WebsocketProvider(app.yjsUrl, doc, new Y.Doc(), {
    WebSocketPolyfill: WebSocket,
    disableBc: true,
    params: { token: token(sub) }
  })
  ctx.providers.push(provider)
  await eventually(`${sub}'s provider on ${doc} to sync`, () => assert.ok(provider.synced, 'not synced'))
  return provider
}

/** `GET /docs/{doc}` with a backend token: its hash and text. */
async function read (app, doc) {
  const reply = await fetch(app.url(`/docs/${doc}`), { headers: { authorization: `Bearer ${token('backend')}` } })
  assert.equal(reply.status, 200)
  const body = await reply.json()
  return { hash: body.hash, text: body.content.t }
}

/** What every request must be: a signed POST of JSON whose body agrees with its headers. */
function assertWellFormed (r) {
  const what = `${r.event} ${r.delivery}: ${r.raw}`
  assert.equal(r.method, 'POST', what)
  assert.match(String(r.contentType), /^application\/json/, what)
  assert.equal(r.valid, true, `bad signature ${r.signature} on ${what}`)
  assert.ok(r.body, `not JSON: ${what}`)
  assert.equal(r.body.event, r.event, what)
  assert.equal(r.body.delivery, r.delivery, what)
  assert.match(r.delivery, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, what)
  assert.ok(['document.changed', 'document.stored', 'client.connected', 'client.disconnected'].includes(r.event), what)
  assert.equal(r.body.kind, 'yjs', what)
  assert.ok(!Number.isNaN(Date.parse(r.body.at)), what)
  assert.ok(Array.isArray(r.body.users), what)
  if (r.body.hash !== null) assert.match(r.body.hash, /^[0-9a-f]{64}$/, what)
}

/** Distinct delivery ids among `requests`, in the order first seen. */
const deliveries = (requests) => [...new Set(requests.map((r) => r.delivery))]

scenario('two replicas, a member typing on each within one window: one signed document.changed naming both, and client.connected from each replica', async (ctx) => {
  const hook = await receiver(ctx)
  const a = await ctx.docroom({ env: settings(hook, { DOCROOM_REPLICA_ID: 'hook-a' }) })
  const b = await ctx.docroom({ peerOf: a, env: settings(hook, { DOCROOM_REPLICA_ID: 'hook-b' }) })
  const doc = 'hooked-together'
  const alice = await member(ctx, a, doc, 'alice')
  const bob = await member(ctx, b, doc, 'bob')

  // Each client's event names its sub and the replica it connected to.
  await eventually('client.connected for alice and bob', () => {
    const who = hook.taken(doc, 'client.connected').map((r) => `${r.body.users.join(',')}@${r.body.replica}`).sort()
    assert.deepEqual(who, ['alice@hook-a', 'bob@hook-b'])
  })

  alice.doc.getText('t').insert(0, 'alice ')
  bob.doc.getText('t').insert(0, 'bob ')
  await eventually('both edits everywhere', async () => {
    for (const p of [alice, bob]) {
      assert.match(p.doc.getText('t').toString(), /alice/)
      assert.match(p.doc.getText('t').toString(), /bob/)
    }
    const text = (await read(b, doc)).text
    assert.equal(text, alice.doc.getText('t').toString())
  })
  const typed = await read(a, doc)

  await eventually('a document.changed', () => assert.ok(hook.taken(doc, 'document.changed').length >= 1), 15000)
  // Past the window's longest end (max_wait_ms) and a few polls more: no other one comes.
  await sleep(3000)
  const changed = hook.of(doc).filter((r) => r.event === 'document.changed')
  assert.equal(deliveries(changed).length, 1, `document.changed events: ${changed.map((r) => r.raw).join('\n')}`)
  const [first] = changed
  assert.deepEqual(first.body.users, ['alice', 'bob'])
  assert.equal(first.body.hash, typed.hash, 'the event names the content the window ended with')
  assert.equal(first.status, 200)

  // A later window is its own event, naming only who typed in it.
  bob.doc.getText('t').insert(0, 'again ')
  await eventually('a second document.changed', () => {
    const ids = deliveries(hook.taken(doc, 'document.changed'))
    assert.equal(ids.length, 2)
  }, 15000)
  const second = hook.taken(doc, 'document.changed').find((r) => r.delivery !== first.delivery)
  assert.deepEqual(second.body.users, ['bob'])
  assert.ok(Date.parse(second.body.at) > Date.parse(first.body.at))
  assert.equal(second.body.hash, (await read(b, doc)).hash)

  // PostgreSQL's commits are told too: the last document.stored names the content typed.
  const final = await read(b, doc)
  await eventually('a document.stored of the final content', async () => {
    const hashes = hook.taken(doc, 'document.stored').map((r) => r.body.hash)
    assert.ok(hashes.includes(final.hash), `${final.hash} not in ${JSON.stringify(hashes)}`)
  }, 15000)

  for (const r of hook.requests) assertWellFormed(r)
})

scenario('a receiver that fails gets every failed event again, same delivery id and body, one document\'s events in order', async (ctx) => {
  // 500 for the first two requests, and for the first attempt of every delivery after them.
  const hook = await receiver(ctx, (r, earlier) =>
    earlier.length < 2 || !earlier.some((e) => e.delivery === r.delivery) ? 500 : 200)
  // No timed flushes: PostgreSQL gets the document when the test says so, after the change's
  // window closed, so its document.stored follows its document.changed.
  const app = await ctx.docroom({
    env: settings(hook, {
      DOCROOM__FLUSHER__BASE_PERIOD_MS: '600000',
      DOCROOM__FLUSHER__ERROR_PERIOD_MS: '600000',
      DOCROOM__FLUSHER__MAX_PERIOD_MS: '600000'
    })
  })
  const doc = 'hooked-retry'
  const carol = await member(ctx, app, doc, 'carol')
  carol.doc.getText('t').insert(0, 'carol was here')
  await eventually('the change acknowledged', async () => assert.equal((await read(app, doc)).text, 'carol was here'))

  // The window closed and its event is being tried (behind client.connected, retried first).
  await eventually('a first attempt at document.changed', () =>
    assert.ok(hook.of(doc).some((r) => r.event === 'document.changed')), 20000)
  const flushed = await app.post('/admin/flusher/flush', {})
  assert.equal(flushed.status, 200, flushed.text)
  assert.ok(flushed.body.flushed >= 1, flushed.text)
  await eventually('the document in PostgreSQL', async () => assert.ok(await app.pgRow(doc)))

  await eventually('connected, changed and stored delivered', () => {
    const events = hook.taken(doc).map((r) => r.event)
    assert.deepEqual(events, ['client.connected', 'document.changed', 'document.stored'])
  }, 30000)

  const requests = hook.of(doc)
  for (const r of requests) assertWellFormed(r)
  // Every failed request's event came again, same id and the very same bytes, until taken.
  const failed = requests.filter((r) => r.status === 500)
  assert.ok(failed.length >= 4, `failed: ${failed.map((r) => r.event)}`)
  for (const f of failed) {
    const taken = requests.find((r) => r.delivery === f.delivery && r.status === 200)
    assert.ok(taken, `${f.event} ${f.delivery} never delivered`)
    assert.equal(taken.raw, f.raw, `${f.event} was sent again with another body`)
    assert.equal(taken.signature, f.signature)
  }
  // In order, one at a time: once a document's next event is sent, the one before it never is
  // again, and each ends with its 2xx.
  const ids = requests.map((r) => r.delivery)
  const order = deliveries(requests)
  for (const [i, id] of order.entries()) {
    const [from, to] = [ids.indexOf(id), ids.lastIndexOf(id)]
    assert.ok(ids.slice(from, to + 1).every((x) => x === id), `delivery ${i} interleaved: ${requests.map((r) => `${r.event}:${r.status}`)}`)
    assert.equal(requests[to].status, 200, `delivery ${i} sent after its 2xx or never taken`)
  }
  const attempts = requests.map((r) => `${r.event}:${r.status}`)
  assert.deepEqual(attempts, [
    'client.connected:500', 'client.connected:500', 'client.connected:200',
    'document.changed:500', 'document.changed:200',
    'document.stored:500', 'document.stored:200'
  ])
  const stored = hook.taken(doc, 'document.stored')[0]
  // "hash is what it holds": PostgreSQL's state with the updates appended to it, merged.
  const row = await app.pgRow(doc)
  assert.equal(stored.body.hash, crypto.createHash('sha256').update(row.state).digest('hex'))
  assert.equal(stored.body.hash, (await read(app, doc)).hash)
  assert.deepEqual(hook.taken(doc, 'document.changed')[0].body.users, ['carol'])

  await eventually('the outbox drained, nothing failed for good', async () => {
    const { status, body, text } = await app.get('/admin/webhooks')
    assert.equal(status, 200, text)
    assert.equal(body.enabled, true, text)
    assert.equal(body.pending, 0, text)
    assert.equal(body.failed, 0, text)
    assert.ok(body.delivered >= 3, text)
  })
})

scenario('a replica SIGKILLed before its change\'s window closed: the other replica delivers the document.changed, once', async (ctx) => {
  const hook = await receiver(ctx)
  const slow = { DOCROOM__WEBHOOKS__DEBOUNCE_MS: '3000', DOCROOM__WEBHOOKS__MAX_WAIT_MS: '10000' }
  const a = await ctx.docroom({ env: settings(hook, { ...slow, DOCROOM_REPLICA_ID: 'kill-a' }) })
  const b = await ctx.docroom({ peerOf: a, env: settings(hook, { ...slow, DOCROOM_REPLICA_ID: 'kill-b' }) })
  const doc = 'hooked-killed'
  const dave = await member(ctx, a, doc, 'dave')
  dave.doc.getText('t').insert(0, 'dave typed this')
  await eventually('the change acknowledged', async () => assert.equal((await read(b, doc)).text, 'dave typed this'))
  const typed = await read(b, doc)
  // The recorder writes a new window at once; give it a moment, then no drain, no goodbye.
  await sleep(100)
  dave.shouldConnect = false
  assert.deepEqual(await a.stop('SIGKILL'), { code: null, signal: 'SIGKILL' })
  assert.deepEqual(hook.of(doc).filter((r) => r.event === 'document.changed'), [], 'the window closed before the kill: the test proves nothing')

  const changed = await eventually('document.changed from replica b', () => {
    const taken = hook.taken(doc, 'document.changed')
    assert.equal(taken.length, 1)
    return taken[0]
  }, 30000)
  assertWellFormed(changed)
  assert.deepEqual(changed.body.users, ['dave'])
  assert.equal(changed.body.hash, typed.hash)

  // The killed replica comes back: the window is not sent a second time.
  await a.start()
  await sleep(2000)
  assert.equal(deliveries(hook.of(doc).filter((r) => r.event === 'document.changed')).length, 1)
  for (const r of hook.requests) assertWellFormed(r)
})

scenario('a replica SIGKILLed while the receiver holds its document.changed: another replica sends it again, same delivery id and body', async (ctx) => {
  // The first document.changed request is left unanswered; every other request is taken.
  const hook = await receiver(ctx, (r, earlier) =>
    r.event === 'document.changed' && !earlier.some((e) => e.event === 'document.changed') ? null : 200)
  const a = await ctx.docroom({ env: settings(hook, { DOCROOM_REPLICA_ID: 'mid-a' }) })
  const doc = 'hooked-mid-delivery'
  const erin = await member(ctx, a, doc, 'erin')
  erin.doc.getText('t').insert(0, 'erin typed this')
  const held = await eventually('the document.changed request held', () => {
    const r = hook.of(doc).find((r) => r.event === 'document.changed')
    assert.ok(r)
    return r
  }, 15000)
  erin.shouldConnect = false
  assert.deepEqual(await a.stop('SIGKILL'), { code: null, signal: 'SIGKILL' })

  // A replica of the same deployment, started after the kill, sends it once the lease lapsed.
  const b = await ctx.docroom({ peerOf: a, env: settings(hook, { DOCROOM_REPLICA_ID: 'mid-b' }) })
  const again = await eventually('document.changed sent again', () => {
    const r = hook.taken(doc, 'document.changed')[0]
    assert.ok(r)
    return r
  }, 30000)
  assert.equal(again.delivery, held.delivery)
  assert.equal(again.raw, held.raw)
  assertWellFormed(again)
  assert.deepEqual(again.body.users, ['erin'])
  assert.equal(again.body.hash, (await read(b, doc)).hash)
})
