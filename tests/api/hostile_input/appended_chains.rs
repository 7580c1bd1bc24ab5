//! One update holding a long chain of one-character appends (what `Y.mergeUpdates` writes, and
//! what a hostile client can send): yrs merges such a chain by copying everything merged so far
//! at each step, n² of memory. docroom merges the chain in the update's encoding first, so the
//! frame costs what its bytes do: the members get the text and go on editing.

use yrs::sync::{Message, SyncMessage};
use yrs::{GetString, Text, Transact};

use crate::harness::yclient::YClient;
use crate::harness::{random_suffix, TestApp};

/// The merge of `count` one-character appends by client `client`, each its own transaction.
fn appended_one_by_one(client: u64, count: usize) -> Vec<u8> {
    let doc = yrs::Doc::with_client_id(client);
    let text = doc.get_or_insert_text("text");
    let parts: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            let mut txn = doc.transact_mut();
            let end = text.len(&txn);
            text.insert(&mut txn, end, "z");
            txn.encode_update_v1()
        })
        .collect();
    yrs::merge_updates_v1(parts.iter().map(|p| &p[..])).expect("the updates merge")
}

#[tokio::test]
async fn a_frame_of_twenty_thousand_appended_characters_is_taken_and_the_room_goes_on() {
    // Built first: a client that reads nothing for a while is timed out.
    let update = appended_one_by_one(4242, 20_000);
    assert!(update.len() < 1 << 20, "within the frame limit");
    let app = TestApp::start().await;
    let doc = format!("chained-{}", random_suffix());
    let mut member = YClient::connect(&app, &doc).await;
    let sender = YClient::connect(&app, &doc).await;

    sender.send(&[Message::Sync(SyncMessage::Update(update))]);

    member
        .until("the 20,000 characters", |m| m.text().len() == 20_000)
        .await;
    member.type_text("!");
    let text = member.doc.get_or_insert_text("text");
    let want = format!("{}!", "z".repeat(20_000));
    crate::harness::eventually(
        std::time::Duration::from_secs(30),
        "the stored document",
        async || {
            let stored = app.get(&format!("/docs/{doc}")).await;
            crate::harness::ensure!(
                stored.body["content"]["text"] == want.as_str(),
                "{}",
                stored.status
            );
            Ok(())
        },
    )
    .await;
    assert_eq!(text.get_string(&member.doc.transact()), want);
    super::assert_still_serves(&app, "a long appended chain").await;
}
