//! Unique reach per placement, publisher and bidder (HyperLogLog), and exact de-duplication of billing events.
