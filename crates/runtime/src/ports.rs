//! Port allocation.
//!
//! Each requested port is taken from its own range (else the manifest's default range, else
//! 20000–24000), skipping reserved ports, the control API's port and ports already given out
//! in this run. The port a service had on the previous run of the same install
//! (`<app data>/runtime/ports.json`) is tried first, so ports stay stable while still free.
//! A candidate counts as free when the runtime can bind it on 127.0.0.1; a bind refused because
//! the port is taken (or privileged) moves to the next candidate, any other failure (out of
//! file descriptors: a manifest may request thousands of ports, each held until its spawn)
//! ends that request at once rather than trying the rest of its range.
//!
//! **The bind-close-spawn race.** The runtime keeps each port's listener bound from
//! allocation until the moment its service is spawned, so no other program can take it in
//! between. Then: a port with `requires_socket: true` is handed over as the bound socket itself
//! (fd in `XBUNDLE_LISTEN_FD_<NAME>`), with no window at all; the in-process UI server uses its
//! listener directly. For every other port the listener is closed just before the spawn, and
//! what remains is the window between that close and the service's own bind (typically
//! milliseconds, during which another program could take the port: the service then fails to
//! bind, exits, and is restarted with backoff on the same port). The listeners are close-on-exec,
//! so no service inherits another's socket.

use crate::confine::Dir;
use manifest::{Manifest, PortRange};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;

pub const DEFAULT_RANGE: PortRange = PortRange {
    min: 20000,
    max: 24000,
};

/// Ports per service per name.
pub type PortMap = BTreeMap<String, BTreeMap<String, u16>>;

pub struct Allocation {
    pub ports: PortMap,
    /// Listeners still held, by (service, port name).
    pub held: BTreeMap<(String, String), TcpListener>,
    /// Requests no free port was found for: `service.name: range`.
    pub failures: Vec<String>,
}

fn bind(port: u16) -> Option<TcpListener> {
    TcpListener::bind(("127.0.0.1", port)).ok()
}

/// Allocates every requested port. `previous` is the last run's map.
pub fn allocate(manifest: &Manifest, previous: &PortMap, control_port: u16) -> Allocation {
    let mut taken: BTreeSet<u16> = manifest
        .ports
        .iter()
        .flat_map(|p| p.reserved.iter().flatten())
        .copied()
        .collect();
    taken.insert(control_port);
    let default = manifest
        .ports
        .as_ref()
        .and_then(|p| p.default_range)
        .unwrap_or(DEFAULT_RANGE);
    let mut allocation = Allocation {
        ports: BTreeMap::new(),
        held: BTreeMap::new(),
        failures: Vec::new(),
    };
    for service in &manifest.services {
        let mut requests: Vec<(String, PortRange)> = service
            .requested_ports()
            .iter()
            .map(|r| (r.name.to_string(), r.range))
            .collect();
        // A port named by a check but not requested gets one from the default range.
        for name in [&service.health.port_name, &service.readiness.port_name]
            .into_iter()
            .flatten()
        {
            if !requests.iter().any(|(n, _)| n == name.as_str()) {
                requests.push((name.to_string(), default));
            }
        }
        for (name, range) in requests {
            let remembered = previous
                .get(service.id.as_str())
                .and_then(|m| m.get(&name))
                .copied();
            let candidates = remembered
                .filter(|p| range.contains(*p))
                .into_iter()
                .chain(range.min.max(1)..=range.max);
            let mut found = None;
            let mut gave_up = None;
            for port in candidates {
                if taken.contains(&port) {
                    continue;
                }
                match TcpListener::bind(("127.0.0.1", port)) {
                    Ok(listener) => {
                        found = Some((port, listener));
                        break;
                    }
                    // Taken, or not ours to take: the next candidate may be free.
                    Err(err)
                        if matches!(
                            err.kind(),
                            std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
                        ) => {}
                    // Out of descriptors and the like: no other port would bind either, and
                    // scanning the rest of the range (65535 tries per request) only stalls
                    // the start.
                    Err(err) => {
                        gave_up = Some(err);
                        break;
                    }
                }
            }
            match found {
                Some((port, listener)) => {
                    taken.insert(port);
                    allocation
                        .ports
                        .entry(service.id.to_string())
                        .or_default()
                        .insert(name.clone(), port);
                    allocation
                        .held
                        .insert((service.id.to_string(), name), listener);
                }
                None => allocation.failures.push(match gave_up {
                    Some(err) => format!("{}.{name}: cannot bind a port: {err}", service.id),
                    None => format!(
                        "{}.{name}: no free port in {}-{}",
                        service.id, range.min, range.max
                    ),
                }),
            }
        }
    }
    allocation
}

