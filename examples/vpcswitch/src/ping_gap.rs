//! The outage a pinging client saw: shared by the demo, the netns failover tests and
//! `vpcswitch-bench` (which include this file by path; it has no dependencies).

/// The longest gap between consecutive echo replies in `ping -D` output, in ms, and the
/// number of replies.
pub fn ping_gap_ms(out: &str) -> (f64, usize) {
    let times: Vec<f64> = out
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    let gap = times
        .windows(2)
        .map(|w| (w[1] - w[0]) * 1000.0)
        .fold(0.0, f64::max);
    (gap, times.len())
}
