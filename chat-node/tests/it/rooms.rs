//! Rooms across two nodes: every rooms row of PROTOCOL.md with its error codes, `sync`
//! over rooms, read state, and a room of 200 members.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{random, Cluster, Ws};

const QUIET: Duration = Duration::from_millis(500);

/// Sends `createRoom` and returns the room of the `room` frame that answers it.
async fn create(ws: &mut Ws, name: &str, members: &[&str]) -> Value {
    let cid = random(8);
    ws.send(json!({"type": "createRoom", "name": name, "members": members, "clientId": cid}))
        .await;
    let frame = ws.expect("room", |f| f["ref"] == cid.as_str()).await;
    frame["room"].clone()
}

/// Sends `frame` and waits for the `error` frame carrying `code`.
async fn refused(ws: &mut Ws, frame: Value, code: &str) -> Value {
    ws.send(frame).await;
    ws.expect("error", |f| f["code"] == code).await
}

fn room_id(room: &Value) -> u64 {
    room["id"].as_u64().expect("a room id")
}

fn names(room: &Value) -> Vec<String> {
    room["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Sends a room message and waits for its acknowledgement.
async fn say(ws: &mut Ws, room: u64, text: &str) -> Value {
    let cid = random(10);
    ws.send(json!({"type": "chatMessage", "room": room, "text": text, "clientId": cid}))
        .await;
    ws.expect("chatMessage", |f| f["message"]["clientId"] == cid.as_str())
        .await["message"]
        .clone()
}

#[tokio::test]
async fn a_room_is_created_chatted_in_and_typed_in_across_two_nodes() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let carol = c.login_new(1, "carol").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    let mut k = carol.ws().await;
    for ws in [&mut a, &mut b, &mut k] {
        let rooms = ws.next().await;
        assert_eq!(
            rooms,
            json!({"type": "rooms", "rooms": []}),
            "right after updateUsers"
        );
    }

    let room = create(&mut a, "team", &[&bob.username, &carol.username]).await;
    assert_eq!(room["name"], "team");
    assert_eq!(room["owner"], alice.username.as_str());
    assert_eq!(
        names(&room),
        [&*alice.username, &bob.username, &carol.username]
    );
    let id = room_id(&room);
    for ws in [&mut b, &mut k] {
        let got = ws.expect_type("room").await;
        assert_eq!(got["room"], room);
        assert!(got.get("ref").is_none(), "the ref is the creator's: {got}");
    }

    let sent = say(&mut a, id, "hello room").await;
    assert_eq!(sent["room"], id);
    assert_eq!(sent["to"], Value::Null);
    assert_eq!(sent["from"], alice.username.as_str());
    for ws in [&mut b, &mut k] {
        let got = ws.expect_type("chatMessage").await["message"].clone();
        assert_eq!(got, sent);
    }
    let reply = say(&mut b, id, "hi from node 1").await;
    assert_eq!(a.expect_type("chatMessage").await["message"], reply);
    assert_eq!(k.expect_type("chatMessage").await["message"], reply);

    b.send(json!({"type": "typing", "room": id})).await;
    for ws in [&mut a, &mut k] {
        let t = ws.expect_type("typing").await;
        assert_eq!(
            t,
            json!({"type": "typing", "from": bob.username, "room": id})
        );
    }
    b.send(json!({"type": "doneTyping", "room": id})).await;
    assert_eq!(a.expect_type("doneTyping").await["room"], id);
    b.expect_none("typing", QUIET, |_| true).await;

    k.send(json!({"type": "chatHistory", "room": id})).await;
    let page = k.expect_type("chatHistory").await;
    assert_eq!(page["room"], id);
    assert_eq!(page["peer"], Value::Null);
    assert_eq!(page["hasMore"], false);
    assert_eq!(page["messages"], json!([sent, reply]));

    // A new socket hears of the room right after updateUsers.
    let mut k2 = carol.ws_at(&c.url(0)).await;
    let rooms = k2.next().await;
    assert_eq!(rooms["type"], "rooms");
    assert_eq!(rooms["rooms"][0]["id"], id);
    assert_eq!(names(&rooms["rooms"][0]), names(&room));
    // Room members count as conversation peers: the second socket follows alice.
    let stored = c
        .count("SELECT COUNT(*) AS n FROM messages WHERE recipient_id IS NULL")
        .await;
    assert_eq!(stored, 2);
}

#[tokio::test]
async fn room_errors_carry_their_codes() {
    let c = Cluster::start_with(2, &[("CHAT_ROOM_MAX_MEMBERS", "3")]).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let carol = c.login_new(0, "carol").await;
    let dave = c.login_new(1, "dave").await;
    let eve = c.login_new(0, "eve").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    let mut e = eve.ws().await;
    let room = create(&mut a, "three", &[&bob.username, &carol.username]).await;
    let id = room_id(&room);
    b.expect_type("room").await;

    // not_a_member: a room that is not theirs and one that does not exist, alike.
    for room in [id, 999_999_999] {
        for frame in [
            json!({"type": "chatMessage", "room": room, "text": "x", "clientId": "n1"}),
            json!({"type": "chatHistory", "room": room}),
            json!({"type": "typing", "room": room}),
            json!({"type": "addMembers", "room": room, "members": [eve.username]}),
            json!({"type": "removeMember", "room": room, "username": eve.username}),
            json!({"type": "markRead", "room": room, "upTo": 1}),
        ] {
            let err = refused(&mut e, frame.clone(), "not_a_member").await;
            if frame["type"] == "chatMessage" {
                assert_eq!(err["ref"], "n1");
            }
        }
    }
    // forbidden: only the owner removes others.
    let err = refused(
        &mut b,
        json!({"type": "removeMember", "room": id, "username": carol.username, "clientId": "f1"}),
        "forbidden",
    )
    .await;
    assert_eq!(err["ref"], "f1");
    // room_full: at creation and when adding; nobody is added.
    refused(
        &mut a,
        json!({"type": "createRoom", "name": "four", "members": [bob.username, carol.username, dave.username]}),
        "room_full",
    )
    .await;
    refused(
        &mut b,
        json!({"type": "addMembers", "room": id, "members": [dave.username]}),
        "room_full",
    )
    .await;
    // invalid_room_name: blank or longer than 64.
    for name in [json!(""), json!("   "), json!("n".repeat(65))] {
        let err = refused(
            &mut a,
            json!({"type": "createRoom", "name": name, "members": [], "clientId": "v"}),
            "invalid_room_name",
        )
        .await;
        assert_eq!(err["ref"], "v");
    }
    // unknown_user: nothing is created.
    refused(
        &mut a,
        json!({"type": "createRoom", "name": "ghosts", "members": [bob.username, "nobody_here"]}),
        "unknown_user",
    )
    .await;
    refused(
        &mut a,
        json!({"type": "removeMember", "room": id, "username": "nobody_here"}),
        "unknown_user",
    )
    .await;
    // Malformed room frames.
    for frame in [
        json!({"type": "chatMessage", "peer": bob.username, "room": id, "text": "x"}),
        json!({"type": "chatHistory"}),
        json!({"type": "addMembers", "room": "x", "members": []}),
    ] {
        refused(&mut a, frame, "bad_request").await;
    }
    assert_eq!(c.count("SELECT COUNT(*) AS n FROM rooms").await, 1);
    assert_eq!(c.count("SELECT COUNT(*) AS n FROM room_members").await, 3);
    assert_eq!(
        c.count("SELECT COUNT(*) AS n FROM messages").await,
        0,
        "nothing of a refused frame is stored"
    );
}

#[tokio::test]
async fn members_are_added_and_removed_and_a_removed_member_hears_nothing_more() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let carol = c.login_new(0, "carol").await;
    let dave = c.login_new(1, "dave").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    let mut k = carol.ws().await;
    let mut d = dave.ws().await;
    let room = create(&mut a, "crew", &[&bob.username]).await;
    let id = room_id(&room);
    b.expect_type("room").await;
    let first = say(&mut a, id, "before carol").await;
    b.expect_type("chatMessage").await;

    // Any member adds; the new member sees the whole history; every member is told.
    b.send(json!({"type": "addMembers", "room": id, "members": [carol.username, dave.username], "clientId": "add1"}))
        .await;
    let answer = b.expect("room", |f| f["ref"] == "add1").await;
    assert_eq!(names(&answer["room"]).len(), 4);
    let told = a.expect_type("room").await;
    assert_eq!(told["room"], answer["room"]);
    for ws in [&mut k, &mut d] {
        let got = ws.expect_type("room").await;
        assert_eq!(got["room"], answer["room"]);
        ws.send(json!({"type": "chatHistory", "room": id})).await;
        let page = ws.expect_type("chatHistory").await;
        assert_eq!(page["messages"], json!([first]));
    }
    let second = say(&mut k, id, "carol is in").await;
    for ws in [&mut a, &mut b, &mut d] {
        assert_eq!(ws.expect_type("chatMessage").await["message"], second);
    }

    // The owner removes dave: he gets roomLeft, then nothing of the room.
    a.send(
        json!({"type": "removeMember", "room": id, "username": dave.username, "clientId": "rm1"}),
    )
    .await;
    let answer = a.expect("room", |f| f["ref"] == "rm1").await;
    assert_eq!(names(&answer["room"]).len(), 3);
    assert_eq!(
        d.expect_type("roomLeft").await,
        json!({"type": "roomLeft", "room": id})
    );
    for ws in [&mut b, &mut k] {
        assert_eq!(ws.expect_type("room").await["room"], answer["room"]);
    }
    let third = say(&mut b, id, "dave is out").await;
    a.expect_type("chatMessage").await;
    assert_eq!(k.expect_type("chatMessage").await["message"], third);
    d.expect_none("chatMessage", QUIET, |_| true).await;
    refused(
        &mut d,
        json!({"type": "chatMessage", "room": id, "text": "still here?"}),
        "not_a_member",
    )
    .await;
    d.send(json!({"type": "sync", "after": 0})).await;
    let synced = d.expect_type("sync").await;
    assert_eq!(synced["messages"], json!([]), "the room is no longer his");

    // The owner leaves: the longest-standing member (bob) owns the room.
    a.send(json!({"type": "removeMember", "room": id, "username": alice.username}))
        .await;
    a.expect_type("roomLeft").await;
    let changed = b.expect_type("room").await;
    assert_eq!(changed["room"]["owner"], bob.username.as_str());
    assert_eq!(names(&changed["room"]), [&*bob.username, &carol.username]);
    // The last members leave: the room is gone.
    b.send(json!({"type": "removeMember", "room": id, "username": bob.username}))
        .await;
    b.expect_type("roomLeft").await;
    k.expect_type("room").await;
    k.send(json!({"type": "removeMember", "room": id, "username": carol.username}))
        .await;
    k.expect_type("roomLeft").await;
    assert_eq!(c.count("SELECT COUNT(*) AS n FROM rooms").await, 0);
}

