//! The clients: yrs documents that carry out the program and record, in order, the frames they
//! send the room.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::{Message, SyncMessage};
use yrs::types::Attrs;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Any, ClientID, Doc, Number, OffsetKind, Options, ReadTxn, StateVector, Text, Transact,
    TransactionMut, Update,
};

use crate::program::{Key, Levels, Op, Place, Plain, Presence, Program, Send, Shape, Value};
use crate::shared::{delete, embed, put, span, write, Made, Shared};
use crate::{MAX_DEPTH, MAX_LEVELS, MAX_OPS};

const CLIENTS: usize = 3;
/// Shared types each client keeps at hand to edit (its four roots among them).
const MAX_NODES: usize = 24;

/// What the clients had the room do, in order.
pub enum Step {
    Frame { frame: Vec<u8>, may_write: bool },
    Check,
}

pub struct Clients {
    clients: Vec<Client>,
    /// Frames withheld for a later `Release`: the room gets updates out of order.
    held: Vec<Vec<u8>>,
    steps: Vec<Step>,
    budget: Budget,
}

struct Client {
    doc: Doc,
    nodes: Vec<Node>,
    /// Its updates not yet sent, oldest first.
    unsent: VecDeque<Vec<u8>>,
}

/// A shared type a client holds, and how deep it sits.
#[derive(Clone)]
struct Node {
    shared: Shared,
    depth: usize,
}

impl Clients {
    pub fn new() -> Self {
        let clients = (1..=CLIENTS as u64)
            .map(|id| {
                let doc = Doc::with_options(Options {
                    offset_kind: OffsetKind::Utf16,
                    // Garbage collection would free the branches `nodes` points to.
                    skip_gc: true,
                    ..Options::with_client_id(ClientID::new(id))
                });
                let root = |shared| Node { shared, depth: 1 };
                let nodes = vec![
                    root(Shared::Map(doc.get_or_insert_map("map"))),
                    root(Shared::Array(doc.get_or_insert_array("array"))),
                    root(Shared::Text(doc.get_or_insert_text("text"))),
                    root(Shared::Fragment(doc.get_or_insert_xml_fragment("xml"))),
                ];
                Client {
                    doc,
                    nodes,
                    unsent: VecDeque::new(),
                }
            })
            .collect();
        Clients {
            clients,
            held: Vec::new(),
            steps: Vec::new(),
            budget: Budget(MAX_LEVELS),
        }
    }

