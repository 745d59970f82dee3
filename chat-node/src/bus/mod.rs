//! Fan-out between nodes, split the way centrifuge splits it: local connections
//! ([`hub`]), what the node subscribes to ([`interest`]), the Redis subscriber
//! ([`subscriber`]) and publisher ([`publish`]), message routing ([`dispatch`]), and the
//! contract between them: channel names ([`channel`]) and the envelope ([`envelope`]).
//!
//! Every user has a channel carrying their messages, typing and logout events, and a
//! presence channel; every room has a channel carrying its messages, typing and
//! membership changes. A node subscribes to the user channels of its connected users, the
//! room channels of their rooms and the presence channels its sockets watch, all on one
//! subscriber connection. Publishing a one-to-one message costs two PUBLISH calls and a
//! room message one, whatever the number of nodes or members, and Redis hands it only to
//! the nodes that hold someone it is for.

pub mod channel;
pub mod directory;
mod dispatch;
pub mod envelope;
pub mod hub;
mod interest;
pub mod outbox;
pub mod publish;
mod subscriber;

pub use envelope::{frame_text, now_us, UserEvent};
pub use hub::{ConnId, Hub, TooManySockets};
pub use outbox::{Closing, Frame, Outbox};
pub use publish::Publisher;
pub use subscriber::run_subscriber;