#[tokio::test]
async fn room_limits_per_user_are_enforced() {
    let c = Cluster::start_with(
        1,
        &[
            ("CHAT_ROOMS_PER_USER", "2"),
            ("CHAT_ROOM_CREATIONS_PER_MINUTE", "4"),
        ],
    )
    .await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(0, "bob").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    create(&mut a, "one", &[]).await;
    create(&mut b, "b-one", &[]).await;
    create(&mut b, "b-two", &[]).await;
    let err = refused(
        &mut a,
        json!({"type": "createRoom", "name": "two", "members": [bob.username]}),
        "too_many_rooms",
    )
    .await;
    assert!(err["message"]
        .as_str()
        .unwrap_or("")
        .contains(&bob.username));
    create(&mut a, "two", &[]).await;
    refused(
        &mut a,
        json!({"type": "createRoom", "name": "three", "members": []}),
        "too_many_rooms",
    )
    .await;
    // Four creations counted this minute (the refused ones too): the fifth is refused.
    refused(
        &mut a,
        json!({"type": "createRoom", "name": "four", "members": []}),
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn sync_covers_rooms_and_one_to_one_exactly_in_pages() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let carol = c.login_new(1, "carol").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    let mut k = carol.ws().await;
    let r1 = room_id(&create(&mut a, "r1", &[&bob.username]).await);
    let r2 = room_id(&create(&mut b, "r2", &[&carol.username]).await);
    let mut sent = Vec::new();
    for i in 0..6 {
        sent.push(say(&mut a, r1, &format!("r1 {i}")).await);
        sent.push(say(&mut k, r2, &format!("r2 {i}")).await);
        sent.push(a.send_acked(&bob.username, &format!("dm {i}")).await);
        // Not bob's: carol's one-to-one with alice.
        k.send_acked(&alice.username, &format!("other {i}")).await;
    }
    let want: Vec<u64> = sent.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    let mut got = Vec::new();
    let mut after = 0;
    loop {
        b.send(json!({"type": "sync", "after": after, "limit": 4}))
            .await;
        let page = b.expect_type("sync").await;
        for m in page["messages"].as_array().unwrap() {
            got.push(m["id"].as_u64().unwrap());
            after = m["id"].as_u64().unwrap();
        }
        if page["hasMore"] == false {
            break;
        }
    }
    assert_eq!(
        got, want,
        "bob's rooms and his one-to-one, in id order, once"
    );
    b.send(json!({"type": "sync", "after": want[5], "limit": 500}))
        .await;
    let rest = b.expect_type("sync").await;
    assert_eq!(rest["messages"][0], sent[6]);
    assert_eq!(rest["messages"][0]["room"], r1);
    assert_eq!(rest["messages"][1]["room"], r2);
    assert_eq!(rest["messages"][2]["room"], Value::Null);
    assert_eq!(rest["messages"][2]["to"], bob.username.as_str());
}

#[tokio::test]
async fn reading_on_one_device_clears_the_count_on_the_others() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let mut a = alice.ws().await;
    let mut phone = bob.ws().await;
    phone.next().await;
    let room = room_id(&create(&mut a, "news", &[&bob.username]).await);
    let mut last = Value::Null;
    for i in 0..3 {
        a.send_acked(&bob.username, &format!("dm {i}")).await;
        last = say(&mut a, room, &format!("room {i}")).await;
    }
    let mut laptop = bob.ws_at(&c.url(0)).await;
    let alice_entry = laptop.users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == alice.username.as_str())
        .cloned()
        .unwrap();
    assert_eq!(alice_entry["unread"], 3, "{alice_entry}");
    let rooms = laptop.next().await;
    assert_eq!(rooms["rooms"][0]["unread"], 3);

    phone
        .send(json!({"type": "markRead", "room": room, "upTo": last["id"]}))
        .await;
    let want = json!({"type": "read", "room": room, "upTo": last["id"]});
    assert_eq!(phone.expect_type("read").await, want);
    assert_eq!(laptop.expect_type("read").await, want);
    // Never backwards.
    phone
        .send(json!({"type": "markRead", "room": room, "upTo": 1}))
        .await;
    assert_eq!(phone.expect_type("read").await, want);
    phone
        .send(json!({"type": "markRead", "peer": alice.username, "upTo": last["id"]}))
        .await;
    phone.expect_type("read").await;
    let again = bob.ws().await;
    assert!(
        again.users["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u.get("unread").is_none()),
        "{}",
        again.users
    );
}