    /// Carries out the program; in the end every update reaches the room, the withheld last.
    pub fn run(mut self, program: Program) -> Vec<Step> {
        for op in program.ops.into_iter().take(MAX_OPS) {
            self.apply(op);
        }
        for client in &mut self.clients {
            for update in client.unsent.drain(..) {
                let frame = sync_frame(update, false);
                self.steps.push(Step::Frame {
                    frame,
                    may_write: true,
                });
            }
        }
        for frame in self.held.drain(..) {
            self.steps.push(Step::Frame {
                frame,
                may_write: true,
            });
        }
        self.steps
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Put { place, key, value } => self.edit(place, |b, c, txn, n| {
                let value = b.value(&value, n.depth);
                if let Some(made) = put(txn, &n.shared, place.pos, key.0, value) {
                    c.hold(n.depth + 1, made);
                }
            }),
            Op::Nest {
                place,
                kinds,
                levels,
            } => self.edit(place, |b, c, txn, n| {
                let levels = b.levels(levels, n.depth);
                let mut current = n.shared;
                for level in 1..=levels {
                    let kind = Made::Shared(kinds[level % kinds.len()]);
                    // Only a fragment refuses a kind (it holds XML nodes alone): an element
                    // in between, which holds any kind as an attribute, continues the chain.
                    let element = || Made::Shared(crate::program::Kind::XmlElement);
                    let next = put(txn, &current, place.pos, "a", kind)
                        .or_else(|| put(txn, &current, place.pos, "a", element()));
                    let Some(next) = next else { return };
                    current = next;
                    if level == levels / 2 || level == levels {
                        c.hold(n.depth + level, current.clone());
                    }
                }
            }),
            Op::Write {
                place,
                chunk,
                attrs,
            } => self.edit(place, |b, _, txn, n| {
                let attrs = attrs.map(|a| b.attrs(&a, n.depth));
                write(txn, &n.shared, place.pos, &chunk.0, attrs);
            }),
            Op::Format { place, len, attrs } => self.edit(place, |b, _, txn, n| {
                let attrs = b.attrs(&attrs, n.depth);
                if let Some(text) = n.shared.text() {
                    let (at, len) = span(text.len(txn), place.pos, u16::from(len));
                    text.format(txn, at, len, attrs);
                }
            }),
            Op::Embed { place, value } => self.edit(place, |b, c, txn, n| {
                let value = b.value(&value, n.depth);
                let Some(text) = n.shared.text() else { return };
                let at = u32::from(place.pos) % (text.len(txn) + 1);
                if let Some(made) = embed(txn, &text, at, value) {
                    c.hold(n.depth + 1, made);
                }
            }),
            Op::Delete { place, len, key } => self.edit(place, |_, _, txn, n| {
                delete(txn, &n.shared, place.pos, len, key.0);
            }),
            Op::Send {
                client,
                how,
                step2,
                may_write,
                hold,
            } => {
                let c = &mut self.clients[usize::from(client) % CLIENTS];
                let updates: Vec<Vec<u8>> = match how {
                    Send::Next => c.unsent.pop_front().into_iter().collect(),
                    Send::Pair => (0..2).filter_map(|_| c.unsent.pop_front()).collect(),
                    Send::Merged => {
                        let all: Vec<_> = c.unsent.drain(..).collect();
                        yrs::merge_updates_v1(&all).ok().into_iter().collect()
                    }
                    Send::State => {
                        let txn = c.doc.transact();
                        vec![txn.encode_state_as_update_v1(&StateVector::default())]
                    }
                };
                if updates.is_empty() {
                    return;
                }
                let frame = updates
                    .into_iter()
                    .flat_map(|u| sync_frame(u, step2))
                    .collect();
                match hold {
                    true => self.held.push(frame),
                    false => self.steps.push(Step::Frame { frame, may_write }),
                }
            }
            Op::Release { held, may_write } => {
                if !self.held.is_empty() {
                    let frame = self.held.remove(usize::from(held) % self.held.len());
                    self.steps.push(Step::Frame { frame, may_write });
                }
            }
            Op::Sync { from, to } => {
                let (from, to) = (usize::from(from) % CLIENTS, usize::from(to) % CLIENTS);
                let sv = self.clients[to].doc.transact().state_vector();
                let diff = self.clients[from]
                    .doc
                    .transact()
                    .encode_state_as_update_v1(&sv);
                if let Ok(update) = Update::decode_v1(&diff) {
                    // Refused or not, the clients are only the means.
                    let _ = self.clients[to].doc.transact_mut().apply_update(update);
                }
            }
            Op::Ask { client, may_write } => {
                let c = &self.clients[usize::from(client) % CLIENTS];
                let sv = c.doc.transact().state_vector();
                let frame = Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1();
                self.steps.push(Step::Frame { frame, may_write });
            }
            Op::Awareness {
                id,
                clock,
                state,
                may_write,
            } => {
                let json = self.budget.presence(&state).into();
                let entry = AwarenessUpdateEntry {
                    clock: u32::from(clock),
                    json,
                };
                let id = ClientID::new(u64::from(id % 4) + 1);
                let update = AwarenessUpdate {
                    clients: HashMap::from([(id, entry)]),
                };
                let frame = Message::Awareness(update).encode_v1();
                self.steps.push(Step::Frame { frame, may_write });
            }
            Op::AwarenessQuery => {
                let frame = Message::AwarenessQuery.encode_v1();
                self.steps.push(Step::Frame {
                    frame,
                    may_write: false,
                });
            }
            Op::Check => self.steps.push(Step::Check),
        }
    }

    /// One transaction on one of a client's shared types; its update joins the unsent ones.
    fn edit<F>(&mut self, place: Place, f: F)
    where
        F: FnOnce(&mut Budget, &mut Client, &mut TransactionMut, Node),
    {
        let client = usize::from(place.client) % CLIENTS;
        let nodes = &self.clients[client].nodes;
        let node = nodes[usize::from(place.node) % nodes.len()].clone();
        let doc = self.clients[client].doc.clone();
        let mut txn = doc.transact_mut();
        f(&mut self.budget, &mut self.clients[client], &mut txn, node);
        if txn.before_state() != txn.after_state() || !txn.delete_set().is_empty() {
            let update = txn.encode_update_v1();
            self.clients[client].unsent.push_back(update);
        }
    }
}