/// The most of a state file of `runtime/` the runtime reads (a larger one, which it never
/// writes, is read as corrupt: defaults). Parsed JSON of short strings takes some ten times
/// its size, so this bounds the memory a planted file costs.
pub const STATE_LIMIT: u64 = 64 * 1024;

/// The file in `<app data>/runtime/` holding the last run's ports.
pub const FILE: &str = "ports.json";

/// The last run's ports, from [`FILE`] in `runtime_dir` (not through a link).
pub fn load(runtime_dir: &Dir) -> PortMap {
    runtime_dir
        .read(FILE, STATE_LIMIT)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

pub fn save(runtime_dir: &Dir, ports: &PortMap) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(ports).unwrap_or_default();
    runtime_dir.replace(FILE, &bytes, 0o644)
}

/// Tries to hold a port again (before a restart).
pub fn rebind(port: u16) -> Option<TcpListener> {
    bind(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(ranges: &[(u16, u16)], reserved: &[u16]) -> Manifest {
        let services: Vec<serde_json::Value> = ranges
            .iter()
            .enumerate()
            .map(|(i, (min, max))| serde_json::json!({
                "id": format!("s{i}"), "type": "worker", "binaries": {"linux-x64": {"path": "x"}},
                "health": {"type": "tcp", "port_name": "p"}, "readiness": {"type": "port_open"},
                "ports": {"requested": [{"name": "p", "range": {"min": min, "max": max}}]}
            }))
            .collect();
        serde_json::from_value(serde_json::json!({
            "schema_version": "v0.1", "target": "desktop", "app": {"name": "a", "version": "1"},
            "ipc": {"mode": "loopback-http", "host": "127.0.0.1", "port": 1, "auth_token_path": "t"},
            "telemetry": {"file": "t.jsonl"}, "ports": {"reserved": reserved}, "services": services
        }))
        .unwrap()
    }

    #[test]
    fn ranges_are_independent_reserved_skipped_and_previous_kept() {
        // Find a run of free ports to work in.
        let base = (30000..60000)
            .step_by(97)
            .find(|&p| (p..p + 12).all(|q| bind(q).is_some()))
            .unwrap();
        // A later service's range lies below an earlier one's: no global cursor.
        let m = manifest(
            &[(base + 6, base + 11), (base, base + 5)],
            &[base + 6, base],
        );
        let a = allocate(&m, &PortMap::new(), 1);
        assert_eq!(a.ports["s0"]["p"], base + 7);
        assert_eq!(a.ports["s1"]["p"], base + 1);
        // While held, a second allocation cannot take the same ports.
        let b = allocate(&m, &PortMap::new(), 1);
        assert_eq!(b.ports["s0"]["p"], base + 8);
        drop(a);
        drop(b);
        let mut previous = PortMap::new();
        previous
            .entry("s0".into())
            .or_default()
            .insert("p".into(), base + 10);
        let c = allocate(&m, &previous, 1);
        assert_eq!(
            c.ports["s0"]["p"],
            base + 10,
            "the previous run's port is reused"
        );
        // A full range is reported.
        let full = manifest(&[(base, base)], &[base]);
        assert_eq!(allocate(&full, &PortMap::new(), 1).failures.len(), 1);
    }
}
