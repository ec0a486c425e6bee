//! The event API for embedders (`Switch::events`): VIP moves (SPEC 3.1, 3.2), ports
//! down and up, reloads and refusals (SPEC 8.1), a worker failure; pushed to each
//! subscriber, never polled.

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vpcswitch_backend::memory::{mem_port, MemPort};
use vpcswitch_backend::{
    Backend, BackendError, PacketBuf, PortQueue, TxResult, WorkerBufs, WorkerMem,
};
use vpcswitch_model::{Config, ConfigBuilder};
use vpcswitch_runtime::{memory_backends, Event, EventKind, Events, Switch};
use vpcswitch_wire::build;

fn cfg(workers: usize, vip_ports: &[&str]) -> Config {
    ConfigBuilder::new()
        .workers(workers)
        .vpc("a", &["10.0.0.0/16"])
        .subnet("a1", "a", "10.0.1.0/24")
        .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
        .port("p2", "a1", "02:00:00:00:01:02", &["10.0.1.12"])
        .vip("v", "a1", "10.0.1.100", vip_ports)
        .build()
        .unwrap()
}

/// The events that arrive within `wait` after the first one, or none.
fn collect(ev: &Events, wait: Duration) -> Vec<EventKind> {
    let mut got = vec![];
    let end = Instant::now() + wait;
    while let Some(e) = ev.recv_timeout(end.saturating_duration_since(Instant::now())) {
        got.push(e.kind);
    }
    got
}

/// Waits up to 5 s for an event matching `f`; the events before it are returned too.
fn wait_for(ev: &Events, what: &str, f: impl Fn(&EventKind) -> bool) -> Vec<EventKind> {
    let end = Instant::now() + Duration::from_secs(5);
    let mut seen = vec![];
    while let Some(Event { kind, .. }) =
        ev.recv_timeout(end.saturating_duration_since(Instant::now()))
    {
        let hit = f(&kind);
        seen.push(kind);
        if hit {
            return seen;
        }
    }
    panic!("no {what} event within 5 s; got {seen:?}");
}

fn moved(vip: &str, from: Option<&str>, to: Option<&str>, moves: u64) -> EventKind {
    EventKind::VipMoved {
        vip: vip.into(),
        ip: "10.0.1.100".parse().unwrap(),
        from: from.map(Into::into),
        to: to.map(Into::into),
        moves,
    }
}

/// SPEC 3.1, 3.2, 8.1: each move is an event with the owner before and after and the
/// count; a reload is one, a refused reload is one, and a reload that unbinds the owner
/// clears it (an event to `None`). Two subscribers get the same events.
#[test]
fn vip_moves_reloads_and_refusals_are_events_for_every_subscriber() {
    let c = cfg(2, &["p1", "p2"]);
    let (b, g) = memory_backends(&c, 256);
    let sw = Switch::start(&c, b).unwrap();
    let (ev, ev2) = (sw.events(), sw.events());
    assert!(ev.try_recv().is_none(), "the state at start is not news");

    g["p2"].send_on(0, &build::garp(mac("02:00:00:00:01:02"), ip("10.0.1.100")));
    let got = wait_for(&ev, "first move", |k| {
        matches!(k, EventKind::VipMoved { .. })
    });
    assert_eq!(got, vec![moved("v", None, Some("p2"), 1)]);
    // the other worker's claim: from p2 to p1
    g["p1"].send_on(1, &build::garp(mac("02:00:00:00:01:01"), ip("10.0.1.100")));
    let got = wait_for(&ev, "second move", |k| {
        matches!(k, EventKind::VipMoved { .. })
    });
    assert_eq!(got, vec![moved("v", Some("p2"), Some("p1"), 2)]);

    let gen = sw.reload(&c, vec![]).unwrap();
    let got = wait_for(&ev, "reloaded", |k| matches!(k, EventKind::Reloaded { .. }));
    assert_eq!(got, vec![EventKind::Reloaded { generation: gen }]);

    // a refused reload (the worker count cannot change): the configuration stays
    let err = sw.reload(&cfg(1, &["p1", "p2"]), vec![]).unwrap_err();
    let got = wait_for(&ev, "refused", |k| {
        matches!(k, EventKind::ReloadRefused { .. })
    });
    assert_eq!(
        got,
        vec![EventKind::ReloadRefused {
            error: err.to_string()
        }]
    );

    // unbinding the owner clears it (SPEC 3.2)
    let gen = sw.reload(&cfg(2, &["p2"]), vec![]).unwrap();
    let mut got = collect(&ev, Duration::from_millis(1500));
    got.sort_by_key(|k| k.name());
    assert_eq!(
        got,
        vec![
            EventKind::Reloaded { generation: gen },
            moved("v", Some("p1"), None, 2),
        ],
        "the reload and the owner it cleared"
    );

    // the second subscriber saw the same, in the same order
    let all: Vec<&str> = collect(&ev2, Duration::from_millis(200))
        .iter()
        .map(EventKind::name)
        .collect();
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(
        &all[..4],
        ["vip_moved", "vip_moved", "reloaded", "reload_refused"]
    );
    let published: std::collections::HashMap<_, _> = sw.events_published().into_iter().collect();
    assert_eq!(published["vip_moved"], 3);
    assert_eq!(published["reloaded"], 2);
    assert_eq!(published["reload_refused"], 1);
    assert_eq!(published["worker_failed"], 0);
    assert_eq!(ev.lost(), 0);
    sw.stop();
    assert!(ev.closed(), "the stream ends when the switch stops");
    assert!(ev.recv_timeout(Duration::from_millis(10)).is_none());
}

