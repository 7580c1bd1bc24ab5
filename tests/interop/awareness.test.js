'use strict'
// Awareness (cursors, user names) through docroom: a client's local state reaches the others, a
// late joiner is told the current states, and a state disappears when its client goes.

const assert = require('node:assert/strict')
const { dropConnection, eventually, scenario } = require('./lib/docroom')

const states = (provider) => Object.fromEntries(provider.awareness.getStates())

scenario('a client\'s awareness state reaches the others and disappears when it disconnects', async (ctx) => {
  const app = await ctx.docroom()
  const alice = await ctx.provider(app, 'aware', { awareness: { user: { name: 'alice' } } })
  const bob = await ctx.provider(app, 'aware', { awareness: { user: { name: 'bob' } } })
  const aliceId = alice.doc.clientID
  const bobId = bob.doc.clientID

  await eventually('each to see the other', () => {
    assert.deepEqual(states(bob)[aliceId], { user: { name: 'alice' } })
    assert.deepEqual(states(alice)[bobId], { user: { name: 'bob' } })
  })

  // A change of state is relayed too.
  alice.awareness.setLocalStateField('cursor', { anchor: 3, head: 7 })
  await eventually('bob to see alice\'s cursor', () => {
    assert.deepEqual(states(bob)[aliceId], { user: { name: 'alice' }, cursor: { anchor: 3, head: 7 } })
  })

  // A late joiner gets the current states from the server (the greeting or a query).
  const carol = await ctx.provider(app, 'aware', { awareness: { user: { name: 'carol' } } })
  await eventually('carol to see alice and bob, and bob to see carol', () => {
    assert.deepEqual(states(carol)[aliceId], { user: { name: 'alice' }, cursor: { anchor: 3, head: 7 } })
    assert.deepEqual(states(carol)[bobId], { user: { name: 'bob' } })
    assert.deepEqual(states(bob)[carol.doc.clientID], { user: { name: 'carol' } })
  })

  // Alice's connection dies without a goodbye (crashed tab, lost network): only the server can
  // tell the others. The clients' own 30 s awareness timeout is far beyond this wait.
  dropConnection(alice)
  await eventually('alice to disappear for bob and carol', () => {
    assert.equal(states(bob)[aliceId], undefined)
    assert.equal(states(carol)[aliceId], undefined)
    // Carol may flicker out and back here: see the next test.
    assert.deepEqual(states(bob)[carol.doc.clientID], { user: { name: 'carol' } }, 'carol is still there')
  }, 5000)

  // A clean leave (provider.destroy) removes its state as well.
  carol.destroy()
  await eventually('carol to disappear for bob', () => {
    assert.equal(states(bob)[carol.doc.clientID], undefined)
  }, 5000)
  assert.deepEqual(Object.keys(states(bob)).map(Number), [bobId])

  // The server forgot them too: a newcomer sees bob only.
  const dave = await ctx.provider(app, 'aware')
  await eventually('dave to see bob', () => assert.deepEqual(states(dave)[bobId], { user: { name: 'bob' } }))
  assert.equal(states(dave)[aliceId], undefined)
  assert.equal(states(dave)[carol.doc.clientID], undefined)
})

scenario('a provider that leaves takes only its own awareness state with it', async (ctx) => {
  const app = await ctx.docroom()
  const alice = await ctx.provider(app, 'aware-echo', { awareness: { user: { name: 'alice' } } })
  const bob = await ctx.provider(app, 'aware-echo', { awareness: { user: { name: 'bob' } } })
  const carol = await ctx.provider(app, 'aware-echo', { awareness: { user: { name: 'carol' } } })
  const ids = [alice, bob, carol].map((p) => p.doc.clientID)
  await eventually('everyone to see everyone', () => {
    for (const p of [alice, bob, carol]) assert.deepEqual(Object.keys(states(p)).map(Number).sort(), [...ids].sort())
  })

  const removed = []
  bob.awareness.on('change', ({ removed: r }) => removed.push(...r))
  dropConnection(alice)
  await eventually('alice to disappear for bob', () => assert.equal(states(bob)[alice.doc.clientID], undefined), 5000)
  // (Had carol's state been removed, carol's provider would have put it back: y-protocols never
  // lets a remote peer remove the local state. That repairs the picture but not the flicker.)
  assert.deepEqual(removed, [alice.doc.clientID], 'bob was told of these removals')
})
