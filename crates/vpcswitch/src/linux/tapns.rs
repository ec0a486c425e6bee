//! TAP ports and network namespaces (issue 22): a TAP backend from its configuration,
//! the warning when a TAP without `netns` is created in the switch's own namespace, the
//! check whether a down port's device is back, and deleting the persistent device of a
//! port with `netns` that a reload removed.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use vpcswitch_model::{netns_path, BackendSpec, Config};
use vpcswitch_tap::TapBackend;

/// Ports already warned about (once per port in a process).
static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// The backend of TAP port `port`. Without `netns`, a device missing from the switch's
/// namespace is created there, as documented; but a restarted switch whose guests'
/// TAPs were moved into their namespaces would create a stand-in that no guest sees:
/// say so (WARN, once per port).
pub(crate) fn tap_backend(
    port: &str,
    ifname: &str,
    offload: bool,
    netns: Option<&str>,
) -> TapBackend {
    let b = TapBackend::with_offload(ifname, offload);
    match netns {
        Some(ns) => b.in_netns(ns, netns_path(ns)),
        None => {
            if !Path::new("/sys/class/net").join(ifname).exists() {
                let mut w = WARNED.lock().unwrap_or_else(|e| e.into_inner());
                if w.get_or_insert_with(HashSet::new).insert(port.to_string()) {
                    tracing::warn!(
                        port = %port,
                        ifname = %ifname,
                        "TAP does not exist in the switch's network namespace: creating it here (it disappears when the switch stops); if its guest end was moved into a namespace, the port needs netns = \"...\" to survive restarts"
                    );
                }
            }
            b
        }
    }
}

/// True when the device of down port `name` exists again where the port looks for it
/// (the guest's namespace for a TAP with `netns`, else the switch's).
pub fn device_present(cfg: &Config, name: &str) -> bool {
    let Some(spec) = cfg.backend_of(name) else {
        return false;
    };
    let Some(ifname) = spec.ifname() else {
        return false;
    };
    match spec.netns() {
        Some(ns) => vpcswitch_tap::exists_in(ifname, &netns_path(ns)).unwrap_or(false),
        None => Path::new("/sys/class/net").join(ifname).exists(),
    }
}

/// A network namespace's identity: the device and inode of its nsfs file, so that
/// `web1`, `/run/netns/web1` and `/proc/PID/ns/net` of a process in it are one
/// namespace; the path when it cannot be looked up (gone).
#[derive(Debug, PartialEq, Eq, Hash)]
enum NsKey {
    Id(u64, u64),
    Path(std::path::PathBuf),
}

fn ns_key(path: &Path) -> NsKey {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => NsKey::Id(m.dev(), m.ino()),
        Err(_) => NsKey::Path(path.to_path_buf()),
    }
}

/// After a reload from `old` to `new` took effect: deletes the persistent TAPs of ports
/// with `netns` whose device (namespace and name) the new configuration no longer
/// uses. A removed port leaves no device behind; a stopped switch leaves them all.
pub fn delete_removed(old: &Config, new: &Config) {
    let in_use: HashSet<(NsKey, &str)> = new
        .local_port_names()
        .filter_map(|n| new.backend_of(n))
        .filter_map(|b| Some((ns_key(&netns_path(b.netns()?)), b.ifname()?)))
        .collect();
    for port in old.local_port_names() {
        let Some(BackendSpec::Tap {
            ifname,
            netns: Some(ns),
            ..
        }) = old.backend_of(port)
        else {
            continue;
        };
        let path = netns_path(ns);
        if in_use.contains(&(ns_key(&path), ifname.as_str())) {
            continue;
        }
        match vpcswitch_tap::delete_tap_in(ifname, &path) {
            Ok(true) => {
                tracing::info!(port = %port, ifname = %ifname, netns = %ns, "port removed: its TAP in the guest's namespace is deleted")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(port = %port, ifname = %ifname, netns = %ns, error = %e, "port removed but its TAP in the guest's namespace could not be deleted")
            }
        }
    }
}