impl Client {
    /// Keeps a shared type at hand for later edits; the roots are never replaced.
    fn hold(&mut self, depth: usize, shared: Shared) {
        let node = Node { shared, depth };
        if self.nodes.len() < MAX_NODES {
            self.nodes.push(node);
        } else {
            let slot = 4 + (depth + self.unsent.len()) % (MAX_NODES - 4);
            self.nodes[slot] = node;
        }
    }
}

fn sync_frame(update: Vec<u8>, step2: bool) -> Vec<u8> {
    let sync = match step2 {
        true => SyncMessage::SyncStep2(update),
        false => SyncMessage::Update(update),
    };
    Message::Sync(sync).encode_v1()
}

/// Levels one input may still build.
struct Budget(usize);

impl Budget {
    /// Takes up to `want` levels below `depth` from what is left.
    fn levels(&mut self, want: Levels, depth: usize) -> usize {
        let n = want.0.min(self.0).min(MAX_DEPTH.saturating_sub(depth));
        self.0 -= n;
        n
    }

    fn value(&mut self, value: &Value, depth: usize) -> Made {
        match value {
            Value::Plain(plain) => Made::Any(self.any(plain, depth)),
            Value::Shared(kind) => Made::Shared(*kind),
        }
    }

    /// A plain value; a deep one is built from the inside out, never recursively.
    fn any(&mut self, plain: &Plain, depth: usize) -> Any {
        match plain {
            Plain::Null => Any::Null,
            Plain::Undefined => Any::Undefined,
            Plain::Bool(b) => Any::Bool(*b),
            Plain::Int(i) => Any::Number(Number::Int(*i)),
            Plain::Float(f) => Any::Number(Number::Float(*f)),
            Plain::Str(chunk) => Any::from(chunk.0.as_str()),
            Plain::Bytes(bytes) => Any::from(&bytes[..]),
            Plain::Deep {
                shape,
                levels,
                leaf,
            } => {
                let levels = self.levels(*levels, depth);
                let mut value = Any::from(leaf.0.as_str());
                for level in 0..levels {
                    let as_map = match shape {
                        Shape::Arrays => false,
                        Shape::Maps => true,
                        Shape::Both => level % 2 == 1,
                    };
                    value = match as_map {
                        true => Any::Map(Arc::new(HashMap::from([("a".to_string(), value)]))),
                        false => Any::Array(Arc::from(vec![value])),
                    };
                }
                value
            }
        }
    }

    fn attrs(&mut self, attrs: &[(Key, Plain)], depth: usize) -> Attrs {
        let attrs = attrs.iter().take(4);
        attrs
            .map(|(k, v)| (Arc::from(k.0), self.any(v, depth)))
            .collect()
    }

    /// An awareness state's JSON text.
    fn presence(&mut self, state: &Presence) -> String {
        match state {
            Presence::Gone => "null".into(),
            Presence::Value(plain) => {
                let any = self.any(plain, 0);
                serde_json::to_string(&any).unwrap_or_else(|_| "{}".into())
            }
            Presence::NotJson(chunk) => chunk.0.clone(),
            Presence::Arrays(levels) => {
                let n = self.levels(*levels, 0);
                format!("{}0{}", "[".repeat(n), "]".repeat(n))
            }
            Presence::Objects(levels) => {
                let n = self.levels(*levels, 0);
                format!("{}0{}", "{\"a\":".repeat(n), "}".repeat(n))
            }
        }
    }
}
