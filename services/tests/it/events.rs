//! The event bus: delivery to every subscriber, counted drops on a full queue, type clashes,
//! unsubscribing, and the end of subscriptions at shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bourse_services::{EventError, EventsConfig, ServicesConfig};

use crate::Node;

#[derive(Clone, Debug, PartialEq)]
struct Impression {
    placement: Arc<str>,
    price_micros: u64,
}

fn impression(price_micros: u64) -> Impression {
    Impression {
        placement: "slot".into(),
        price_micros,
    }
}

#[tokio::test]
async fn every_subscriber_gets_every_event_in_order() {
    let node = Node::start(&ServicesConfig::default()).await;
    let topic = node
        .services
        .events
        .topic::<Impression>("exchange.impression")
        .unwrap();
    let mut ledger = topic.subscribe(16);
    let mut floors = topic.subscribe(16);
    assert_eq!(topic.subscribers(), 2);
    // Published through another handle on the same topic.
    let publisher = node
        .services
        .events
        .topic::<Impression>("exchange.impression")
        .unwrap();
    for price in 1..=5 {
        publisher.publish(impression(price));
    }
    for subscription in [&mut ledger, &mut floors] {
        let mut received = Vec::new();
        while received.len() < 5 {
            subscription.recv_many(&mut received, 10).await;
        }
        let prices: Vec<u64> = received.iter().map(|event| event.price_micros).collect();
        assert_eq!(prices, [1, 2, 3, 4, 5]);
        assert_eq!(subscription.try_recv(), None);
    }
    assert_eq!(topic.dropped(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_and_counts_without_slowing_other_subscribers() {
    let node = Node::start(&ServicesConfig::default()).await;
    let topic = node.services.events.topic::<u64>("clicks").unwrap();
    let mut slow = topic.subscribe(3);
    let mut fast = topic.subscribe(1_000);
    let started = Instant::now();
    for value in 0..1_000 {
        topic.publish(value);
    }
    assert!(started.elapsed() < Duration::from_millis(500));
    // The slow subscriber keeps the first three; the others are dropped and counted.
    assert_eq!(slow.queued(), 3);
    assert_eq!(topic.dropped(), 997);
    assert_eq!(
        node.metric("bourse_kernel_events_dropped_total", &[("topic", "clicks")]),
        Some(997.0)
    );
    let mut kept = Vec::new();
    slow.recv_many(&mut kept, 10).await;
    assert_eq!(kept, [0, 1, 2]);
    assert_eq!(fast.queued(), 1_000);
    assert_eq!(fast.recv().await, Some(0));
}

#[tokio::test]
async fn publishing_without_subscribers_costs_nothing_and_drops_nothing() {
    let node = Node::start(&ServicesConfig::default()).await;
    let topic = node.services.events.topic::<u64>("quiet").unwrap();
    for value in 0..10_000 {
        topic.publish(value);
    }
    assert_eq!(topic.dropped(), 0);
    // A late subscriber sees only what comes after it.
    let mut late = topic.subscribe(4);
    topic.publish(42);
    assert_eq!(late.recv().await, Some(42));
    assert_eq!(late.try_recv(), None);
}

#[tokio::test]
async fn one_name_cannot_carry_two_types() {
    let node = Node::start(&ServicesConfig::default()).await;
    let events = &node.services.events;
    events.topic::<Impression>("exchange.impression").unwrap();
    let err = events.topic::<String>("exchange.impression").err().unwrap();
    assert!(matches!(err, EventError::TypeClash { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("exchange.impression")
            && message.contains("Impression")
            && message.contains("String"),
        "{message}"
    );
    assert!(matches!(
        events.topic::<u8>("Bad Name"),
        Err(EventError::InvalidName(_))
    ));
    events.topic::<u8>("other").unwrap();
    let listed: Vec<String> = events.topics().into_iter().map(|(name, _)| name).collect();
    assert_eq!(listed, ["exchange.impression", "other"]);
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes_it() {
    let node = Node::start(&ServicesConfig::default()).await;
    let topic = node.services.events.topic::<u64>("orders").unwrap();
    let first = topic.subscribe(1);
    let mut second = topic.subscribe(8);
    assert_eq!(topic.subscribers(), 2);
    drop(first);
    assert_eq!(topic.subscribers(), 1);
    // The gone subscriber's full queue no longer counts as drops.
    for value in 0..5 {
        topic.publish(value);
    }
    assert_eq!(topic.dropped(), 0);
    assert_eq!(second.recv().await, Some(0));
}

#[tokio::test]
async fn shutdown_ends_subscriptions_after_what_was_queued() {
    let node = Node::start(&ServicesConfig {
        events: EventsConfig {
            default_capacity: 2,
        },
        ..ServicesConfig::default()
    })
    .await;
    let topic = node.services.events.topic::<u64>("jobs").unwrap();
    let mut worker = topic.subscribe_default();
    topic.publish(1);
    topic.publish(2);
    topic.publish(3);
    assert_eq!(topic.dropped(), 1, "the default capacity is 2");
    let consumer = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(job) = worker.recv().await {
            seen.push(job);
        }
        seen
    });
    node.services.shutdown(Duration::from_secs(1)).await;
    let seen = tokio::time::timeout(Duration::from_secs(5), consumer)
        .await
        .expect("the subscription ended")
        .unwrap();
    assert_eq!(seen, [1, 2]);
    // After shutdown nothing is delivered and new subscriptions end at once.
    topic.publish(4);
    let mut late = topic.subscribe(4);
    assert_eq!(late.recv().await, None);
}
