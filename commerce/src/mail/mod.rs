//! Mail: templates per site, an outbox table written in the transaction of the event that causes
//! the mail, and a sender task that delivers each row over SMTP exactly once.
//!
//! Exactly once, and the one window left: a row is claimed with a lease (so two senders, on one
//! node or several, never send the same row), sent, then marked sent. A crash after the SMTP
//! server accepted the message but before the mark is committed sends it again once the lease
//! lapses. That window is one UPDATE long, and the Message-ID is derived from the outbox id, so
//! the copy carries the same Message-ID as the original and receiving systems can drop it.

pub mod outbox;
pub mod sender;
pub mod templates;

pub use outbox::{OutboxRow, enqueue};
pub use sender::{MailSender, SenderConfig, SmtpConfig, SmtpSecurity};
pub use templates::{MailTemplates, RenderedMail};
