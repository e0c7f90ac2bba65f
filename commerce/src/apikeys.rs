//! apikeys
