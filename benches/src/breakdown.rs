//! Where a ping's round trip goes: the RTT split into its legs from packet captures
//! taken inside both guests (`vpcswitch-bench --breakdown`).
//!
//! A capture on a guest's interface timestamps each frame in the kernel as it passes the
//! interface: on transmit when the guest's stack hands it to the device, on receive when
//! the device hands it to the stack. With captures in guest a (the pinger) and guest b,
//! one echo has four timestamps, and its RTT splits into:
//!
//! * `a → b`: from leaving a's stack to entering b's (the switch, its wake-up and the
//!   kernel I/O on both of its sides: the forward path);
//! * `b turnaround`: b's stack answering;
//! * `b → a`: the return path through the switch;
//! * `a stack`: what ping reports minus the wire-to-wire time at a (ping's own
//!   scheduling, its socket, the timestamping).
//!
//! Both captures are on one machine and one clock (`CLOCK_REALTIME` in the kernel), so
//! the legs are comparable to the nanosecond.

use std::collections::HashMap;

use crate::quantile;

/// The legs of one echo, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Legs {
    /// a's transmit → b's receive of the request.
    pub forward: f64,
    /// b's receive of the request → b's transmit of the reply.
    pub turnaround: f64,
    /// b's transmit → a's receive of the reply.
    pub back: f64,
    /// ping's RTT minus a's transmit → receive.
    pub stack: f64,
    /// ping's RTT.
    pub rtt: f64,
}

/// The ICMP echo timestamps of one capture read by `tcpdump -n -tt --nano -r FILE`:
/// (request by sequence, reply by sequence), nanoseconds since the epoch (integers: an
/// `f64` of seconds since the epoch keeps only ~0.2 µs).
pub fn echo_times(tcpdump_text: &str) -> (HashMap<u32, u64>, HashMap<u32, u64>) {
    let (mut req, mut rep) = (HashMap::new(), HashMap::new());
    for line in tcpdump_text.lines() {
        let Some(ts) = line.split_whitespace().next().and_then(nanos) else {
            continue;
        };
        let Some(seq) = line
            .split("seq ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        if line.contains("ICMP echo request") {
            req.entry(seq).or_insert(ts);
        } else if line.contains("ICMP echo reply") {
            rep.entry(seq).or_insert(ts);
        }
    }
    (req, rep)
}

/// `SECONDS.NANOSECONDS` (tcpdump's `-tt --nano`) as nanoseconds.
fn nanos(t: &str) -> Option<u64> {
    let (s, n) = t.split_once('.')?;
    if n.len() != 9 {
        return None;
    }
    s.parse::<u64>()
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(n.parse().ok()?)
}

/// ping's RTT per `icmp_seq`, µs, from `ping -n` output.
pub fn ping_rtts(ping_text: &str) -> HashMap<u32, f64> {
    ping_text
        .lines()
        .filter_map(|l| {
            let seq = l
                .split("icmp_seq=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            let ms: f64 = l.split("time=").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((seq, ms * 1000.0))
        })
        .collect()
}

/// The legs of every echo seen in all four places and by ping, in sequence order.
/// Capture sequence numbers are 16-bit; ping's count on, so they are matched modulo
/// 65 536 (a breakdown run is far shorter than that).
pub fn legs(a_capture: &str, b_capture: &str, ping_text: &str) -> Vec<Legs> {
    let (a_req, a_rep) = echo_times(a_capture);
    let (b_req, b_rep) = echo_times(b_capture);
    let mut rtts: Vec<(u32, f64)> = ping_rtts(ping_text).into_iter().collect();
    rtts.sort_by_key(|(s, _)| *s);
    rtts.into_iter()
        .filter_map(|(seq, rtt)| {
            let s = seq % 65_536;
            let (at, bt, br, ar) = (
                a_req.get(&s)?,
                b_req.get(&s)?,
                b_rep.get(&s)?,
                a_rep.get(&s)?,
            );
            let us = |to: &u64, from: &u64| (*to as i64 - *from as i64) as f64 / 1e3;
            Some(Legs {
                forward: us(bt, at),
                turnaround: us(br, bt),
                back: us(ar, br),
                stack: rtt - us(ar, at),
                rtt,
            })
        })
        .collect()
}

/// One row of the summary: a leg's median and p99 over all echoes, and its mean over
/// the slowest 1% of echoes (by RTT), µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegSummary {
    /// The leg's name.
    pub leg: &'static str,
    /// Median over all echoes.
    pub median: f64,
    /// p99 over all echoes.
    pub p99: f64,
    /// Mean over the slowest 1% of echoes.
    pub slowest_mean: f64,
}