/// A memory port whose device can be pulled out: its queues say `is_down`.
struct Pullable {
    inner: MemPort,
    down: Arc<AtomicBool>,
}
struct PullableQueue {
    inner: Box<dyn PortQueue>,
    down: Arc<AtomicBool>,
}
impl PortQueue for PullableQueue {
    fn rx_burst(&mut self, w: &mut WorkerBufs, rx: &mut Vec<PacketBuf>, max: usize) -> usize {
        if self.down.load(Ordering::Relaxed) {
            return 0;
        }
        self.inner.rx_burst(w, rx, max)
    }
    fn tx_burst(&mut self, w: &mut WorkerBufs, b: &mut Vec<PacketBuf>) -> TxResult {
        self.inner.tx_burst(w, b)
    }
    fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}
impl Backend for Pullable {
    fn describe(&self) -> String {
        "pullable".into()
    }
    fn queues(&mut self, w: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
        Ok(self
            .inner
            .queues(w)?
            .into_iter()
            .map(|q| {
                Box::new(PullableQueue {
                    inner: q,
                    down: self.down.clone(),
                }) as Box<dyn PortQueue>
            })
            .collect())
    }
}

/// A port whose device goes away is one PortDown (however long it stays down); a
/// reload with a new device for it is one PortUp.
#[test]
fn a_port_going_down_and_coming_back_is_two_events() {
    let c = cfg(1, &["p1", "p2"]);
    let (mut b, _g) = memory_backends(&c, 256);
    b.retain(|(n, _)| n != "p2");
    let down = Arc::new(AtomicBool::new(false));
    let (port, _guest) = mem_port("p2", 1, 256);
    b.push((
        "p2".into(),
        Box::new(Pullable {
            inner: port,
            down: down.clone(),
        }),
    ));
    let sw = Switch::start(&c, b).unwrap();
    let ev = sw.events();
    down.store(true, Ordering::Relaxed);
    let got = wait_for(&ev, "port down", |k| {
        matches!(k, EventKind::PortDown { .. })
    });
    assert_eq!(got, vec![EventKind::PortDown { port: "p2".into() }]);
    assert!(
        collect(&ev, Duration::from_millis(1500)).is_empty(),
        "one event while it stays down (the event thread looks every second too)"
    );
    let (port, _guest) = mem_port("p2", 1, 256);
    let gen = sw.reload(&c, vec![("p2".into(), Box::new(port))]).unwrap();
    let mut got = collect(&ev, Duration::from_millis(1500));
    got.sort_by_key(|k| k.name());
    assert_eq!(
        got,
        vec![
            EventKind::PortUp { port: "p2".into() },
            EventKind::Reloaded { generation: gen },
        ]
    );
    sw.stop();
}

/// A worker panic (fail-fast: the switch stops) is a WorkerFailed event naming the
/// worker and the panic, and the stream then ends.
#[test]
fn a_worker_failure_is_an_event_and_ends_the_stream() {
    struct Boom;
    struct BoomQueue(usize);
    impl PortQueue for BoomQueue {
        fn rx_burst(&mut self, _: &mut WorkerBufs, _: &mut Vec<PacketBuf>, _: usize) -> usize {
            self.0 = self.0.saturating_sub(1);
            assert!(self.0 > 0, "injected fault");
            0
        }
        fn tx_burst(&mut self, _: &mut WorkerBufs, b: &mut Vec<PacketBuf>) -> TxResult {
            let sent = b.len();
            b.clear();
            TxResult {
                sent,
                ..Default::default()
            }
        }
    }
    impl Backend for Boom {
        fn describe(&self) -> String {
            "boom".into()
        }
        fn queues(&mut self, w: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
            Ok((0..w.len())
                .map(|_| Box::new(BoomQueue(1_000)) as Box<dyn PortQueue>)
                .collect())
        }
    }
    let c = cfg(1, &["p1", "p2"]);
    let (mut b, _g) = memory_backends(&c, 64);
    b.retain(|(n, _)| n != "p2");
    b.push(("p2".into(), Box::new(Boom)));
    let sw = Switch::start(&c, b).unwrap();
    let mut ev = sw.events();
    let got = wait_for(&ev, "worker failed", |k| {
        matches!(k, EventKind::WorkerFailed { .. })
    });
    match got.last() {
        Some(EventKind::WorkerFailed { reason }) => {
            assert!(
                reason.contains("worker 0 panicked: injected fault"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // the switch stopped itself: the iterator ends (it would block forever otherwise)
    let rest: Vec<Event> = ev.by_ref().collect();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(ev.closed());
    assert_eq!(sw.stop(), 1);
}
