'use strict'
// Redis dies in the middle of an editing session (SIGKILL, then back empty): the providers keep
// syncing through the breaker's fallback, and nothing edited before, during or after is lost,
// not even through a SIGKILL of the service afterwards.

const assert = require('node:assert/strict')
const { eventually, scenario, sleep, snapshot, Y } = require('./lib/docroom')

async function breakerState (app) {
  const { status, body, text } = await app.get('/admin/breaker')
  assert.equal(status, 200, text)
  return body.state
}

scenario('a Redis outage does not stop the providers from syncing and loses nothing', async (ctx) => {
  const redis = await ctx.privateRedis()
  const app = await ctx.docroom({ redis })
  const a = await ctx.provider(app, 'outage')
  const b = await ctx.provider(app, 'outage')
  const [ta, tb] = [a.doc.getText('text'), b.doc.getText('text')]
  const [ma, mb] = [a.doc.getMap('map'), b.doc.getMap('map')]
  const converge = (what) => eventually(what, () => {
    const [sa, sb] = [snapshot(a.doc), snapshot(b.doc)]
    assert.deepEqual(sa, sb)
    return sa
  })

  ta.insert(0, 'before;')
  mb.set('before', true)
  await converge('the edits before the outage to sync')
  await eventually('the document to reach Redis', async () => {
    const keys = await app.redisKeys()
    assert.ok(keys.includes('doc:outage:log'), `keys: ${keys}`)
  })

  redis.kill()
  // Edits while Redis is dead, first before the breaker has noticed, then after it has opened.
  for (let i = 0; i < 5; i++) {
    ta.insert(ta.length, `during-a${i};`)
    mb.set(`during-b${i}`, i)
    await sleep(50)
  }
  await converge('the edits during the outage to sync')
  await eventually('the breaker to open', async () => assert.equal(await breakerState(app), 'open'))
  tb.insert(0, 'during-open;')
  ma.set('during-open', true)
  const during = await converge('the edits with the breaker open to sync')
  assert.equal(during.map['during-open'], true)

  await redis.restart() // back, and empty
  await eventually('the breaker to close again', async () => assert.equal(await breakerState(app), 'closed'), 20000)
  ta.insert(ta.length, 'after;')
  mb.set('after', 'yes')
  const expected = await converge('the edits after the outage to sync')
  for (const part of ['before;', 'during-a0;', 'during-a4;', 'during-open;', 'after;']) {
    assert.ok(expected.text.includes(part), `${part} in ${expected.text}`)
  }

  // Once the rooms' saves have landed (a round trip each; 600 ms is plenty), all of it counts as
  // acknowledged (SPEC §5):
  // even a SIGKILL now loses none of it. The providers stay connected until the kill, so no
  // leave flush helps; the restarted service and a fresh provider must see it all.
  await sleep(600)
  await app.stop('SIGKILL')
  a.destroy()
  b.destroy()
  await app.start()
  const c = await ctx.provider(app, 'outage')
  assert.deepEqual(snapshot(c.doc), expected)

  // And PostgreSQL has it.
  await eventually('the whole document in PostgreSQL', async () => {
    const row = await app.pgRow('outage')
    assert.ok(row && row.state, 'no state in PostgreSQL')
    assert.equal(row.kind, 'yjs')
    const doc = new Y.Doc()
    Y.applyUpdate(doc, row.state)
    assert.deepEqual(snapshot(doc), expected)
  })
})