/// 200 members over two nodes, three of them sending at once: every connected member
/// gets every message once, in id order; one who drops mid-burst and syncs gets exactly
/// what they missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_of_200_over_two_nodes_delivers_each_message_once_in_order() {
    const MEMBERS: usize = 200;
    const PER_SENDER: usize = 20;
    let c = Cluster::start(2).await;
    let mut users = Vec::new();
    for i in 0..MEMBERS {
        users.push(c.login_new(i % 2, &format!("m{i}")).await);
    }
    let mut sockets = Vec::new();
    for u in &users {
        let mut ws = u.ws().await;
        ws.next().await;
        sockets.push(ws);
    }
    let others: Vec<&str> = users[1..].iter().map(|u| u.username.as_str()).collect();
    let room = create(&mut sockets[0], "big", &others).await;
    let id = room_id(&room);
    assert_eq!(names(&room).len(), MEMBERS);
    for ws in &mut sockets[1..] {
        ws.expect_type("room").await;
    }

    // The dropper (member 7) leaves after the first few messages of the burst.
    let mut dropper = sockets.remove(7);
    let mut senders: Vec<Ws> = sockets.drain(..3).collect();
    let listeners = sockets;
    let readers: Vec<_> = listeners
        .into_iter()
        .map(|ws| {
            tokio::spawn(async move {
                let mut ws = ws;
                let mut ids = Vec::new();
                while ids.len() < 3 * PER_SENDER {
                    match ws.try_next(Duration::from_secs(20)).await {
                        Some(f) if f["type"] == "chatMessage" => {
                            assert_eq!(f["message"]["room"], id);
                            ids.push(f["message"]["id"].as_u64().unwrap());
                        }
                        Some(Value::Null) | None => break,
                        Some(_) => {}
                    }
                }
                ws.expect_none("chatMessage", QUIET, |_| true).await;
                ids
            })
        })
        .collect();
    let sending: Vec<_> = senders
        .drain(..)
        .enumerate()
        .map(|(s, mut ws)| {
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..PER_SENDER {
                    acked.push(
                        say(&mut ws, id, &format!("s{s} {i}")).await["id"]
                            .as_u64()
                            .unwrap(),
                    );
                }
                acked
            })
        })
        .collect();
    let mut seen_by_dropper = Vec::new();
    while seen_by_dropper.len() < 5 {
        let f = dropper.next().await;
        if f["type"] == "chatMessage" {
            seen_by_dropper.push(f["message"]["id"].as_u64().unwrap());
        }
    }
    dropper.close().await;
    let mut all = Vec::new();
    for s in sending {
        all.extend(s.await.unwrap());
    }
    all.sort_unstable();
    for r in readers {
        let ids = r.await.unwrap();
        assert_eq!(ids, all, "every message once, in id order");
    }

    let mut again = users[7].ws().await;
    again.next().await;
    let after = *seen_by_dropper.last().unwrap();
    again
        .send(json!({"type": "sync", "after": after, "limit": 500}))
        .await;
    let synced = again.expect_type("sync").await;
    let got: Vec<u64> = synced["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    let missed: Vec<u64> = all.iter().copied().filter(|i| *i > after).collect();
    assert_eq!(got, missed, "exactly what was missed");
    let seen: HashMap<u64, ()> = seen_by_dropper.iter().map(|i| (*i, ())).collect();
    assert!(got.iter().all(|i| !seen.contains_key(i)), "nothing twice");
}

