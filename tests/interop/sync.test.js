'use strict'
// Real y-websocket providers editing through docroom: concurrent edits converge, and a provider
// that joins later receives the whole document.

const assert = require('node:assert/strict')
const { Y, eventually, scenario, sleep, snapshot } = require('./lib/docroom')

/** The server's own copy, from `GET /docs/{id}`: its base64 state loaded into a fresh Y.Doc. */
async function serverDoc (app, docId) {
  const { status, body, text } = await app.get(`/docs/${docId}`)
  assert.equal(status, 200, text)
  assert.equal(body.kind, 'yjs', text)
  const doc = new Y.Doc()
  Y.applyUpdate(doc, Buffer.from(body.state, 'base64'))
  return { doc, body }
}

scenario('two providers editing a Y.Text and a Y.Map concurrently converge', async (ctx) => {
  const app = await ctx.docroom()
  const a = await ctx.provider(app, 'converge')
  const b = await ctx.provider(app, 'converge')
  const [ta, tb] = [a.doc.getText('text'), b.doc.getText('text')]
  const [ma, mb] = [a.doc.getMap('map'), b.doc.getMap('map')]

  // Both sides edit without waiting for each other, so most edits are concurrent; a short pause
  // now and then lets some of the other side's edits arrive in between.
  let inserted = 0
  let deleted = 0
  const rounds = 60
  for (let i = 0; i < rounds; i++) {
    const pa = Math.floor(Math.random() * (ta.length + 1))
    const pb = Math.floor(Math.random() * (tb.length + 1))
    ta.insert(pa, `<a${i}>`)
    tb.insert(pb, `<b${i}>`)
    inserted += `<a${i}>`.length + `<b${i}>`.length
    ma.set(`a${i}`, { n: i, from: 'a' })
    mb.set(`b${i}`, [i, 'b'])
    ma.set('contested', `a${i}`)
    mb.set('contested', `b${i}`)
    if (i % 10 === 9) {
      ta.delete(0, 1) // only `a` deletes, so exactly these characters go
      deleted += 1
      mb.delete(`b${i - 1}`)
    }
    if (i % 7 === 0) await sleep(5)
  }

  const converged = await eventually('both documents to converge', () => {
    const [sa, sb] = [snapshot(a.doc), snapshot(b.doc)]
    assert.deepEqual(sa, sb)
    return sa
  })
  assert.equal(converged.text.length, inserted - deleted, 'text length')
  for (let i = 0; i < rounds; i++) {
    assert.deepEqual(converged.map[`a${i}`], { n: i, from: 'a' })
    if (i % 10 === 8) assert.equal(converged.map[`b${i}`], undefined, `b${i} was deleted`)
    else assert.deepEqual(converged.map[`b${i}`], [i, 'b'])
  }
  assert.ok(['a59', 'b59'].includes(converged.map.contested), `contested: ${converged.map.contested}`)
  // The state vectors of both clients are in (each made 1 + ... edits of its own).
  assert.deepEqual(Object.keys(converged.stateVector).map(Number).sort(),
    [a.doc.clientID, b.doc.clientID].sort())

  // The server's document is the same one, and `GET /docs` renders it.
  await eventually('the server document to match', async () => {
    const { doc, body } = await serverDoc(app, 'converge')
    assert.deepEqual(snapshot(doc), converged)
    assert.equal(body.content.text, converged.text)
    assert.deepEqual(body.content.map, converged.map)
  })
})

scenario('a provider that joins later receives the full state', async (ctx) => {
  const app = await ctx.docroom()
  const a = await ctx.provider(app, 'late')
  const b = await ctx.provider(app, 'late')
  const text = a.doc.getText('text')
  text.insert(0, 'hello from a')
  b.doc.getMap('map').set('from-b', { nested: [1, 2, 3] })
  // A step 2 far over actix's 64 KiB frame default: realistic documents are that large.
  const big = 'lorem ipsum dolor sit amet '.repeat(8000)
  b.doc.getText('text').insert(0, big)
  const arr = a.doc.getArray('list')
  for (let i = 0; i < 200; i++) arr.push([`item ${i}`])
  for (let i = 0; i < 50; i++) arr.delete(i, 1)
  const roots = { text: 'text', map: 'map', list: 'array' }
  const settled = await eventually('a and b to converge', () => {
    const [sa, sb] = [snapshot(a.doc, roots), snapshot(b.doc, roots)]
    assert.deepEqual(sa, sb)
    assert.ok(sa.text.includes(big) && sa.text.includes('hello from a'))
    return sa
  })

  const c = await ctx.provider(app, 'late')
  // Synced means c has processed the server's step 2: everything must be there at once.
  assert.deepEqual(snapshot(c.doc, roots), settled)
  assert.equal(c.doc.getArray('list').length, 150)

  // And c is a full member: its edit reaches the others.
  c.doc.getMap('map').set('from-c', true)
  c.doc.getText('text').insert(0, '[c]')
  await eventually('c\'s edit to reach a and b', () => {
    for (const p of [a, b]) {
      assert.equal(p.doc.getMap('map').get('from-c'), true)
      assert.ok(p.doc.getText('text').toString().startsWith('[c]'))
    }
    assert.deepEqual(snapshot(a.doc, roots), snapshot(c.doc, roots))
  })
})
