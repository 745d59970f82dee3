//! The Redis side of receiving: one pub/sub connection per node, subscribed to what
//! [`super::interest`] says is wanted, handing each message to [`Hub::dispatch`].

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio_util::sync::CancellationToken;

use super::hub::{FlushRequests, Hub};
use super::interest::SubChange;
use super::outbox::Closing;
use crate::redis_store::Redis;

const RESUBSCRIBE_BACKOFF: Duration = Duration::from_millis(500);

/// Runs the node's subscriber connection until `shutdown`; reconnects when Redis drops it.
pub async fn run_subscriber(
    hub: Hub,
    redis: Redis,
    mut flush_rx: FlushRequests,
    shutdown: CancellationToken,
) {
    let mut first = true;
    while !shutdown.is_cancelled() {
        let pubsub = match redis.client().get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "redis subscriber connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(RESUBSCRIBE_BACKOFF) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        if !first {
            // New users announced while we were away were missed.
            hub.directory_changed();
        }
        first = false;
        let (mut sink, mut stream) = pubsub.split();
        if subscribe_all(&mut sink, hub.all_wanted()).await.is_ok() {
            receive(&hub, &mut sink, &mut stream, &mut flush_rx, &shutdown).await;
        }
        if shutdown.is_cancelled() {
            return;
        }
        // Messages published while this node is not subscribed are not replayed by Redis,
        // and another node may publish into a restarted Redis before this one is back.
        // Close every socket now (nothing more is queued to them, so none receives a later
        // id that would move its `sync` cursor past a missed one); their clients reconnect
        // and `sync`, and sockets set up from here on wait for the next subscription.
        tracing::error!("redis subscriber connection lost");
        hub.close_all(Closing::new(1012, "node lost its redis subscription"));
    }
}

/// Reads the subscription until it fails or `shutdown`, applying interest changes as
/// they come.
async fn receive(
    hub: &Hub,
    sink: &mut PubSubSink,
    stream: &mut PubSubStream,
    flush_rx: &mut FlushRequests,
    shutdown: &CancellationToken,
) {
    loop {
        let nudge_due = hub.nudge_due();
        tokio::select! {
            _ = tokio::time::sleep_until(nudge_due.unwrap_or_else(tokio::time::Instant::now)),
                if nudge_due.is_some() => hub.nudge_all(),
            msg = stream.next() => match msg {
                Some(msg) => {
                    hub.dispatch(msg.get_channel_name(), msg.get_payload_bytes());
                    // A message can make sockets watch someone new (a peer, a new
                    // user): subscribe before reading on, so their next presence
                    // change is not missed.
                    if apply(hub, sink).await.is_err() { return; }
                }
                None => return,
            },
            _ = hub.changed() => {
                if apply(hub, sink).await.is_err() { return; }
            }
            Some(ack) = flush_rx.recv() => {
                // A failed flush leaves `ack` unanswered: the socket waiting on it must not
                // go on as if it were subscribed.
                if apply(hub, sink).await.is_err() { return; }
                let _ = ack.send(());
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn apply(hub: &Hub, sink: &mut PubSubSink) -> Result<(), redis::RedisError> {
    subscribe_all(sink, hub.take_changes()).await?;
    hub.release_after_subscribe();
    Ok(())
}

/// Sends the changes as at most four batched commands.
async fn subscribe_all(
    sink: &mut PubSubSink,
    changes: Vec<SubChange>,
) -> Result<(), redis::RedisError> {
    let pick = |pattern: bool, wanted: bool| -> Vec<String> {
        changes
            .iter()
            .filter(|c| c.pattern == pattern && c.wanted == wanted)
            .map(|c| c.channel.clone())
            .collect()
    };
    let (subscribe, unsubscribe) = (pick(false, true), pick(false, false));
    let (psubscribe, punsubscribe) = (pick(true, true), pick(true, false));
    if !subscribe.is_empty() {
        sink.subscribe(&subscribe).await?;
    }
    if !psubscribe.is_empty() {
        sink.psubscribe(&psubscribe).await?;
    }
    if !unsubscribe.is_empty() {
        sink.unsubscribe(&unsubscribe).await?;
    }
    if !punsubscribe.is_empty() {
        sink.punsubscribe(&punsubscribe).await?;
    }
    Ok(())
}
