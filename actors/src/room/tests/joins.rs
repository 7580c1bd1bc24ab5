//! Joiners in process: members that ask with the same state vector share one answer, an edit
//! makes the next answer a new one, and a joiner's own answer never counts against its
//! backlog, however much larger than its budget the document is.

use std::sync::Mutex;

use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Text, Transact};

use super::*;

/// Stands in for a session: keeps what it is sent; credits its backlog only if `reads`.
struct Recorder {
    backlog: Backlog,
    reads: bool,
    frames: Arc<Mutex<Vec<Outbound>>>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<Outbound> for Recorder {
    type Result = ();

    fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) {
        if self.reads {
            self.backlog.taken(&msg);
        }
        self.frames.lock().unwrap().push(msg);
    }
}

struct Joiner {
    member: MemberId,
    backlog: Backlog,
    frames: Arc<Mutex<Vec<Outbound>>>,
}

impl Joiner {
    async fn join(room: &Addr<DocRoom>, reads: bool) -> Joiner {
        let (backlog, frames) = (Backlog::default(), Arc::<Mutex<_>>::default());
        let recorder = Recorder {
            backlog: backlog.clone(),
            reads,
            frames: frames.clone(),
        }
        .start();
        let member = MemberId::next();
        room.send(Join {
            member,
            kind: Kind::Yjs,
            outbound: recorder.recipient(),
            backlog: backlog.clone(),
            subject: None,
        })
        .await
        .unwrap()
        .unwrap();
        Joiner {
            member,
            backlog,
            frames,
        }
    }

    /// Sends `message` to the room as this member's frame.
    fn send(&self, room: &Addr<DocRoom>, message: Message) {
        room.do_send(YjsFrame {
            from: self.member,
            data: Bytes::from(message.encode_v1()),
            may_write: true,
            stored: None,
        });
    }

    /// The answers to its sync step 1 received so far.
    fn answers(&self) -> Vec<Bytes> {
        let frames = self.frames.lock().unwrap();
        let answers = frames.iter().filter_map(|f| match f {
            Outbound::SyncStep2 { update, .. } => Some(update.clone()),
            _ => None,
        });
        answers.collect()
    }

    fn updates(&self) -> usize {
        let frames = self.frames.lock().unwrap();
        frames
            .iter()
            .filter(|f| matches!(f, Outbound::Binary(_)))
            .count()
    }
}

/// A sync update appending `text` to `writer`'s root text "t".
fn typing(writer: &yrs::Doc, text: &str) -> Message {
    let t = writer.get_or_insert_text("t");
    let before = writer.transact().state_vector();
    let len = t.len(&writer.transact());
    t.insert(&mut writer.transact_mut(), len, text);
    let update = writer.transact().encode_state_as_update_v1(&before);
    Message::Sync(SyncMessage::Update(update))
}

fn fresh_step1() -> Message {
    Message::Sync(SyncMessage::SyncStep1(StateVector::default()))
}

/// The root text "t" of a document holding `update`.
fn text_of(update: &Bytes) -> String {
    use yrs::updates::decoder::Decode;
    use yrs::GetString;
    let doc = yrs::Doc::new();
    let update = yrs::Update::decode_v1(update).unwrap();
    doc.transact_mut().apply_update(update).unwrap();
    let t = doc.get_or_insert_text("t");
    let text = t.get_string(&doc.transact());
    text
}

fn same_buffer(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

#[actix::test]
async fn fifty_fresh_joiners_get_one_shared_answer_until_the_document_changes() {
    let dir = TestDir::new("join-storm");
    let core = core(&dir, RoomLimits::unlimited());
    let room = room_of(&core, "storm", Kind::Yjs).await;
    let writer = Joiner::join(&room, true).await;
    let typist = yrs::Doc::with_client_id(1);
    let seeded = "a large document ".repeat(2_000);
    writer.send(&room, typing(&typist, &seeded));

    let mut joiners = Vec::new();
    for _ in 0..50 {
        let joiner = Joiner::join(&room, true).await;
        joiner.send(&room, fresh_step1());
        joiners.push(joiner);
    }
    until("every joiner's answer", async || {
        joiners.iter().all(|j| j.answers().len() == 1)
    })
    .await;

    let first = joiners[0].answers().remove(0);
    assert!(
        text_of(&first) == seeded,
        "the joiners get the whole document"
    );
    for joiner in &joiners {
        assert!(
            same_buffer(&joiner.answers()[0], &first),
            "one encoding, shared"
        );
    }
    let current = room.send(Current).await.unwrap().unwrap().unwrap();
    assert!(
        same_buffer(&current.content, &first),
        "a read of the document shares it too"
    );

    writer.send(&room, typing(&typist, "; edited"));
    let late = Joiner::join(&room, true).await;
    late.send(&room, fresh_step1());
    until("the late joiner's answer", async || {
        late.answers().len() == 1
    })
    .await;
    let answer = late.answers().remove(0);
    assert!(!same_buffer(&answer, &first), "encoded anew after the edit");
    assert!(
        text_of(&answer) == format!("{seeded}; edited"),
        "with the edit"
    );
    let current = room.send(Current).await.unwrap().unwrap().unwrap();
    assert_eq!(current.hash, crate::doc::sha256_hex(&answer));
}

#[actix::test]
async fn a_joiner_still_reading_a_document_larger_than_its_backlog_is_not_dropped() {
    let dir = TestDir::new("join-backlog");
    let core = core(
        &dir,
        RoomLimits {
            member_backlog_messages: 10,
            member_backlog_bytes: 4_096,
            ..RoomLimits::unlimited()
        },
    );
    let room = room_of(&core, "big", Kind::Yjs).await;
    let writer = Joiner::join(&room, true).await;
    let typist = yrs::Doc::with_client_id(1);
    // Sent in small updates: each fits the budget, the whole is ten times it.
    for i in 0..40 {
        writer.send(&room, typing(&typist, &format!("{i:04}").repeat(250)));
    }

    // Its session has not taken the answer yet (a large one takes a while to send).
    let joiner = Joiner::join(&room, false).await;
    joiner.send(&room, fresh_step1());
    until("the joiner's answer", async || joiner.answers().len() == 1).await;
    assert!(joiner.answers()[0].len() > 40_000);
    for i in 0..5 {
        writer.send(&room, typing(&typist, &format!("<{i}>")));
    }
    until("the edits behind the answer", async || {
        joiner.updates() == 5
    })
    .await;

    assert_eq!(
        members(&room).await,
        Some(2),
        "the joiner is still a member"
    );
    assert!(!joiner.backlog.overflowed());
    // What piles up behind it still counts: a joiner that never reads is dropped for it.
    for i in 0..10 {
        writer.send(&room, typing(&typist, &format!("[{i}]")));
    }
    until("the stalled joiner dropped", async || {
        joiner.backlog.overflowed()
    })
    .await;
    assert_eq!(members(&room).await, Some(1));
}
