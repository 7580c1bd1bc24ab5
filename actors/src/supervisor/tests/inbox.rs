//! The rooms' save inbox: every save is answered, saves that come while a drain waits out the
//! linger ride it without a message of their own, and a JSON save does not wait.

use std::time::Duration;

use super::*;
use crate::supervisor::SaveInbox;
use crate::testing::{stamped, yjs_edit};

/// A supervisor over in-memory stores that drains its inbox at most once per `linger`.
fn with_inbox(linger: Duration) -> (SaveInbox, MemoryCache, Addr<CacheSupervisor>) {
    with_inbox_on(linger, linger, MemoryCache::default(), &Arbiter::current())
}

/// The same over `cache`, lingering `alone` while it says no other replica follows, on `thread`.
fn with_inbox_on(
    linger: Duration,
    alone: Duration,
    cache: MemoryCache,
    thread: &ArbiterHandle,
) -> (SaveInbox, MemoryCache, Addr<CacheSupervisor>) {
    let stores = Stores {
        cache: Arc::new(cache.clone()),
        store: Arc::new(MemoryStore::default()),
        fallback: Fallback::open_with(MemoryIo::default()).unwrap(),
        ledger: Ledger::default(),
    };
    let settings = SupervisorSettings {
        save_linger: linger,
        save_linger_alone: alone,
        ..supervisor_settings()
    };
    let (tx, rx) = actix::dev::channel::channel(16);
    let supervisor = Addr::new(tx);
    let inbox = SaveInbox::new(supervisor.clone());
    let drained = inbox.clone();
    thread.spawn_fn(move || {
        let sup = CacheSupervisor::new(stores, settings).with_inbox(&drained);
        Context::with_receiver(rx).run(sup);
    });
    (inbox, cache, supervisor)
}

#[actix::test]
async fn saves_of_both_kinds_from_many_threads_are_all_stored_and_answered() {
    let (inbox, cache, _supervisor) = with_inbox(Duration::from_millis(2));
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let inbox = inbox.clone();
        threads.push(std::thread::spawn(move || {
            // JSON and Yjs saves mixed: a JSON save tells the supervisor unless a message is
            // on its way already, a Yjs save only if nobody did.
            (0..50u64)
                .map(|i| {
                    let doc = format!("d{t}-{i}");
                    match i % 2 {
                        0 => inbox.save(yjs_edit(&doc, t + 1, "x")),
                        _ => inbox.save(stamped(&doc, "{}", i)),
                    }
                })
                .collect::<Vec<_>>()
        }));
    }
    let saves: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    for answer in futures_util::future::join_all(saves).await {
        assert_eq!(answer.unwrap().unwrap().stored, Stored::Cache);
    }
    for t in 0..4u64 {
        for i in 0..50u64 {
            let doc = DocId::parse(&format!("d{t}-{i}")).unwrap();
            assert!(
                cache.peek(&doc).is_some(),
                "{doc} was answered: it is stored"
            );
        }
    }
}

#[actix::test]
async fn a_save_after_a_drain_waits_out_the_linger_unless_a_json_save_comes() {
    let (inbox, cache, _supervisor) = with_inbox(Duration::from_secs(3600));
    let first = yjs_edit("a", 1, "first");
    let answer = inbox.save(first.clone()).await.unwrap().unwrap();
    assert_eq!(answer.stored, Stored::Cache, "nothing drained yet: at once");

    let second = yjs_edit("b", 2, "second");
    let mut waiting = Box::pin(inbox.save(second.clone()));
    let early = tokio::time::timeout(Duration::from_millis(200), &mut waiting).await;
    assert!(early.is_err(), "the last drain is not a linger old");
    assert!(cache.peek(&second.doc).is_none());

    let third = json("3", 3);
    let answer = inbox.save(third.clone()).await.unwrap().unwrap();
    assert_eq!(answer.stored, Stored::Cache, "a JSON save drains at once");
    let answer = waiting.await.unwrap().unwrap();
    assert_eq!(
        answer.stored,
        Stored::Cache,
        "and takes what waited with it"
    );
    assert!(cache.peek(&second.doc).is_some());
}

#[actix::test]
async fn a_stopped_supervisor_leaves_no_save_waiting_for_good() {
    let thread = Arbiter::new();
    let hour = Duration::from_secs(3600);
    let (inbox, _cache, _supervisor) =
        with_inbox_on(hour, hour, MemoryCache::default(), &thread.handle());
    inbox.save(json("1", 1)).await.unwrap().unwrap();
    let waiting = inbox.save(yjs_edit("b", 2, "waits"));
    thread.stop();
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert!(matches!(answer, Ok(Err(Unanswered))), "{answer:?}");
    let after = tokio::time::timeout(Duration::from_secs(5), inbox.save(json("2", 2))).await;
    assert!(matches!(after, Ok(Err(Unanswered))), "{after:?}");
}

/// Two saves in a row, the second after the first's drain, over a supervisor lingering no time
/// while another replica may follow and an hour while none does: the second's answer, if it
/// comes within 200 ms.
async fn second_save_answered(others_follow: bool) -> bool {
    let cache = MemoryCache::default();
    cache.set_others_follow(others_follow);
    let (linger, alone) = (Duration::ZERO, Duration::from_secs(3600));
    let (inbox, cache, _supervisor) = with_inbox_on(linger, alone, cache, &Arbiter::current());
    inbox
        .save(yjs_edit("a", 1, "first"))
        .await
        .unwrap()
        .unwrap();
    let second = yjs_edit("b", 2, "second");
    let mut waiting = Box::pin(inbox.save(second.clone()));
    let answered = tokio::time::timeout(Duration::from_millis(200), &mut waiting)
        .await
        .is_ok();
    assert_eq!(answered, cache.peek(&second.doc).is_some());
    if !answered {
        inbox.save(json("3", 3)).await.unwrap().unwrap();
        waiting.await.unwrap().unwrap();
        assert!(
            cache.peek(&second.doc).is_some(),
            "a JSON save took it along"
        );
    }
    answered
}

#[actix::test]
async fn saves_linger_longer_while_no_other_replica_follows() {
    assert!(
        !second_save_answered(false).await,
        "alone, the next drain is the long linger away"
    );
    assert!(
        second_save_answered(true).await,
        "followed, it is the short one away"
    );
}