/// The summary of [`legs`]: one row per leg and the RTT, in the order forward,
/// turnaround, back, stack, rtt. Empty for no echoes.
pub fn summary(all: &[Legs]) -> Vec<LegSummary> {
    if all.is_empty() {
        return Vec::new();
    }
    let mut by_rtt = all.to_vec();
    by_rtt.sort_by(|x, y| y.rtt.total_cmp(&x.rtt));
    let slow = &by_rtt[..all.len().div_ceil(100)];
    type Pick = (&'static str, fn(&Legs) -> f64);
    let pick: [Pick; 5] = [
        ("a → b (switch, forward)", |l| l.forward),
        ("b turnaround (guest b's stack)", |l| l.turnaround),
        ("b → a (switch, return)", |l| l.back),
        ("a stack (ping's own)", |l| l.stack),
        ("RTT (ping)", |l| l.rtt),
    ];
    pick.into_iter()
        .map(|(leg, f)| {
            let mut v: Vec<f64> = all.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            LegSummary {
                leg,
                median: quantile(&v, 0.5).unwrap_or_default(),
                p99: quantile(&v, 0.99).unwrap_or_default(),
                slowest_mean: slow.iter().map(f).sum::<f64>() / slow.len() as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "\
1764600000.000100000 IP 10.9.0.11 > 10.9.0.12: ICMP echo request, id 7, seq 1, length 64
1764600000.000190000 IP 10.9.0.12 > 10.9.0.11: ICMP echo reply, id 7, seq 1, length 64
1764600000.010100000 IP 10.9.0.11 > 10.9.0.12: ICMP echo request, id 7, seq 2, length 64
1764600000.010400000 IP 10.9.0.12 > 10.9.0.11: ICMP echo reply, id 7, seq 2, length 64
";
    const B: &str = "\
1764600000.000130000 IP 10.9.0.11 > 10.9.0.12: ICMP echo request, id 7, seq 1, length 64
1764600000.000150000 IP 10.9.0.12 > 10.9.0.11: ICMP echo reply, id 7, seq 1, length 64
1764600000.010300000 IP 10.9.0.11 > 10.9.0.12: ICMP echo request, id 7, seq 2, length 64
1764600000.010320000 IP 10.9.0.12 > 10.9.0.11: ICMP echo reply, id 7, seq 2, length 64
";
    const PING: &str = "\
64 bytes from 10.9.0.12: icmp_seq=1 ttl=64 time=0.100 ms
64 bytes from 10.9.0.12: icmp_seq=2 ttl=64 time=0.310 ms
64 bytes from 10.9.0.12: icmp_seq=3 ttl=64 time=0.050 ms
";

    #[test]
    fn an_echo_splits_into_its_four_legs() {
        let l = legs(A, B, PING);
        // seq 3 was not captured: left out
        assert_eq!(l.len(), 2);
        let close = |x: f64, y: f64| (x - y).abs() < 0.01;
        assert!(
            close(l[0].forward, 30.0) && close(l[0].turnaround, 20.0),
            "{l:?}"
        );
        assert!(close(l[0].back, 40.0) && close(l[0].stack, 10.0), "{l:?}");
        assert!(
            close(l[1].forward, 200.0) && close(l[1].back, 80.0),
            "{l:?}"
        );
        assert!(close(l[1].stack, 10.0), "{l:?}");
        let s = summary(&l);
        assert_eq!(s.len(), 5);
        // the slowest 1% of two echoes is the slower one
        assert!(close(s[0].slowest_mean, 200.0), "{s:?}");
        assert!(summary(&[]).is_empty());
    }
}
