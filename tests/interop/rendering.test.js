'use strict'
// `GET /docs/{id}` renders a Yjs document as JSON, each root type under its name (SPEC §3).

const assert = require('node:assert/strict')
const { eventually, scenario } = require('./lib/docroom')

scenario('GET /docs renders Y.Text as a string and Y.Map as an object', async (ctx) => {
  const app = await ctx.docroom()
  const a = await ctx.provider(app, 'render')
  a.doc.getText('title').insert(0, 'Hello')
  const map = a.doc.getMap('meta')
  map.set('n', 1)
  map.set('tags', ['x', 'y'])
  map.set('nested', { deep: { ok: true } })
  await eventually('the rendering', async () => {
    const { status, body, text } = await app.get('/docs/render')
    assert.equal(status, 200, text)
    assert.equal(body.kind, 'yjs')
    assert.deepEqual(body.content, {
      title: 'Hello',
      meta: { n: 1, tags: ['x', 'y'], nested: { deep: { ok: true } } }
    })
  })
})

scenario('GET /docs renders a Y.Array root as an array and an empty Y.Map as an object', async (ctx) => {
  const app = await ctx.docroom()
  const a = await ctx.provider(app, 'render-array')
  a.doc.getArray('list').push([1, 'two', { three: 3 }])
  const emptied = a.doc.getMap('emptied')
  emptied.set('gone', true)
  emptied.delete('gone')
  a.doc.getText('text').insert(0, 'sync marker')
  await eventually('the rendering', async () => {
    const { status, body, text } = await app.get('/docs/render-array')
    assert.equal(status, 200, text)
    assert.equal(body.content.text, 'sync marker')
    assert.deepEqual(body.content.list, [1, 'two', { three: 3 }])
    // An emptied root has no type left in the encoding: it renders as null.
    assert.equal(body.content.emptied, null)
  }, 3000)
})
