'use strict'
// SPEC §3 ids as Hocuspocus and y-websocket apps name rooms: y-websocket appends the room name to
// the URL as is, so `org/notes é` arrives as `/yjs/org/notes%20%C3%A9`, and docroom takes the rest
// of the path as the id. The same room percent-encoded (`org%2Fnotes%20%C3%A9`) is one document.

const assert = require('node:assert/strict')
const { eventually, scenario } = require('./lib/docroom')

scenario('a room named with a slash, a space and non-ASCII is one document, encoded or not', async (ctx) => {
  const name = 'org/notes é'
  const app = await ctx.docroom()
  const raw = await ctx.provider(app, name)
  const encoded = await ctx.provider(app, encodeURIComponent(name))
  raw.doc.getText('text').insert(0, 'from raw ')
  encoded.doc.getText('text').insert(0, 'from encoded ')
  await eventually('both providers to converge', () => {
    const [a, b] = [raw.doc.getText('text').toString(), encoded.doc.getText('text').toString()]
    assert.equal(a, b)
    assert.ok(a.includes('from raw') && a.includes('from encoded'), a)
  })

  const text = raw.doc.getText('text').toString()
  await eventually('GET /docs to render the room under its decoded id', async () => {
    const { status, body, text: reply } = await app.get(`/docs/${encodeURIComponent(name)}`)
    assert.equal(status, 200, reply)
    assert.equal(body.doc, name)
    assert.equal(body.content.text, text)
  })
})
