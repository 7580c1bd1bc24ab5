// The page of tiptap.test.js, bundled by esbuild: a Tiptap 3 editor bound to a Y.Doc that a
// HocuspocusProvider keeps in sync with docroom's /hocuspocus, set up as README's "Using it from
// Tiptap" shows. The query string names the server (`url`) and the document (`doc`); the test
// types into the editor with the keyboard and reads `window.collab` to see what the page holds.
import { Editor } from '@tiptap/core'
import StarterKit from '@tiptap/starter-kit'
import Collaboration from '@tiptap/extension-collaboration'
import { HocuspocusProvider } from '@hocuspocus/provider'
import * as Y from 'yjs'

const params = new URLSearchParams(window.location.search)
const ydoc = new Y.Doc()
const collab = {
  synced: false,
  authenticated: null,
  failures: [],
  provider: null,
  editor: null
}
window.collab = collab

collab.provider = new HocuspocusProvider({
  url: params.get('url'),
  name: params.get('doc'),
  document: ydoc,
  onSynced: () => { collab.synced = true },
  onAuthenticated: (e) => { collab.authenticated = e.scope },
  onAuthenticationFailed: (e) => collab.failures.push(e.reason)
})

collab.editor = new Editor({
  element: document.querySelector('#editor'),
  extensions: [
    StarterKit.configure({ undoRedo: false }), // Yjs keeps the history
    Collaboration.configure({ document: ydoc })
  ]
})