/// A member removed while others keep sending gets `roomLeft` and, after it, nothing of
/// the room, on the other node too.
#[tokio::test]
async fn a_member_removed_mid_burst_receives_nothing_after_room_left() {
    let c = Cluster::start(2).await;
    let owner = c.login_new(0, "owner").await;
    let talker = c.login_new(0, "talker").await;
    let gone = c.login_new(1, "gone").await;
    let mut o = owner.ws().await;
    let t = talker.ws().await;
    let mut g = gone.ws().await;
    g.next().await;
    let id = room_id(&create(&mut o, "r", &[&talker.username, &gone.username]).await);
    g.expect_type("room").await;
    let (mut t_send, mut t_read) = t.split();
    let burst = tokio::spawn(async move {
        for i in 0..60 {
            let frame = json!({"type": "chatMessage", "room": id, "text": format!("b{i}")});
            if !t_send.send(frame).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        // Drain the acknowledgements.
        while let Some(f) = t_read.try_next(QUIET).await {
            if f.is_null() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    o.send(json!({"type": "removeMember", "room": id, "username": gone.username}))
        .await;
    let mut received_before = 0;
    loop {
        let f = g.next().await;
        if f["type"] == "roomLeft" {
            break;
        }
        if f["type"] == "chatMessage" {
            received_before += 1;
        }
    }
    assert!(received_before > 0, "the burst was under way");
    g.expect_none("chatMessage", Duration::from_secs(1), |_| true)
        .await;
    burst.await.unwrap();
}
