//! Rules on a port's backend taken on its own (SPEC 1 leaves them to us).

use super::*;

/// What is wrong with a backend on its own: interface names the kernel would refuse,
/// AF_XDP modes that do not exist.
pub(super) fn backend_problems(b: &BackendSpec) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(ifn) = b.ifname() {
        if ifn.is_empty() || ifn.len() > 15 || ifn.contains(['/', ' ', '\0']) {
            out.push(format!(
                "interface name {ifn:?} must be 1 to 15 bytes without '/', spaces or NUL"
            ));
        }
    }
    if let BackendSpec::Tap {
        netns: Some(ns), ..
    } = b
    {
        if let Some(rule) = netns_problem(ns) {
            out.push(rule);
        }
    }
    if let BackendSpec::External { kind: Some(k) } = b {
        let ok = (1..=32).contains(&k.len())
            && k.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
        if !ok {
            out.push(format!(
                "external kind {k:?} must be 1 to 32 bytes of lowercase letters, digits, '_' and '-'"
            ));
        }
    }
    if let BackendSpec::AfXdp { mode: Some(m), .. } = b {
        if !["auto", "zerocopy", "copy", "skb"].contains(&m.as_str()) {
            out.push(format!(
                "af_xdp mode \"{m}\" is not one of \"auto\", \"zerocopy\", \"copy\", \"skb\""
            ));
        }
    }
    out
}

/// Longest network namespace name (a file name: NAME_MAX).
const NETNS_NAME_MAX: usize = 255;
/// Longest network namespace path (PATH_MAX less its NUL).
const NETNS_PATH_MAX: usize = 4095;

/// What is wrong with a TAP's `netns`: it must be a name `ip netns add` could make (a
/// file under /var/run/netns) or an absolute path.
fn netns_problem(ns: &str) -> Option<String> {
    let what = "must be a network namespace name (as `ip netns add` makes, under /var/run/netns) or an absolute path such as /proc/PID/ns/net";
    if ns.is_empty() {
        return Some(format!("netns is empty: it {what}"));
    }
    if ns.contains('\0') {
        return Some(format!("netns {ns:?} contains NUL: it {what}"));
    }
    if ns.starts_with('/') {
        if ns.len() > NETNS_PATH_MAX {
            return Some(format!(
                "netns path is {} bytes, longer than {NETNS_PATH_MAX}",
                ns.len()
            ));
        }
        return None;
    }
    if ns.contains('/') {
        return Some(format!(
            "netns {ns:?} is neither a name (no '/') nor an absolute path: it {what}"
        ));
    }
    if ns == "." || ns == ".." {
        return Some(format!("netns {ns:?} is not a namespace name: it {what}"));
    }
    if ns.len() > NETNS_NAME_MAX {
        return Some(format!(
            "netns name is {} bytes, longer than {NETNS_NAME_MAX}",
            ns.len()
        ));
    }
    None
}
